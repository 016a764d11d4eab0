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
//! So "the descriptor still names the mark's memfd (`fstat`), and its lock is held by the PID
//! that `getpid()` returns" is true in the process that made the mark and in no other: an
//! ordinary child sees its parent's PID, a child in a nested namespace (which may have the
//! parent's very PID) sees 0, and any process once the maker is dead sees no lock at all. The
//! `fstat` matters: a nested child can close the mark's number and put a file it record-locks
//! itself there, whose lock `F_OFD_GETLK` would show as held by the caller's PID.
//!
//! The mark can also be lost by its maker (the descriptor closed by a sweep, the lock ended by
//! closing another descriptor of the memfd, a thread with a descriptor table of its own); then
//! it says so ([`Sighting::Unlocked`], [`Sighting::Lost`]) and `owner.rs` falls back to the PID
//! namespace recorded with the identity.
//!
//! Elsewhere (macOS, the BSDs, Windows) there are no PID namespaces, so the PID alone tells a
//! process from its children, and the mark is empty.

/// What a [`ProcessMark`] says about the calling process, whose PID is the mark's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sighting {
    /// The caller made the mark: its descriptor names the mark's memfd, whose record lock is
    /// held by the caller's PID as the caller's own PID namespace sees it.
    Maker,
    /// The caller did not: the maker's lock is held by a process that the caller's PID
    /// namespace cannot see, so the caller is a copy made by `fork` into a nested namespace.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Other,
    /// The descriptor names the mark's memfd, but no lock of the caller's shows on it: the
    /// maker lost its lock (a descriptor of the memfd was opened through `/proc/self/fd` and
    /// closed, which ends every record lock of the process on it), or the maker is dead, or
    /// `F_OFD_GETLK` is missing and `F_GETLK` cannot show the caller its own lock. The caller
    /// decides some other way (`owner.rs`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Unlocked,
    /// The mark cannot answer: its descriptor was closed (a descriptor sweep), now names
    /// another file, or belongs to another descriptor table (`unshare(CLONE_FILES)`). The
    /// caller decides some other way (`owner.rs`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Lost,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::ProcessMark;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::ManuallyDrop;
    use std::os::fd::{AsFd, OwnedFd};

    use nix::errno::Errno;
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc::{F_UNLCK, F_WRLCK, SEEK_SET, c_short, flock};
    use rustix::fs::{FlockOperation, MemfdFlags, fcntl_lock, fstat, memfd_create};

    use super::Sighting;

    /// A private `memfd` with a record lock on it, held by the process that made it.
    #[derive(Debug)]
    pub(crate) struct ProcessMark {
        /// Never closed by a destructor: the identity that owns the mark can be dropped on a
        /// thread whose descriptor table is not the one the mark was made in (a thread that
        /// called `unshare(CLONE_FILES)`), where this number names another file or none.
        /// [`ProcessMark::close`] closes it only after `fstat` shows it still names the memfd.
        file: ManuallyDrop<OwnedFd>,
        /// The memfd's device and inode: the descriptor number alone proves nothing, since code
        /// that closes descriptors it does not own can leave another file at that number, with
        /// a record lock of its own.
        id: (u64, u64),
    }

    impl ProcessMark {
        /// A new mark for the calling process; an error where memfds or record locks are not
        /// available (a seccomp filter, an old kernel) or descriptors ran out.
        pub(crate) fn new() -> io::Result<ProcessMark> {
            let file = memfd_create("pidlock-process-identity", MemfdFlags::CLOEXEC)?;
            fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive)?;
            let stat = fstat(&file)?;
            Ok(ProcessMark {
                file: ManuallyDrop::new(file),
                id: (stat.st_dev, stat.st_ino),
            })
        }

        /// Whether the caller, whose PID is `pid`, made this mark: an `fstat` that the
        /// descriptor still names the memfd, then one `fcntl` on it.
        pub(crate) fn sighting(&self, pid: u32) -> Sighting {
            // First that the number names our memfd, in every case: else the lock answer is
            // about some other file (which a nested child may have locked itself).
            if !self.is_named() {
                return Sighting::Lost;
            }
            // Whole file, exclusive: conflicts with the maker's lock, whoever asks.
            // The constants are small and positive, so the casts to `c_short` cannot wrap.
            #[allow(clippy::cast_possible_truncation)]
            let whole_file = flock {
                l_type: F_WRLCK as c_short,
                l_whence: SEEK_SET as c_short,
                l_start: 0,
                l_len: 0,
                l_pid: 0,
            };
            let mut query = whole_file;
            let asked = match fcntl(self.file.as_fd(), FcntlArg::F_OFD_GETLK(&mut query)) {
                // No open-file-description locks (proot, old gVisor, a seccomp profile that
                // lists fcntl commands): the classic query shows every lock but the caller's.
                Err(Errno::EINVAL) => {
                    query = whole_file;
                    fcntl(self.file.as_fd(), FcntlArg::F_GETLK(&mut query))
                }
                asked => asked,
            };
            if asked.is_err() {
                return Sighting::Lost;
            }
            #[allow(clippy::cast_possible_truncation)]
            let held = query.l_type != F_UNLCK as c_short;
            match u32::try_from(query.l_pid) {
                Ok(holder) if held && holder == pid => Sighting::Maker,
                // Held by a process this PID namespace cannot see: an ancestor namespace's.
                Ok(0) if held => Sighting::Other,
                _ => Sighting::Unlocked,
            }
        }

        /// Whether a failure to make a mark may pass: descriptors or memory ran out.
        pub(crate) fn worth_retrying(error: &io::Error) -> bool {
            matches!(
                Errno::from_raw(error.raw_os_error().unwrap_or(0)),
                Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM
            )
        }

        /// Takes the mark's lock again, for its maker that lost it (see [`Sighting::Unlocked`]).
        pub(crate) fn relock(&self) {
            if self.is_named() {
                let _ = fcntl_lock(&*self.file, FlockOperation::NonBlockingLockExclusive);
            }
        }

        /// Closes the descriptor if it names the memfd in the caller's descriptor table (a
        /// forked child's copy of its parent's mark); else leaves the number alone.
        pub(crate) fn close(self) {
            if self.is_named() {
                drop(ManuallyDrop::into_inner(self.file));
            }
        }

        fn is_named(&self) -> bool {
            fstat(&*self.file).is_ok_and(|stat| (stat.st_dev, stat.st_ino) == self.id)
        }
    }
}

/// Without PID namespaces the PID alone names a process: the mark is empty and always agrees.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct ProcessMark;

#[cfg(not(target_os = "linux"))]
impl ProcessMark {
    pub(crate) fn new() -> std::io::Result<ProcessMark> {
        Ok(ProcessMark)
    }

    pub(crate) fn sighting(&self, _pid: u32) -> Sighting {
        Sighting::Maker
    }

    pub(crate) fn worth_retrying(_error: &std::io::Error) -> bool {
        false
    }

    pub(crate) fn relock(&self) {}

    pub(crate) fn close(self) {}
}
