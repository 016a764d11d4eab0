#![deny(warnings)]

fn lock() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-forward-async-{}.pid", std::process::id()))
}

async fn open(message: pidlockfile::SecondInstance) {
    tokio::task::yield_now().await;
    println!("{:?}", message.args);
}

#[pidlockfile::single_instance(path = lock(), forward = open)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut socket = lock().into_os_string();
    socket.push(".sock");
    assert!(std::path::Path::new(&socket).exists());
    // `?` and `return` in the body keep their meaning.
    if socket.is_empty() {
        return Ok(());
    }
    std::fs::metadata(&socket)?;
    Ok(())
}
