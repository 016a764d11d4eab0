//! Readers step aside for an acquirer: the intent file beside the lock file.
//!
//! Where a reader cannot ask the kernel who holds the lock (the portable build, Windows, a
//! Linux lock table that is incomplete), it probes: it takes a shared lock and drops it at
//! once (see `probe.rs`). An acquirer's exclusive try fails while any such probe is under way,
//! and on a loaded machine a reader preempted inside its probe keeps its shared lock for as
//! long as it waits to run again. With a few readers probing back to back, some probe was in
//! the way at every try, and a free lock looked held.
//!
//! So an acquirer that meets only shared locks announces itself: it creates
//! `<lock file name>.intent` beside the lock file (`O_EXCL`, so never through a symlink, mode
//! 0644) and locks it exclusively, and keeps it locked while it tries again. A reader that
//! finds the intent locked does not probe: it waits (at most [`STEP_ASIDE`]) for the intent to
//! go, then answers from the lock itself. Once the intent is up, no new probe starts; the probes
//! already under way end when their readers next run, and then only shared locks that ignore
//! the intent (another program's `flock -s`, an older pidlockfile) can still be in the way: the
//! acquirer's patience (see `lock/wait.rs`) is spent on those alone. The acquirer removes its
//! intent, while still holding its lock and only if the name still names it, before it returns.
//!
//! Nothing here can make a lock look free or held: the intent only delays readers, boundedly.
//! A left-over intent (its acquirer crashed) is not locked, and readers ignore it; the next
//! acquirer that needs one removes it and makes its own. Anything else at the name (a symlink,
//! a directory, a FIFO, another user's file) is never followed, written or removed: readers
//! ignore it and acquirers do without an intent, as before.

use std::ffi::OsString;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::sys::{self, FileId};

/// How long a reader waits at most for an acquirer's intent to go before it probes anyway. An
/// acquirer that meets only readers' probes gets the lock within a scheduling delay; one that
/// waits out another program's `flock -s` may keep its intent for its whole timeout, and then
/// readers must still answer.
pub(crate) const STEP_ASIDE: Duration = Duration::from_millis(250);

/// The intent file's path for the lock file at `lock`: `<file name>.intent` in the same
/// directory.
pub(crate) fn path_for(lock: &Path) -> PathBuf {
    let mut name = lock
        .file_name()
        .map_or_else(OsString::new, ToOwned::to_owned);
    name.push(".intent");
    lock.with_file_name(name)
}

/// Whether an acquirer holds the intent file at `path` locked: it is a regular file and a
/// shared lock on it fails at once. Whatever cannot be opened, is not a regular file, or is not
/// locked is no intent.
fn announced(path: &Path) -> bool {
    let Ok(file) = sys::open_for_reading(path) else {
        return false;
    };
    if !file
        .metadata()
        .is_ok_and(|m| m.is_file() && sys::special_file(&m).is_none())
    {
        return false;
    }
    match sys::try_lock_shared(&file) {
        Ok(()) => {
            let _ = sys::unlock(&file);
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

/// A reader, before it probes the lock file at `lock`: while an acquirer has announced
/// itself, wait for it to be done (at most [`STEP_ASIDE`]), so that the probe's shared lock is
/// never in its way. Short sleeps, growing: an acquirer that meets only probes is done within
/// a scheduling delay, and the wait is bounded however long the intent stays.
pub(crate) fn step_aside(lock: &Path) {
    let path = path_for(lock);
    if !announced(&path) {
        return;
    }
    let give_up = Instant::now() + STEP_ASIDE;
    let mut pause = Duration::from_micros(100);
    while Instant::now() < give_up && announced(&path) {
        thread::sleep(pause.min(give_up.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// An acquirer's intent, locked and named; removed when dropped.
#[derive(Debug)]
pub(crate) struct Intent {
    file: File,
    path: PathBuf,
    id: FileId,
}

/// What an attempt to announce found.
#[derive(Debug)]
pub(crate) enum Announce {
    /// Our intent is up.
    Up(Intent),
    /// Not now: another acquirer's intent is up (readers step aside already), or a reader
    /// looked at ours in the instant before we locked it. Try again at the next try.
    Later,
    /// Something that is not an intent of ours is at the name, or the directory refuses us: do
    /// without, for the rest of this attempt.
    Never,
}

impl Intent {
    /// Announces an acquirer for the lock file at `lock`.
    pub(crate) fn announce(lock: &Path) -> Announce {
        let path = path_for(lock);
        // A left-over intent is removed and made anew once; a second one in its place is
        // another acquirer's, racing us.
        for _ in 0..2 {
            match sys::create_new_for_locking(&path) {
                Ok(file) => return Self::lock_new(file, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !remove_left_over(&path) {
                        return Announce::Later;
                    }
                }
                Err(e) if sys::is_delete_pending(&e) => return Announce::Later,
                Err(_) => return Announce::Never,
            }
        }
        Announce::Later
    }

    /// Locks the intent file we just created. A reader's look at it in between makes the lock
    /// fail: then the file is removed again (it is ours) and the caller tries later.
    fn lock_new(file: File, path: PathBuf) -> Announce {
        let Ok(id) = file.metadata().and_then(|meta| sys::identity(&file, &meta)) else {
            return Announce::Never;
        };
        let locked = sys::try_lock_exclusive(&file).is_ok();
        if locked && sys::path_identity(&path).ok().flatten() == Some(id) {
            return Announce::Up(Intent { file, path, id });
        }
        remove_if_named(&path, id);
        Announce::Later
    }
}

impl Drop for Intent {
    /// Removes the intent while it is still locked, and only if the name still names it.
    fn drop(&mut self) {
        remove_if_named(&self.path, self.id);
        let _ = sys::unlock(&self.file);
    }
}

/// Removes the file at `path` if it is `id`.
fn remove_if_named(path: &Path, id: FileId) {
    if sys::path_identity(path).ok().flatten() == Some(id) {
        let _ = sys::remove_locked_file(path, id);
    }
}

/// An intent file is already at `path`: if it is a regular file that nobody holds locked (its
/// acquirer is gone), removes it and says so. Another acquirer's intent, or anything that is
/// not a plain file, is left alone.
fn remove_left_over(path: &Path) -> bool {
    let Ok(file) = sys::open_for_reading(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file() || sys::special_file(&meta).is_some() || !sys::owned_by_me(&meta) {
        return false;
    }
    let Ok(id) = sys::identity(&file, &meta) else {
        return false;
    };
    if sys::try_lock_shared(&file).is_err() {
        return false;
    }
    let _ = sys::unlock(&file);
    if sys::path_identity(path).ok().flatten() != Some(id) {
        return false;
    }
    sys::remove_locked_file(path, id).is_ok()
}
