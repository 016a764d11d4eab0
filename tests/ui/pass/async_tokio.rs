#![deny(warnings)]

#[pidlockfile::single_instance(path = std::env::temp_dir().join(format!("ui-async-inner-{}.pid", std::process::id())))]
async fn fetch(n: u32) -> Result<u32, pidlockfile::Error> {
    tokio::task::yield_now().await;
    Ok(n * 2)
}

#[tokio::main(flavor = "current_thread")]
#[pidlockfile::single_instance(path = std::env::temp_dir().join(format!("ui-async-main-{}.pid", std::process::id())))]
async fn main() {
    assert_eq!(fetch(21).await.unwrap(), 42);
}
