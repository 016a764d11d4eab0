//! Taking a lock file from async code without blocking the executor, outside the attribute.

use std::path::PathBuf;
use std::time::Duration;

use crate::instance::{Guard, Options, acquire_async};
use crate::{Error, LockError, PidLockFile, PidLockGuard};

impl PidLockFile {
    /// [`lock`](Self::lock) for async code: the same lock and the same `timeout`, but while it
    /// waits the executor's thread stays free (a helper thread does the blocking wait and wakes
    /// the task), on any runtime. It is what `#[single_instance]` on an `async fn` does, without
    /// the attribute's "waiting for" line on stderr.
    ///
    /// The lock counts as held by the calling task: a task that asks again for a lock it holds
    /// fails at once with [`LockError::AlreadyLocked`] instead of waiting for itself, while two
    /// tasks of one thread take turns. Dropping the future before it completes cancels the wait
    /// (within 100 ms) and never leaves the lock taken.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pidlockfile::PidLockFile;
    ///
    /// # let path = std::env::temp_dir().join(format!("pidlock-doc-async-{}.pid", std::process::id()));
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let guard = PidLockFile::lock_async(&path, Some(Duration::from_secs(5))).await?;
    /// // ... the only copy of this program runs here ...
    /// drop(guard);
    /// # Ok::<(), pidlockfile::LockError>(())
    /// # }).unwrap();
    /// ```
    pub async fn lock_async(
        path: impl Into<PathBuf>,
        timeout: Option<Duration>,
    ) -> Result<PidLockGuard, LockError> {
        let options = Options {
            path: Some(path.into()),
            timeout,
            quiet: true,
            program: None,
            fleet: None,
            forward: None,
        };
        match acquire_async(&options).await {
            Ok(Guard::File(guard)) => Ok(guard),
            Err(Error::Lock(error)) => Err(error),
            // Neither can come of options without a fleet lock; were one to, it is no lock.
            #[cfg(feature = "postgres")]
            Ok(Guard::Fleet(_)) => Err(unexpected(&options)),
            Err(Error::Unlock(_)) => Err(unexpected(&options)),
        }
    }
}

/// The error for a result `lock_async` cannot have.
fn unexpected(options: &Options) -> LockError {
    LockError::LockFailed {
        path: options.path.clone().unwrap_or_default(),
        source: std::io::Error::other("unexpected result from the async wait"),
        server: None,
    }
}
