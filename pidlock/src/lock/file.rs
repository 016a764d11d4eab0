//! The lock file itself: opening it safely, telling whether the path still names the file we
//! locked, and refusing to write a PID into anything but a plain file of our own.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::Path;

use crate::sys::{self, FileId};

/// Opens (creating with mode 0644 if needed) the lock file for locking, without following a
/// symlink and without truncating it.
pub(super) fn open_lock_file(path: &Path) -> io::Result<File> {
    sys::open_for_locking(path).map_err(|e| explain_open_error(path, e))
}

/// Turns the bare errno of a refused open into a sentence about the path.
fn explain_open_error(path: &Path, err: io::Error) -> io::Error {
    let kind = err.kind();
    let found = fs::symlink_metadata(path).ok();
    let reason = match &found {
        // ELOOP on Linux and macOS, EMLINK on FreeBSD: O_NOFOLLOW met a symlink.
        Some(meta) if meta.file_type().is_symlink() => {
            "it is a symbolic link, and pidlockfile does not follow symbolic links".to_owned()
        }
        Some(meta) if meta.is_dir() => "it is a directory".to_owned(),
        None if kind == io::ErrorKind::NotFound => "its parent directory does not exist".to_owned(),
        _ => return err,
    };
    io::Error::new(kind, format!("{reason} ({err})"))
}

/// Unlocks a stale inode we locked on the way (unlinked or replaced), and says so to the
/// other waiters on it: an unlock alone makes no event, and they would sleep until the safety
/// re-check before moving on to the new file.
pub(super) fn let_go_of_stale(file: &File) {
    let _ = sys::unlock(file);
    sys::announce_release(file);
}

/// The directory the lock file lives in.
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether `path` (not followed if a symlink) names the file `id`.
pub(super) fn names(path: &Path, id: FileId) -> io::Result<bool> {
    Ok(sys::path_identity(path)? == Some(id))
}

/// Refuses to write a PID into anything but a plain regular file with a single name. A FIFO or
/// device planted at the path is not a PID file, and a hard link could point our write at
/// someone else's file.
pub(super) fn check_writable_pid_file(file: &File, meta: &Metadata) -> io::Result<()> {
    let kind = meta.file_type();
    let what = if kind.is_file() && sys::special_file(meta).is_none() {
        let links = sys::link_count(file, meta)?;
        if links == 1 {
            return Ok(());
        }
        format!("it has {links} hard links, so writing to it could change another file")
    } else if let Some(what) = sys::special_file(meta) {
        what.to_owned()
    } else {
        "it is not a regular file".to_owned()
    };
    Err(io::Error::new(io::ErrorKind::InvalidInput, what))
}
