//! The owning RAII guard returned by [`PidLockFile::lock`].

use std::path::Path;

use crate::PidLockFile;
use crate::error::UnlockError;

/// Holds a lock until dropped. Made by [`PidLockFile::lock`].
///
/// Dropping the guard releases the lock (the PID file is removed, then the kernel lock let go).
/// Drop does not run on `std::process::exit`, `SIGKILL`, an unhandled `SIGTERM` or a panic with
/// `panic = "abort"`; the kernel lock is released anyway, and the file left behind is stale and
/// taken over by the next holder.
///
/// The guard is `Send`: it may be handed to another thread, and the lock is then that thread's
/// to let go of. Until it does, every other thread of the process, the one that took the lock
/// included, waits for it like any other waiter (see [`PidLockFile::acquire`] for the cases
/// where a thread waiting for itself is told at once).
///
/// ```
/// use pidlockfile::PidLockFile;
///
/// let path = std::env::temp_dir().join(format!("pidlock-doc-guard-{}.pid", std::process::id()));
/// let guard = PidLockFile::lock(&path, None)?;
/// assert_eq!(guard.path(), path);
/// assert!(PidLockFile::new(&path).is_locked());
/// guard.release()?; // or just drop it
/// assert!(!PidLockFile::new(&path).is_locked());
/// # Ok::<(), pidlockfile::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct PidLockGuard {
    lock: PidLockFile,
}

impl PidLockGuard {
    pub(crate) fn new(lock: PidLockFile) -> Self {
        PidLockGuard { lock }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }

    /// The lock this guard holds, for its read-only queries.
    pub fn lock_file(&self) -> &PidLockFile {
        &self.lock
    }

    /// The lock this guard holds, to start listening for second instances on it.
    pub(crate) fn lock_file_mut(&mut self) -> &mut PidLockFile {
        &mut self.lock
    }

    /// Releases the lock now and reports what dropping the guard would ignore: a PID file that
    /// could not be removed.
    pub fn release(mut self) -> Result<(), UnlockError> {
        self.lock.release()
    }
}
