#![deny(warnings)]

#[pidlockfile::single_instance(path = std::env::temp_dir().join(format!("ui-main-unit-{}.pid", std::process::id())))]
fn main() {
    let inside = pidlockfile::PidLockFile::new(std::env::temp_dir().join(format!("ui-main-unit-{}.pid", std::process::id())));
    assert!(inside.i_am_locking());
}
