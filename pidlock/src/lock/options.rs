//! Making a `PidLockFile`: the constructors, the options, and the shorthands that take the lock
//! in one call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::PidLockFile;
use crate::error::LockError;
use crate::guard::PidLockGuard;

impl PidLockFile {
    /// A lock on the file at exactly `path`. Nothing is opened or created until
    /// [`acquire`](Self::acquire).
    ///
    /// ```
    /// let lock = pidlockfile::PidLockFile::new("/run/user/1000/myapp.pid");
    /// assert_eq!(lock.path(), std::path::Path::new("/run/user/1000/myapp.pid"));
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PidLockFile {
            path: path.into(),
            held: None,
            keep_file: false,
            forward: crate::forward::Forwarding::default(),
        }
    }

    /// With `true`, [`release`](Self::release) empties the PID file and leaves it in place
    /// instead of removing it, so that the lock file is always the same inode.
    ///
    /// Use it when shell scripts lock the same file with `flock(1)` (or any locker that does
    /// not check, after locking, that the path still names the file it locked). By default the
    /// release unlinks the file while still holding the lock, which is safe among pidlockfile
    /// users, who re-check the path after locking; but a `flock(1)` already waiting on the old
    /// file would then lock an inode that nobody else sees, and run alongside the next holder
    /// of the new file. With the file kept, everyone locks the one inode. The cost: a free lock
    /// leaves an empty file behind, which readers take as "free", as they take any file that
    /// no live process holds.
    ///
    /// Every process using the path should agree on this setting: a holder without it still
    /// unlinks the file.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-keep-file-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path).keep_file(true);
    /// lock.acquire(None)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, format!("{}\n", std::process::id()));
    /// lock.release()?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "");
    /// assert!(!lock.is_locked());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn keep_file(mut self, keep: bool) -> Self {
        self.keep_file = keep;
        self
    }

    /// Takes the lock on `path` and returns a guard that releases it when dropped.
    ///
    /// `timeout` means the same as for [`acquire`](Self::acquire).
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-lock-{}.pid", std::process::id()));
    /// {
    ///     let _guard = PidLockFile::lock(&path, None)?;
    ///     // ... the only copy of this program runs here ...
    /// }
    /// assert!(!PidLockFile::new(&path).is_locked());
    /// # Ok::<(), pidlockfile::LockError>(())
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn lock(
        path: impl Into<PathBuf>,
        timeout: Option<Duration>,
    ) -> Result<PidLockGuard, LockError> {
        let mut lock = PidLockFile::new(path);
        lock.acquire(timeout)?;
        Ok(PidLockGuard::new(lock))
    }

    /// One try, without waiting: `true` if this instance took the lock, `false` if another
    /// holder has it (another process, or another instance in this one). The shorthand for
    /// [`acquire`](Self::acquire)`(Some(Duration::ZERO))` that tells "held" apart from an error,
    /// as `fslock`'s `try_lock` does. Any other failure (a missing directory, a symlink at
    /// `path`, no permission, this instance holding the lock already) is an `Err`, never a
    /// `false`.
    ///
    /// A `false` must stop the caller from doing the guarded work; [`try_lock`](Self::try_lock)
    /// returns a guard instead, so that no branch can run without holding it.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-try-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// if !lock.try_acquire()? {
    ///     eprintln!("another copy is running");
    ///     return Ok(());
    /// }
    /// // Held: a second try, from anywhere, gets `false`.
    /// assert!(!PidLockFile::new(&path).try_acquire()?);
    /// lock.release()?;
    /// assert!(PidLockFile::new(&path).try_acquire()?);
    /// # Ok::<(), pidlockfile::Error>(())
    /// ```
    #[must_use = "`false` means another holder has the lock: the guarded work must not run"]
    pub fn try_acquire(&mut self) -> Result<bool, LockError> {
        // Refused because this very instance holds it: the caller's mistake, not "held".
        let held_here = self
            .held
            .as_ref()
            .is_some_and(|held| held.owner.is_current());
        match self.acquire(Some(Duration::ZERO)) {
            Ok(()) => Ok(true),
            Err(LockError::AlreadyLocked { .. }) if !held_here => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// One try on `path`, without waiting: a guard that releases the lock when dropped, or
    /// `None` if another holder has it. [`try_acquire`](Self::try_acquire) as a guard: the only
    /// way to run under the lock is to hold the `Some`.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-try-lock-{}.pid", std::process::id()));
    /// let Some(guard) = PidLockFile::try_lock(&path)? else {
    ///     eprintln!("another copy is running");
    ///     return Ok(());
    /// };
    /// assert!(PidLockFile::try_lock(&path)?.is_none());
    /// drop(guard);
    /// assert!(PidLockFile::try_lock(&path)?.is_some());
    /// # Ok::<(), pidlockfile::LockError>(())
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn try_lock(path: impl Into<PathBuf>) -> Result<Option<PidLockGuard>, LockError> {
        let mut lock = PidLockFile::new(path);
        Ok(lock.try_acquire()?.then(|| PidLockGuard::new(lock)))
    }

    /// The lock file's path, as given to [`new`](Self::new).
    ///
    /// While this instance holds the lock, its status calls and its release do not look this
    /// path up again when it is relative: they go to the file found at acquisition, in the
    /// directory that was current then (held open on Linux, so that renaming it changes
    /// nothing; elsewhere the path resolved to an absolute one then).
    pub fn path(&self) -> &Path {
        &self.path
    }
}
