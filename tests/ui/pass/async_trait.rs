#![deny(warnings)]
//! `#[async_trait]` methods. `#[async_trait]` on the impl expands first, so `#[single_instance]`
//! sees the method it made, returning `Pin<Box<dyn Future>>`, and guards the boxed future. The
//! lock is held while the future runs: a second call meanwhile meets a conflict.

use async_trait::async_trait;

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-async-trait-{name}-{}.pid", std::process::id()))
}

fn locked(name: &str) -> String {
    format!("{} is locked by process {}", path(name).display(), std::process::id())
}

#[async_trait]
trait Job {
    async fn run(&self, again: bool) -> Result<u32, pidlockfile::Error>;
    async fn count(&self) -> u32;
}

struct Worker;

#[async_trait]
impl Job for Worker {
    #[pidlockfile::single_instance(path = path("below"))]
    async fn run(&self, again: bool) -> Result<u32, pidlockfile::Error> {
        assert!(pidlockfile::PidLockFile::new(path("below")).is_locked());
        tokio::task::yield_now().await;
        if again {
            let err = self.run(false).await.unwrap_err();
            assert_eq!(err.to_string(), locked("below"));
        }
        Ok(1)
    }

    #[pidlockfile::single_instance(path = path("count"))]
    async fn count(&self) -> u32 {
        assert!(pidlockfile::PidLockFile::new(path("count")).is_locked());
        2
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        assert_eq!(Worker.run(true).await.unwrap(), 1);
        assert!(!pidlockfile::PidLockFile::new(path("below")).is_locked());
        assert_eq!(Worker.count().await, 2);
        // Sendable, as #[async_trait] requires: spawn it on a multi-thread runtime's pool.
        assert_eq!(tokio::spawn(async { Worker.run(false).await }).await.unwrap().unwrap(), 1);
    });
}
