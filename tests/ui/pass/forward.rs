#![deny(warnings)]

fn lock() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-forward-{}.pid", std::process::id()))
}

fn open(message: pidlockfile::SecondInstance) {
    let _: (Vec<std::ffi::OsString>, std::path::PathBuf, u32) = (message.args, message.cwd, message.pid);
}

#[pidlockfile::single_instance(path = lock(), forward = open, quiet)]
fn main() {
    assert!(pidlockfile::PidLockFile::new(lock()).i_am_locking());
    // Listening: the socket sits beside the PID file.
    let mut socket = lock().into_os_string();
    socket.push(".sock");
    assert!(std::path::Path::new(&socket).exists());
}
