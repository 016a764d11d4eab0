//! What can go wrong when taking or letting go of a lock.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why [`PidLockFile::acquire`](crate::PidLockFile::acquire) did not take the lock.
///
/// `{:?}` prints the same sentence as `{}` (`{:#?}` the variant and its fields), so that a
/// `main` returning this error prints one line.
///
/// ```
/// use std::time::Duration;
/// use pidlockfile::{LockError, PidLockFile};
///
/// let path = std::env::temp_dir().join(format!("pidlock-doc-lockerror-{}.pid", std::process::id()));
/// let mut first = PidLockFile::new(&path);
/// first.acquire(None)?;
///
/// let mut second = PidLockFile::new(&path);
/// match second.acquire(Some(Duration::ZERO)) {
///     Err(LockError::AlreadyLocked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
///     other => panic!("expected AlreadyLocked, got {other:?}"),
/// }
/// # first.release()?;
/// # Ok::<(), pidlockfile::Error>(())
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another holder has the lock, and the caller asked not to wait (a zero timeout), or this
    /// very instance already holds it (the lock is not reentrant).
    #[error("{} is locked by {}{}", path.display(), Holder::new(*pid, host, server), At(server))]
    AlreadyLocked {
        /// The lock file, or a fleet lock's name.
        path: PathBuf,
        /// The holder's PID as its PID file gives it (for a fleet lock, as its session
        /// records it), if it could be read.
        pid: Option<u32>,
        /// A fleet lock's holder's host name; `None` for a lock file.
        host: Option<String>,
        /// Where a fleet lock lives, such as `PostgreSQL at db.internal:5432`; `None` for a
        /// lock file.
        server: Option<String>,
    },

    /// Another holder kept the lock for the whole timeout.
    #[error("{} is locked by {} ({}gave up after {timeout:?})", path.display(), Holder::new(*pid, host, server), Then(server))]
    LockTimeout {
        /// The lock file, or a fleet lock's name.
        path: PathBuf,
        /// The holder's PID as its PID file gives it (for a fleet lock, as its session
        /// records it), if it could be read.
        pid: Option<u32>,
        /// How long the caller waited.
        timeout: Duration,
        /// A fleet lock's holder's host name; `None` for a lock file.
        host: Option<String>,
        /// Where a fleet lock lives, such as `PostgreSQL at db.internal:5432`; `None` for a
        /// lock file.
        server: Option<String>,
    },

    /// The lock could not be taken for a reason other than another holder: the directory is
    /// missing, the path is a symlink, a directory or a FIFO, permissions, a full disk, ...;
    /// for a fleet lock, a bad connection string, an unreachable or silent server, a refused
    /// password or certificate. pidlockfile never treats such an error as "not locked".
    #[error("cannot lock {}{}: {source}", path.display(), On(server))]
    LockFailed {
        /// The lock file, or a fleet lock's name.
        path: PathBuf,
        /// What the operating system or the server reported, or what pidlockfile found wrong.
        #[source]
        source: io::Error,
        /// Where a fleet lock lives, such as `PostgreSQL at db.internal:5432`; `None` for a
        /// lock file.
        server: Option<String>,
    },
}

impl LockError {
    /// The lock file this error is about.
    ///
    /// ```
    /// # use pidlockfile::PidLockFile;
    /// let err = PidLockFile::new("/nonexistent-dir/app.pid").acquire(None).unwrap_err();
    /// assert_eq!(err.path(), std::path::Path::new("/nonexistent-dir/app.pid"));
    /// ```
    pub fn path(&self) -> &Path {
        match self {
            LockError::AlreadyLocked { path, .. }
            | LockError::LockTimeout { path, .. }
            | LockError::LockFailed { path, .. } => path,
        }
    }

    /// The PID of the process holding the lock, when the error is about a holder and its PID
    /// file could be read.
    pub fn pid(&self) -> Option<u32> {
        match self {
            LockError::AlreadyLocked { pid, .. } | LockError::LockTimeout { pid, .. } => *pid,
            LockError::LockFailed { .. } => None,
        }
    }

    /// A fleet lock's holder's host name, when the error is about a holder that recorded it.
    pub fn host(&self) -> Option<&str> {
        match self {
            LockError::AlreadyLocked { host, .. } | LockError::LockTimeout { host, .. } => {
                host.as_deref()
            }
            LockError::LockFailed { .. } => None,
        }
    }

    /// Where a fleet lock lives (`PostgreSQL at db.internal:5432`); `None` for a lock file.
    pub fn server(&self) -> Option<&str> {
        match self {
            LockError::AlreadyLocked { server, .. }
            | LockError::LockTimeout { server, .. }
            | LockError::LockFailed { server, .. } => server.as_deref(),
        }
    }

    /// The error for a lock file that could not be taken (no server).
    pub(crate) fn failed(path: &Path, source: io::Error) -> LockError {
        LockError::LockFailed {
            path: path.to_owned(),
            source,
            server: None,
        }
    }
}

/// Why [`PidLockFile::release`](crate::PidLockFile::release) did not release the lock.
///
/// ```
/// use pidlockfile::{PidLockFile, UnlockError};
///
/// let path = std::env::temp_dir().join(format!("pidlock-doc-unlockerror-{}.pid", std::process::id()));
/// let mut lock = PidLockFile::new(&path);
/// assert!(matches!(lock.release(), Err(UnlockError::NotLocked { .. })));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum UnlockError {
    /// Nobody holds the lock.
    #[error("{} is not locked{}", path.display(), At(server))]
    NotLocked {
        /// The lock file, or a fleet lock's name.
        path: PathBuf,
        /// Where a fleet lock lives; `None` for a lock file.
        server: Option<String>,
    },

    /// Someone else holds the lock: another process, another instance, or the parent this
    /// process was forked from (a child never releases its parent's lock).
    #[error("{} is locked by {}, not by this lock{}", path.display(), Holder::new(*pid, host, server), At(server))]
    NotMyLock {
        /// The lock file, or a fleet lock's name.
        path: PathBuf,
        /// The holder's PID as its PID file gives it, if it could be read.
        pid: Option<u32>,
        /// A fleet lock's holder's host name; `None` for a lock file.
        host: Option<String>,
        /// Where a fleet lock lives; `None` for a lock file.
        server: Option<String>,
    },

    /// A fleet lock was lost while held (its session ended: the server restarted or failed
    /// over, an administrator terminated it, the network failed), so there was nothing left
    /// to release. Someone else may hold it by now.
    #[error("{} lost its lock on {server} before the release ({reason})", path.display())]
    Lost {
        /// The fleet lock's name.
        path: PathBuf,
        /// Where the lock lived, such as `PostgreSQL at db.internal:5432`.
        server: String,
        /// Why the session ended.
        reason: String,
    },

    /// The lock was released, but its PID file could not be removed. The file left behind is
    /// stale: the next `acquire` takes it over, so this is worth a log line, not a retry.
    #[error("released the lock on {}, but could not remove the file: {source}", path.display())]
    RemoveFailed {
        /// The lock file.
        path: PathBuf,
        /// Why `unlink(2)` failed.
        #[source]
        source: io::Error,
    },
}

impl UnlockError {
    /// The lock file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            UnlockError::NotLocked { path, .. }
            | UnlockError::NotMyLock { path, .. }
            | UnlockError::RemoveFailed { path, .. }
            | UnlockError::Lost { path, .. } => path,
        }
    }
}

/// Either kind of error, so that `?` works in a function that both locks and unlocks.
///
/// Like [`LockError`] and [`UnlockError`], its `Debug` output (`{:?}`) is its one-line message,
/// as `anyhow::Error`'s is, so that `fn main() -> Result<(), pidlockfile::Error>` (or
/// `Box<dyn Error>`) prints `Error: /run/user/1000/myapp.pid is locked by process 4242` when it
/// returns the error. The alternate form (`{:#?}`) shows the variant and its fields.
///
/// ```
/// use pidlockfile::PidLockFile;
///
/// fn run(path: &std::path::Path) -> Result<(), pidlockfile::Error> {
///     let mut lock = PidLockFile::new(path);
///     lock.acquire(None)?; // LockError
///     lock.release()?; // UnlockError
///     Ok(())
/// }
/// # run(&std::env::temp_dir().join(format!("pidlock-doc-error-{}.pid", std::process::id()))).unwrap();
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Taking the lock failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Letting go of the lock failed.
    #[error(transparent)]
    Unlock(#[from] UnlockError),
}

impl fmt::Debug for LockError {
    /// The one-line message; `{:#?}` gives the variant and its fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        match self {
            LockError::AlreadyLocked {
                path,
                pid,
                host,
                server,
            } => f
                .debug_struct("AlreadyLocked")
                .field("path", path)
                .field("pid", pid)
                .field("host", host)
                .field("server", server)
                .finish(),
            LockError::LockTimeout {
                path,
                pid,
                timeout,
                host,
                server,
            } => f
                .debug_struct("LockTimeout")
                .field("path", path)
                .field("pid", pid)
                .field("timeout", timeout)
                .field("host", host)
                .field("server", server)
                .finish(),
            LockError::LockFailed {
                path,
                source,
                server,
            } => f
                .debug_struct("LockFailed")
                .field("path", path)
                .field("source", source)
                .field("server", server)
                .finish(),
        }
    }
}

impl fmt::Debug for UnlockError {
    /// The one-line message; `{:#?}` gives the variant and its fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        match self {
            UnlockError::NotLocked { path, server } => f
                .debug_struct("NotLocked")
                .field("path", path)
                .field("server", server)
                .finish(),
            UnlockError::NotMyLock {
                path,
                pid,
                host,
                server,
            } => f
                .debug_struct("NotMyLock")
                .field("path", path)
                .field("pid", pid)
                .field("host", host)
                .field("server", server)
                .finish(),
            UnlockError::Lost {
                path,
                server,
                reason,
            } => f
                .debug_struct("Lost")
                .field("path", path)
                .field("server", server)
                .field("reason", reason)
                .finish(),
            UnlockError::RemoveFailed { path, source } => f
                .debug_struct("RemoveFailed")
                .field("path", path)
                .field("source", source)
                .finish(),
        }
    }
}

impl fmt::Debug for Error {
    /// The one-line message, so that a `main` returning this error prints a sentence;
    /// `{:#?}` gives the variant and its fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        match self {
            Error::Lock(error) => f.debug_tuple("Lock").field(error).finish(),
            Error::Unlock(error) => f.debug_tuple("Unlock").field(error).finish(),
        }
    }
}

/// Formats a holder for messages: "process 4242" for a lock file, "pid 4242 on web-3" for a
/// fleet lock, or "another process" ("another session") when the holder is not known.
struct Holder<'a> {
    pid: Option<u32>,
    host: Option<&'a str>,
    fleet: bool,
}

impl<'a> Holder<'a> {
    fn new(pid: Option<u32>, host: &'a Option<String>, server: &Option<String>) -> Self {
        Holder {
            pid,
            host: host.as_deref(),
            fleet: server.is_some(),
        }
    }
}

impl fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, self.host) {
            (Some(pid), Some(host)) => write!(f, "pid {pid} on {host}"),
            (None, Some(host)) => write!(f, "a session on {host}"),
            (Some(pid), None) => write!(f, "process {pid}"),
            (None, None) if self.fleet => f.write_str("another session"),
            (None, None) => f.write_str("another process"),
        }
    }
}

/// `" (PostgreSQL at db:5432)"` after a fleet lock's message; nothing for a lock file.
struct At<'a>(&'a Option<String>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(server) => write!(f, " ({server})"),
            None => Ok(()),
        }
    }
}

/// `"PostgreSQL at db:5432; "` before "gave up after"; nothing for a lock file.
struct Then<'a>(&'a Option<String>);

impl fmt::Display for Then<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(server) => write!(f, "{server}; "),
            None => Ok(()),
        }
    }
}

/// `" on PostgreSQL at db:5432"` after "cannot lock NAME"; nothing for a lock file.
struct On<'a>(&'a Option<String>);

impl fmt::Display for On<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(server) => write!(f, " on {server}"),
            None => Ok(()),
        }
    }
}

impl From<Error> for std::io::Error {
    /// For `fn main() -> std::io::Result<()>` and other `io::Result` code: a held lock becomes
    /// `WouldBlock` (or `TimedOut`), a failure keeps the kind of its cause.
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::Lock(LockError::AlreadyLocked { .. }) => io::ErrorKind::WouldBlock,
            Error::Lock(LockError::LockTimeout { .. }) => io::ErrorKind::TimedOut,
            Error::Lock(LockError::LockFailed { source, .. })
            | Error::Unlock(UnlockError::RemoveFailed { source, .. }) => source.kind(),
            Error::Unlock(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

impl From<Error> for LockError {
    /// For functions that return `Result<_, LockError>`, such as one under `#[single_instance]`:
    /// a [`LockError`] comes back as it was; an [`UnlockError`] (which taking a lock never
    /// produces) becomes [`LockError::LockFailed`] with the unlock error as its source.
    fn from(error: Error) -> Self {
        match error {
            Error::Lock(error) => error,
            Error::Unlock(error) => LockError::LockFailed {
                path: error.path().to_owned(),
                server: match &error {
                    UnlockError::NotLocked { server, .. }
                    | UnlockError::NotMyLock { server, .. } => server.clone(),
                    UnlockError::Lost { server, .. } => Some(server.clone()),
                    UnlockError::RemoveFailed { .. } => None,
                },
                source: io::Error::other(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn already_locked() -> Error {
        Error::Lock(LockError::AlreadyLocked {
            path: PathBuf::from("/run/app.pid"),
            pid: Some(42),
            host: None,
            server: None,
        })
    }

    #[test]
    fn debug_is_the_sentence_and_the_alternate_form_the_fields() {
        let error = already_locked();
        assert_eq!(format!("{error:?}"), "/run/app.pid is locked by process 42");
        assert_eq!(format!("{error:?}"), error.to_string());
        let boxed: Box<dyn std::error::Error> = Box::new(already_locked());
        assert_eq!(format!("{boxed:?}"), "/run/app.pid is locked by process 42");
        let fields = format!("{error:#?}");
        assert!(fields.starts_with("Lock(\n    AlreadyLocked {"), "{fields}");
        assert!(fields.contains("pid: Some(\n"), "{fields}");
        let unlock = UnlockError::NotLocked {
            path: PathBuf::from("/run/app.pid"),
            server: None,
        };
        assert_eq!(format!("{unlock:?}"), "/run/app.pid is not locked");
        assert!(format!("{unlock:#?}").starts_with("NotLocked {"));
    }

    #[test]
    fn lock_errors_come_back_out_of_error() {
        let error = LockError::from(already_locked());
        assert!(matches!(
            error,
            LockError::AlreadyLocked { pid: Some(42), .. }
        ));
        let error = LockError::from(Error::Unlock(UnlockError::NotLocked {
            path: PathBuf::from("/run/app.pid"),
            server: None,
        }));
        match error {
            LockError::LockFailed { path, source, .. } => {
                assert_eq!(path, Path::new("/run/app.pid"));
                assert_eq!(source.to_string(), "/run/app.pid is not locked");
            }
            other => panic!("{other:#?}"),
        }
    }
}
