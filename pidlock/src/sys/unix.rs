//! Unix (Linux, macOS, FreeBSD): the lock is an exclusive `flock(2)` on the whole PID file, taken
//! through std's `File::lock` family, and a file is named by its device and inode numbers.

use std::fs::{self, File, Metadata, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rustix::fs::OFlags;

use super::FileId;

/// Extra `open(2)` flags for every descriptor pidlockfile opens on the lock path (std adds
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

/// The mode of every PID file pidlockfile creates, whatever the umask: other users' probes and
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

/// The calling process's PID in its own PID namespace: a raw `getpid`, without going through
/// libc.
#[inline]
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// Opens (creating with mode 0644 if needed) the lock file for locking, without following a
/// symlink and without truncating it.
pub(crate) fn open_for_locking(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .mode(PID_FILE_MODE)
        .custom_flags(NOFOLLOW_NONBLOCK)
        .open(path)
}

/// Opens `path` for reading only: no symlink is followed and a FIFO does not block the open.
pub(crate) fn open_for_reading(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(NOFOLLOW_NONBLOCK)
        .open(path)
}

/// Never true here: an unlinked file's name is gone at once.
pub(crate) fn is_delete_pending(_err: &io::Error) -> bool {
    false
}

/// Waits for the exclusive lock as long as it takes, in a blocking `flock`.
#[inline]
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    file.lock()
}

/// One non-blocking attempt at the exclusive lock.
#[inline]
pub(crate) fn try_lock_exclusive(file: &File) -> Result<(), TryLockError> {
    file.try_lock()
}

/// One non-blocking attempt at a shared lock, a reader's probe.
#[inline]
pub(crate) fn try_lock_shared(file: &File) -> Result<(), TryLockError> {
    file.try_lock_shared()
}

/// Lets go of this descriptor's lock.
#[inline]
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    file.unlock()
}

/// The kernel does not queue `flock` waiters with a deadline: the caller waits for a release
/// notice (see `ReleaseWatch`) and tries again.
#[inline]
pub(crate) fn wait_in_kernel(
    _file: &File,
    _deadline: Option<Instant>,
    _cancelled: Option<&AtomicBool>,
) -> Option<io::Result<bool>> {
    None
}

/// The device and inode that `file`, whose metadata is `meta`, has open.
#[inline]
pub(crate) fn identity(_file: &File, meta: &Metadata) -> io::Result<FileId> {
    Ok((meta.dev(), meta.ino()))
}

/// The device and inode that `path` names (not followed if a symlink), or `None` if nothing
/// does.
pub(crate) fn path_identity(path: &Path) -> io::Result<Option<FileId>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some((meta.dev(), meta.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How many names the file has.
#[inline]
pub(crate) fn link_count(_file: &File, meta: &Metadata) -> io::Result<u64> {
    Ok(meta.nlink())
}

/// What a special file (FIFO, socket, device) at the lock path is, for the refusal to write it.
pub(crate) fn special_file(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_fifo() {
        Some("it is a FIFO, not a regular file")
    } else if kind.is_socket() {
        Some("it is a socket, not a regular file")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("it is a device, not a regular file")
    } else {
        None
    }
}

/// Writes all of `buf` at `offset`.
#[inline]
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(buf, offset)
}

/// Removes the locked file's name; the caller has just checked that `path` names it.
#[inline]
pub(crate) fn remove_locked_file(path: &Path, _locked: FileId) -> io::Result<()> {
    fs::remove_file(path)
}
