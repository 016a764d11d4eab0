//! An async `main` under tokio. Put `#[tokio::main]` above `#[single_instance]`: the lock is then
//! taken before the runtime starts and released after it has shut down.
//!
//! ```text
//! cargo run --example tokio_main
//! ```
#![warn(clippy::pedantic)]

use std::time::Duration;

#[tokio::main]
#[pidlockfile::single_instance(path = std::env::temp_dir().join("pidlock-example-tokio.pid"), timeout = 10)]
async fn main() {
    let tasks: Vec<_> = (1..=3)
        .map(|n| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10 * n)).await;
                n
            })
        })
        .collect();
    for task in tasks {
        let n = task.await.unwrap_or_default();
        println!(
            "task {n} finished while pid {} held the lock",
            std::process::id()
        );
    }
}
