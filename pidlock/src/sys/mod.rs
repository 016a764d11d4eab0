//! The platform-specific parts: how a waiter learns that the lock may have been released, how it
//! prepares its successor file while it waits, and how a reader asks the kernel who holds a lock
//! without touching it.
//!
//! Both are optimisations: the portable fallbacks in [`backoff`] and the shared-lock probe in
//! `probe.rs` are correct everywhere; Linux only makes them faster and quieter.

mod backoff;

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

use rustix::fs::OFlags;

/// Extra `open(2)` flags for every descriptor pidlock opens on the lock path (std adds
/// `O_CLOEXEC` itself). `O_NOFOLLOW` keeps a planted symlink from redirecting our writes;
/// `O_NONBLOCK` keeps a planted FIFO from hanging the open; on a regular file it changes nothing.
// The flag values are small positive constants, so the cast to `c_int` cannot wrap.
#[allow(clippy::cast_possible_wrap)]
pub(crate) const NOFOLLOW_NONBLOCK: i32 =
    (OFlags::NOFOLLOW.bits() | OFlags::NONBLOCK.bits()) as i32;

/// The PID namespace of the calling process, as the inode of `/proc/self/ns/pid`: together with
/// the PID it tells this process from a child forked into a new namespace with the same PID.
/// This is correctness, not an optimisation, so the portable build on Linux uses it too.
#[cfg(target_os = "linux")]
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    // Without /proc every process reads 0; the PID alone then decides, as it must elsewhere.
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |ns| ns.ino())
}

/// Elsewhere a process cannot be forked into a PID namespace: the PID alone names it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pid_namespace() -> u64 {
    0
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`), fixed by the kernel.
#[cfg(all(target_os = "linux", not(pidlock_portable)))]
pub(crate) const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The mode of every PID file pidlock creates, whatever the umask: other users' probes and
/// `read_pid()` must be able to read it, and nobody but its owner may write it.
pub(crate) const PID_FILE_MODE: u32 = 0o644;

/// Gives a PID file that this user owns [`PID_FILE_MODE`], which the umask may have narrowed
/// when it was created. A file of another user's keeps the mode its owner gave it.
pub(crate) fn set_pid_file_mode(
    file: &std::fs::File,
    meta: &std::fs::Metadata,
) -> std::io::Result<()> {
    use rustix::fs::Mode;
    use std::os::unix::fs::MetadataExt;
    if meta.mode() & 0o7777 == PID_FILE_MODE || meta.uid() != rustix::process::geteuid().as_raw() {
        return Ok(());
    }
    rustix::fs::fchmod(file, Mode::RUSR | Mode::WUSR | Mode::RGRP | Mode::ROTH)?;
    Ok(())
}

/// Whether another open file description holds a lock on `file`, asked without taking one:
/// `fcntl(F_GETLK)`, which on macOS and FreeBSD also reports `flock` locks (they share one lock
/// manager there). `None` where it cannot be asked: on Linux `F_GETLK` does not see `flock`
/// locks, and the caller takes a shared lock for an instant instead.
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
pub(crate) fn held_elsewhere(file: &std::fs::File) -> Option<bool> {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc::{F_UNLCK, F_WRLCK, SEEK_SET, c_short, flock};
    // The constants are small and positive, so the casts to `c_short` cannot wrap.
    #[allow(clippy::cast_possible_truncation)]
    let mut query = flock {
        l_start: 0,
        l_len: 0,
        l_pid: 0,
        l_type: F_WRLCK as c_short,
        l_whence: SEEK_SET as c_short,
        #[cfg(target_os = "freebsd")]
        l_sysid: 0,
    };
    fcntl(file, FcntlArg::F_GETLK(&mut query)).ok()?;
    #[allow(clippy::cast_possible_truncation)]
    let free = query.l_type == F_UNLCK as c_short;
    Some(!free)
}

/// See above: elsewhere there is no lock-free question to ask.
#[cfg(not(any(target_vendor = "apple", target_os = "freebsd")))]
pub(crate) fn held_elsewhere(_file: &std::fs::File) -> Option<bool> {
    None
}
