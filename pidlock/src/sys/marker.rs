//! A mark that only the process that made it carries: how `owner.rs` tells this process from a
//! copy of it made by `fork`, in any PID namespace, with one cheap syscall.
//!
//! On Linux the mark is a POSIX record lock (`fcntl(F_SETLK)`) on a private `memfd`. Three
//! properties of record locks, all kernel-enforced, make it a proof of identity:
//! - they belong to the process that took them and are **not inherited by `fork`**: a child gets
//!   the descriptor, never the lock;
//! - `F_OFD_GETLK` reports a conflicting record lock even when the caller holds it itself (an
//!   open-file-description lock is a different owner), with the holder's PID **as seen from the
//!   caller's PID namespace**, and 0 where the holder is not visible there (a child in a nested
//!   namespace cannot see its ancestors);
//! - they end with the process that holds them.
//!
//! So "the mark's lock is held by the PID that `getpid()` returns" is true in the process that
//! made the mark and in no other: an ordinary child sees its parent's PID, a child in a nested
//! namespace (which may have the parent's very PID) sees 0, and any process once the maker is
//! dead sees no lock at all.
//!
//! Elsewhere (macOS, the BSDs, Windows) there are no PID namespaces, so the PID alone tells a
//! process from its children, and the mark is empty.

/// What a [`ProcessMark`] says about the calling process, whose PID is the mark's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sighting {
    /// The caller made the mark.
    Maker,
    /// The caller did not: it is a copy made by `fork` (in a nested PID namespace, since the
    /// PID is the same), or the maker is dead and the caller reuses its PID.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Other,
    /// The mark cannot answer: there is none (no `memfd` here), or its descriptor was closed or
    /// replaced behind our back. The caller decides some other, slower way.
    Unknown,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::ProcessMark;

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, OwnedFd};

    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc::{F_UNLCK, F_WRLCK, SEEK_SET, c_short, flock};
    use rustix::fs::{FlockOperation, MemfdFlags, fcntl_lock, fstat, memfd_create};

    use super::Sighting;

    /// A private `memfd` with a record lock on it, held by the process that made it.
    #[derive(Debug)]
    pub(crate) struct ProcessMark {
        file: OwnedFd,
        /// The memfd's device and inode, to notice a descriptor closed and reused by code that
        /// closes descriptors it does not own.
        id: (u64, u64),
    }

    impl ProcessMark {
        /// A new mark for the calling process, or `None` where memfds or record locks are not
        /// available (a seccomp filter, an old kernel).
        pub(crate) fn new() -> Option<ProcessMark> {
            let file = memfd_create("pidlock-process-identity", MemfdFlags::CLOEXEC).ok()?;
            fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive).ok()?;
            let stat = fstat(&file).ok()?;
            Some(ProcessMark {
                file,
                id: (stat.st_dev, stat.st_ino),
            })
        }

        /// Whether the caller, whose PID is `pid`, made this mark. One `fcntl`.
        pub(crate) fn sighting(&self, pid: u32) -> Sighting {
            // Whole file, exclusive: conflicts with the maker's lock, whoever asks.
            // The constants are small and positive, so the casts to `c_short` cannot wrap.
            #[allow(clippy::cast_possible_truncation)]
            let mut query = flock {
                l_type: F_WRLCK as c_short,
                l_whence: SEEK_SET as c_short,
                l_start: 0,
                l_len: 0,
                l_pid: 0,
            };
            if fcntl(self.file.as_fd(), FcntlArg::F_OFD_GETLK(&mut query)).is_err() {
                return Sighting::Unknown;
            }
            #[allow(clippy::cast_possible_truncation)]
            let held = query.l_type != F_UNLCK as c_short;
            if held && u32::try_from(query.l_pid) == Ok(pid) {
                return Sighting::Maker;
            }
            // Not ours. If the descriptor still names our memfd, that is the answer; if someone
            // closed it (and maybe opened something else there), the lock is gone with it and
            // this says nothing.
            match fstat(&self.file) {
                Ok(stat) if (stat.st_dev, stat.st_ino) == self.id => Sighting::Other,
                _ => Sighting::Unknown,
            }
        }
    }
}

/// Without PID namespaces the PID alone names a process: the mark is empty and always agrees.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct ProcessMark;

#[cfg(not(target_os = "linux"))]
impl ProcessMark {
    pub(crate) fn new() -> Option<ProcessMark> {
        Some(ProcessMark)
    }

    pub(crate) fn sighting(&self, _pid: u32) -> Sighting {
        Sighting::Maker
    }
}
