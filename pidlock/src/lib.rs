//! PID-file locks that no crash can wedge and no race can double-enter.
//!
//! [`PidLockFile`] is a lock that is also a classic Unix PID file containing `"<pid>\n"`. Its API
//! follows Python's `caterpillar.locking.PIDLockFile` (`acquire`, `release`, `is_locked`,
//! `i_am_locking`, `read_pid`), but the kernel, not the file's existence, decides who holds it:
//! the holder keeps an exclusive `flock(2)` on the file, as FreeBSD's `pidfile(3)` does (on
//! Windows, an exclusive `LockFileEx`: see [Windows](#windows)).
//!
//! ```
//! use std::time::Duration;
//! use pidlockfile::PidLockFile;
//!
//! # let path = std::env::temp_dir().join(format!("pidlock-doc-crate-{}.pid", std::process::id()));
//! let _guard = PidLockFile::lock(&path, Some(Duration::from_secs(5)))?;
//! // ... only one copy of this program gets here at a time ...
//! # Ok::<(), pidlockfile::LockError>(())
//! ```
#![cfg_attr(
    feature = "macros",
    doc = r#"
With the default `macros` feature, `#[single_instance]` does the same for a whole function:

```no_run
#[pidlockfile::single_instance(timeout = 5)]
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
//! | `acquire(Some(d))` | waits up to `d` on the monotonic clock, then [`LockError::LockTimeout`]. On Linux the waiter sleeps until the file is closed (inotify), with a safety re-check after 100 ms that grows to 1 s while nothing happens; elsewhere it backs off from 1 to 25 ms. A process uses one inotify instance however many of its threads wait, and only while they wait. |
//! | a wait that cannot end | `acquire` on the instance that already holds the lock fails at once with [`LockError::AlreadyLocked`], whatever its timeout. `acquire` with a timeout other than zero, on a lock that the calling thread holds through a `#[single_instance]` function running on it, fails at once with [`LockError::AlreadyLocked`] naming this process, instead of waiting for itself. A lock taken through the runtime API belongs to whoever has its `PidLockFile` or guard, on whatever thread it was moved to: any other thread waits its turn, and a thread that waits for a lock it holds through another value is not recognised, as with `std::sync::Mutex` (see [`PidLockFile::acquire`]). For `#[single_instance]` on an `async fn`, it goes by the task, so that tasks of one thread take turns but a task never waits for itself; a task also fails at once on a lock that a plain function on its thread holds (`#[single_instance] fn main` running the runtime). A lock a task holds is never taken for the caller's by `acquire` (the task may run on any worker thread by now): there it waits its turn. A `#[single_instance]` plain function, though, fails at once on a lock that a guarded `async fn`'s task got on its thread (it is called from that task's body, or it would block the thread the task may need); after the task has moved to another worker, a guarded plain function on the thread it left is refused too. Two guarded calls joined within one task (`join!`, `select!`) count as one caller: spawn them as tasks to have them take turns. |
//! | holder crashes, `SIGKILL`, OOM kill | the kernel drops the lock with the process. The next `acquire` takes the stale file over at once, whatever PID it names. |
//! | holder killed while a child it forked (without `exec`) during or after `acquire` still runs | the child shares the holder's open file, and so its lock: the lock lasts until the child exits too. A child forked while another thread was still waiting in `acquire` also has copies of that thread's descriptors (the file it waits on, its spare successor file, the inotify instance), one of which may become the lock. To avoid it, take the lock after forking, or before forking but not while another thread waits for it; a child that does not need the lock drops its copy of the `PidLockFile` (which closes only the child's descriptor) first thing. Children started with `exec` (`std::process::Command`) never inherit anything. |
//! | `SIGTERM`, `SIGINT` | the default action kills the process without running destructors: same as a crash. Install a handler that returns from `main` if you want the file removed too. |
//! | `std::process::exit`, `panic = "abort"` | destructors are skipped: the lock is released by the kernel and the file stays behind, stale and harmless. |
//! | `fork` without `exec` | the child inherits a descriptor that shares the parent's lock. The child never unlinks, rewrites or unlocks it: dropping or releasing its copy only closes its descriptor ([`UnlockError::NotMyLock`] from `release`). The owner is the process that acquired, recognised by a mark that no fork copies (see `owner.rs`), so a child forked into a nested PID namespace, where it may have the parent's PID and even its parent PID, is not the owner either, at any depth. A daemon that forks should take the lock *after* it has forked (after `daemon(3)` or the double fork), in the process that will run. |
//! | `exec` | every descriptor is opened with `O_CLOEXEC`: an exec'd child does not keep the lock alive. |
//! | several instances in one process | two `PidLockFile`s for one path exclude each other, across threads as well as processes. The lock belongs to the holding value, on whatever thread it was moved to: other threads wait for it to be dropped. The lock is not reentrant: `acquire` on an instance that holds it returns `AlreadyLocked` at once; for the other cases of a thread waiting for itself see [`PidLockFile::acquire`]. |
//! | relative paths | fixed at `acquire`: the status calls and the release of a holding instance look at the file locked then, after a `chdir` too (and on Linux after its directory is renamed). |
//! | symlink, directory, FIFO, device or hard link at `path`, missing directory | [`LockError::LockFailed`] naming the path and the reason. Nothing is followed or written. |
//! | write of the PID fails (`ENOSPC`, `EIO`) | the file is removed, the lock released, and `LockFailed` returned. |
//! | NFS | Linux emulates `flock` with NFS byte-range locks (NFSv4, or v3 with lockd), so the lock works across machines, but a crashed client's lock lasts until the server's lease expires. The holder's PID is only meaningful on its own machine. |
//! | PID namespaces (containers) | ownership never depends on the PID in the file: it may belong to another namespace or be reused. [`PidLockFile::i_am_locking`] answers from the locks this process took, so two containers sharing a volume, each running its program as PID 1, never both see `true`. |
//! | looking | [`PidLockFile::is_locked`], [`PidLockFile::read_pid`] and the PID in error messages never make a free lock look held, nor a concurrent `acquire` fail. On Linux, in the initial PID namespace and on ext2/3/4, XFS, tmpfs or F2FS, the kernel's lock table answers without touching the file, and on macOS and FreeBSD `fcntl(F_GETLK)` does. Elsewhere (containers, overlayfs, btrfs, NFS, other BSDs) a reader takes a shared lock for an instant, and `acquire` rides such probes out for as long as they are all that is in its way. A file the reader cannot open counts as held. |
//! | sharing the file with other tools | a shared lock that another program keeps on the file (`flock -s`) is not a holder: `acquire` waits it out without a timeout, and with one fails with [`LockError::LockFailed`] saying so (after the timeout, or after 200 ms for a zero timeout). Only lockers that check, after locking, that the path still names the inode they locked (pidlockfile, FreeBSD's `flopen(3)`/`pidfile(3)`) may lock the same file: pidlockfile unlinks it on release, and `flock(1)` or a plain `flock` caller waiting on the old inode would then hold a lock that nobody else sees. For those, [`PidLockFile::keep_file`] empties the file on release and leaves it in place, so that everyone locks the same inode. |
//!
//! The PID file has mode `0644` whatever the umask (so that other users can read it), and is
//! written as `"<pid>\n"` after the
//! lock is taken, and removed on release while the lock is still held. A holder taking over an
//! existing file writes the new PID over the old one before cutting the file to length, so
//! readers see the old PID or the new one, never a torn one. A file created from nothing is
//! empty for an instant before its PID is written; readers that find it so while the lock is
//! held re-read briefly. A waiter taking over from a holder links in a successor file that
//! already holds its PID (Linux, `O_TMPFILE`), so a handoff never shows an empty file. The
//! descriptors a waiter no longer needs once it holds the lock (the stale inode, an unused
//! spare, the inotify instance) are closed on a short-lived background thread, because their
//! final closes are slow: within a second of the handoff, by a thread that looks at its queue
//! while this process waits for a lock (every 100 ms at first, less often as the wait goes on),
//! and exits after two idle seconds.
//!
//! # Second instances
//!
//! A refused acquirer can hand its arguments to the holder instead of only failing, as
//! Electron's `second-instance` event or QtSingleApplication's `messageReceived` do: the holder
//! listens with [`PidLockFile::on_second_instance`], and a refused acquirer calls
//! [`PidLockFile::forward`] with a [`SecondInstance`] (its arguments, working directory and
//! PID), and learns whether the holder took it. `#[single_instance(forward = handler)]` does
//! both for a `main`. The endpoint is tied to the lock: on Unix a socket beside the PID file
//! (`app.pid.sock`, mode 0600, each peer's user checked), on Windows a named pipe named from
//! the lock file, open to the current user only. It exists only while the lock is held, and
//! one left by a crashed holder is never trusted, only replaced by the next holder.
//!
//! | situation | what happens |
//! |---|---|
//! | holder listens | the message is read, answered ([`Forwarded`]), then handed to the handler on the listener thread; one message at a time |
//! | holder does not listen, built without it, or crashed leaving its socket | [`ForwardError::NotListening`] at once: connection refused, or no endpoint |
//! | holder busy (its handler blocks) | [`ForwardError::TimedOut`] after 2 s (or the bound given to [`PidLockFile::forward_within`]); the holder drops the message when it gets to it, since the sender has gone |
//! | holder exits while a message is on its way | [`ForwardError::HolderGone`]: try the lock again, it may be free |
//! | message over 1 MiB | [`ForwardError::TooLarge`], nothing sent; a raw client announcing more is answered and dropped |
//! | another user | refused ([`ForwardError::Refused`] or `Failed` with permission denied), logged, counted ([`PidLockFile::refused_second_instances`]), never handed to the handler |
//! | garbage, a truncated frame, a frame not whole within 1 s | dropped with one line on stderr; the listener serves the next connection |
//! | idle | the listener thread sleeps in `accept`: no timer, no CPU |
//!
//! # Across hosts
//!
#![cfg_attr(
    feature = "postgres",
    doc = r#"
With the `postgres` feature, [`PgLock`] (and `#[single_instance(postgres = ..., name =
...)]`) takes the same kind of lock for a whole fleet, on a PostgreSQL session advisory
lock: the server drops it when the session ends, as the kernel drops a `flock` when the
process dies. A session can end while its holder runs, so a held `PgLock` also reports the
loss ([`PgLock::is_lost`], [`LossWatch`], [`PgLock::on_lost`]) and gives a
[`PgLock::fencing_token`]; the macro fails closed on a loss. See [`PgLock`] for the details.
"#
)]
#![cfg_attr(
    not(feature = "postgres"),
    doc = r#"
With the `postgres` feature, `PgLock` (and `#[single_instance(postgres = ..., name = ...)]`)
takes the same kind of lock for a whole fleet, on a PostgreSQL session advisory lock: the
server drops it when the session ends, as the kernel drops a `flock` when the process dies.
(`PgLock` is not built: enable the `postgres` feature.)
"#
)]
//!
//! # Windows
//!
//! The same API, the same macro, the same messages and exit codes; what the table above says of
//! `flock`, Windows does as follows.
//!
//! | situation | what happens |
//! |---|---|
//! | **locked** | a live process holds an exclusive `LockFileEx` lock on **one byte at offset 2^62** of the file. Windows byte-range locks are mandatory (a locked range cannot be read by anyone else), so the lock covers a byte that the PID text never reaches: `type app.pid`, [`PidLockFile::read_pid`] and other programs read the PID while it is held. Locking past the end of a file does not grow it. |
//! | `acquire(None)` | a blocking `LockFileEx`: the kernel grants it at the release. |
//! | `acquire(Some(Duration::ZERO))` | `LockFileEx` with `LOCKFILE_FAIL_IMMEDIATELY`. |
//! | `acquire(Some(d))` | an overlapped `LockFileEx` that the kernel queues; the waiter sleeps on its event until it is granted or the deadline passes, then withdraws it with `CancelIoEx`. No polling. |
//! | holder crashes, is killed (`TerminateProcess`) | Windows releases the locks of a process that ends. The stale file is taken over at once. |
//! | release | the file is deleted while the lock is still held, with POSIX semantics (`FILE_DISPOSITION_FLAG_POSIX_SEMANTICS`, Windows 10 1709 and later, NTFS), which removes the name at once. Where that is unavailable the classic delete leaves the file pending deletion until its last handle closes; an acquirer that meets it (`STATUS_DELETE_PENDING`) waits it out, backing off from 1 to 25 ms: it never fails with `LockFailed`, and never takes the lock for free. |
//! | sharing | every handle pidlockfile opens has share mode read, write and delete, so neither readers nor the release's delete meet a sharing violation from pidlockfile. Another program's whole-file lock (std's `File::lock`) excludes the holder, and the other way round. |
//! | identity | after locking, the volume serial number and file index of the locked handle are compared with those of the path (what `dev`/`ino` are on Unix); a mismatch or a missing file means the lock is on a stale file, and the acquirer tries again. |
//! | symlink, junction, directory, hard link at `path` | opened as itself (`FILE_FLAG_OPEN_REPARSE_POINT`), never followed; refused with [`LockError::LockFailed`] before anything is written. |
//! | handles | never inherited by child processes. There is no `fork`, so no PID namespace: a process is its PID. |
//! | default path | `<temp dir>\<program>.pid`; the temp dir is per user. |
//! | Wine | Wine 8 never completes an overlapped `LockFileEx` that has to wait. pidlockfile recognises Wine (ntdll's `wine_get_version`) and there opens its handles synchronously and waits with a deadline by backing off from 1 to 25 ms, as it does on macOS. Unrecognised, such a wait would end only at its deadline, but a lock request the kernel never queued is never taken for a grant. |
// On docs.rs (`--cfg docsrs`, see Cargo.toml), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Only `sys/windows.rs` may use `unsafe`: the Win32 calls std does not wrap.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Input from users and other processes must never panic the runtime.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(not(any(unix, windows)))]
compile_error!(
    "pidlockfile supports Unix (Linux, macOS, FreeBSD) and Windows: it relies on flock(2) or LockFileEx."
);

mod closer;
mod default_path;
mod error;
mod forward;
mod guard;
mod instance;
mod lock;
mod lock_async;
mod loss;
mod owner;
mod pidfile;
mod place;
#[cfg(feature = "postgres")]
mod postgres;
mod probe;
pub mod proc_locks;
mod step_aside;
mod sys;

pub use crate::default_path::default_path;
pub use crate::error::{Error, LockError, UnlockError};
pub use crate::forward::{DEFAULT_FORWARD_TIMEOUT, ForwardError, Forwarded, SecondInstance};
pub use crate::guard::PidLockGuard;
pub use crate::lock::PidLockFile;
pub use crate::loss::{LossWatch, Lost};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use crate::postgres::{DEFAULT_LOST_AFTER, Holder, PgLock, PgLockGuard};

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
#[doc = include_str!("single_instance.md")]
pub use pidlockfile_macros::single_instance;

// Lets `#[single_instance]` name `::pidlockfile` inside this crate's own tests and doctests.
extern crate self as pidlockfile;

/// Not public API: what the code generated by `#[single_instance]` calls.
#[doc(hidden)]
pub mod __private {
    pub use crate::forward::{Forward, Pump, ServeWhile, forward, forward_async, forwarding};
    pub use crate::instance::{
        Acquire, ConflictError, Fleet, Function, FutureReturned, Guard, Main, MainExitCode,
        NoUnwind, NotAFuture, Options, OtherConflict, PlainReturned, ResultConflict, ResultContext,
        Returns, UnwindContext, acquire, acquire_async, exit, fleet, on_lost, panic, path_from,
    };
    #[cfg(feature = "postgres")]
    pub use crate::instance::{FleetGuard, acquire_fleet, acquire_fleet_async};
    pub use crate::loss::Lost;
    pub use core::time::Duration;
}

/// Compiles the README's code blocks as doctests, so they cannot rot. (The README shows the
/// fleet lock too, so this needs the `postgres` feature, which `cargo test --workspace` has.)
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
