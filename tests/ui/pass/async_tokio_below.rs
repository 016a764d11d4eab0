#![deny(warnings)]

#[pidlockfile::single_instance(path = std::env::temp_dir().join(format!("ui-async-below-{}.pid", std::process::id())))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    tokio::task::yield_now().await;
    Ok(())
}
