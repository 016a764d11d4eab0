//! The platform-specific parts: how a waiter learns that the lock may have been released, how it
//! prepares its successor file while it waits, how a reader asks the kernel who holds a lock
//! without touching it, and the handful of file operations that differ between Unix and Windows
//! (opening, locking, naming a file, removing it).
//!
//! The notices and the lock table are optimisations: the portable fallbacks in [`backoff`] and
//! the shared-lock probe in `probe.rs` are correct everywhere; Linux only makes them faster and
//! quieter.

mod backoff;
mod marker;

pub(crate) use marker::{ProcessMark, Sighting};

// `--cfg pidlock_portable` builds the portable versions on Linux too, so that CI can run the
// whole test suite against them where the tests run.
#[cfg(all(target_os = "linux", not(pidlock_portable)))]
mod linux;
#[cfg(all(target_os = "linux", not(pidlock_portable)))]
pub(crate) use linux::{ReleaseWatch, announce_release, link_spare, lock_table, prepare_spare};

#[cfg(any(not(target_os = "linux"), pidlock_portable))]
mod portable;
#[cfg(any(not(target_os = "linux"), pidlock_portable))]
pub(crate) use portable::{ReleaseWatch, announce_release, link_spare, lock_table, prepare_spare};

#[cfg(unix)]
mod unix;
#[cfg(all(target_os = "linux", not(pidlock_portable)))]
pub(crate) use unix::{INITIAL_PID_NAMESPACE, PID_FILE_MODE};
#[cfg(unix)]
pub(crate) use unix::{
    current_pid, held_elsewhere, identity, is_delete_pending, link_count, lock_exclusive,
    open_for_locking, open_for_reading, path_identity, pid_namespace, remove_locked_file,
    set_pid_file_mode, special_file, try_lock_exclusive, try_lock_shared, unlock, wait_in_kernel,
    write_all_at,
};

// The one module where `unsafe` is allowed: the Win32 calls have no safe wrapper in std.
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::pipe;
#[cfg(windows)]
pub(crate) use windows::{
    current_pid, held_elsewhere, identity, is_delete_pending, link_count, lock_exclusive,
    open_for_locking, open_for_reading, path_identity, pid_namespace, remove_locked_file,
    set_pid_file_mode, special_file, try_lock_exclusive, try_lock_shared, unlock, wait_in_kernel,
    write_all_at,
};

/// Also how an acquirer waits out a Windows file that is being deleted (see `lock.rs`).
pub(crate) use backoff::Backoff;

/// What names a file, whatever its names: (device, inode) on Unix, (volume serial number, file
/// index) on Windows. The lock is on a file, and a path that names another file no longer leads
/// to it.
pub(crate) type FileId = (u64, u64);
