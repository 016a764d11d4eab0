//! PID-file locks that no crash can wedge and no race can double-enter.
//!
//! [`PidLockFile`] is a lock that is also a classic Unix PID file containing `"<pid>\n"`. Its API
//! follows Python's `caterpillar.locking.PIDLockFile` (`acquire`, `release`, `is_locked`,
//! `i_am_locking`, `read_pid`), but the kernel, not the file's existence, decides who holds it:
//! the holder keeps an exclusive `flock(2)` on the file, as FreeBSD's `pidfile(3)` does.
//!
//! ```
//! use std::time::Duration;
//! use pidlock::PidLockFile;
//!
//! # let path = std::env::temp_dir().join(format!("pidlock-doc-crate-{}.pid", std::process::id()));
//! let _guard = PidLockFile::lock(&path, Some(Duration::from_secs(5)))?;
//! // ... only one copy of this program gets here at a time ...
//! # Ok::<(), pidlock::LockError>(())
//! ```
#![cfg_attr(
    feature = "macros",
    doc = r#"
With the default `macros` feature, `#[single_instance]` does the same for a whole function:

```no_run
#[pidlock::single_instance(path = "/run/user/1000/myapp.pid", timeout = 5)]
fn main() {
    // runs only while this process holds the lock
}
```
"#
)]
//!
//! # Semantics
//!
//! | situation | what happens |
//! |---|---|
//! | **locked** | a live process holds an exclusive `flock` on the file at `path`. The file alone means nothing: [`PidLockFile::is_locked`] is false for a file left by a dead holder. |
//! | `acquire(None)` | waits as long as it takes, in a blocking `flock`: woken by the kernel at the release. |
//! | `acquire(Some(Duration::ZERO))` | one try; [`LockError::AlreadyLocked`] with the holder's PID if it is held. |
//! | `acquire(Some(d))` | waits up to `d` on the monotonic clock, then [`LockError::LockTimeout`]. On Linux the waiter sleeps until the file is closed (inotify), with a re-check every 100 ms; elsewhere it backs off from 1 to 25 ms. |
//! | holder crashes, `SIGKILL`, OOM kill | the kernel drops the lock with the process. The next `acquire` takes the stale file over at once, whatever PID it names. |
//! | `SIGTERM`, `SIGINT` | the default action kills the process without running destructors: same as a crash. Install a handler that returns from `main` if you want the file removed too. |
//! | `std::process::exit`, `panic = "abort"` | destructors are skipped: the lock is released by the kernel and the file stays behind, stale and harmless. |
//! | `fork` without `exec` | the child inherits a descriptor that shares the parent's lock. The child never unlinks, rewrites or unlocks it: dropping or releasing its copy only closes its descriptor ([`UnlockError::NotMyLock`] from `release`). A daemon that forks should take the lock *after* it has forked (after `daemon(3)` or the double fork), in the process that will run. |
//! | `exec` | every descriptor is opened with `O_CLOEXEC`: an exec'd child does not keep the lock alive. |
//! | several instances in one process | two `PidLockFile`s for one path exclude each other, across threads as well as processes. The lock is not reentrant: `acquire` on an instance that holds it returns `AlreadyLocked` at once. |
//! | symlink, directory, FIFO, device or hard link at `path`, missing directory | [`LockError::LockFailed`] naming the path and the reason. Nothing is followed or written. |
//! | write of the PID fails (`ENOSPC`, `EIO`) | the file is removed, the lock released, and `LockFailed` returned. |
//! | NFS | Linux emulates `flock` with NFS byte-range locks (NFSv4, or v3 with lockd), so the lock works across machines, but a crashed client's lock lasts until the server's lease expires. The holder's PID is only meaningful on its own machine. |
//! | PID namespaces (containers) | ownership never depends on the PID: a PID in the file may belong to another namespace or be reused. |
//!
//! The PID file is created with mode `0644` (less the umask), written as `"<pid>\n"` after the
//! lock is taken, and removed on release while the lock is still held. A holder taking over an
//! existing file writes the new PID over the old one before cutting the file to length, so
//! readers see the old PID or the new one, never a torn one. A file created from nothing is
//! empty for an instant before its PID is written; readers that find it so while the lock is
//! held re-read briefly. A waiter taking over from a holder links in a successor file that
//! already holds its PID (Linux, `O_TMPFILE`), so a handoff never shows an empty file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Input from users and other processes must never panic the runtime.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(not(unix))]
compile_error!(
    "pidlock supports Unix only (Linux, macOS, FreeBSD): it relies on flock(2). Windows is not supported yet."
);

mod error;
mod guard;
mod instance;
mod lock;
mod pidfile;
mod probe;
mod sys;

pub use crate::error::{Error, LockError, UnlockError};
pub use crate::guard::PidLockGuard;
pub use crate::instance::default_path;
pub use crate::lock::PidLockFile;

#[cfg(feature = "macros")]
#[doc = include_str!("single_instance.md")]
pub use pidlock_macros::single_instance;

// Lets `#[single_instance]` name `::pidlock` inside this crate's own tests and doctests.
extern crate self as pidlock;

/// Not public API: what the code generated by `#[single_instance]` calls.
#[doc(hidden)]
pub mod __private {
    pub use crate::instance::{
        Acquire, ConflictError, Function, Main, MainExitCode, NoUnwind, Options, OtherConflict,
        ResultConflict, ResultContext, Returns, UnwindContext, acquire, acquire_async, exit, panic,
        path_from,
    };
    pub use core::time::Duration;
}

/// Compiles the README's code blocks as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
