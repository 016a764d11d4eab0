//! `PidLockFile`: the whole acquire/release algorithm, in the manner of FreeBSD's `flopen(3)` and
//! `pidfile(3)`, top to bottom. Beside it: the options and constructors (`options.rs`), what a
//! waiter does while it waits (`wait.rs`), the checks on the file (`file.rs`), what it leaves
//! behind (`leftovers.rs`), the conflict errors (`conflict.rs`), the status calls
//! (`status.rs`) and sharing the lock with children (`share.rs`).
//!
//! The kernel decides who holds the lock: the holder keeps an exclusive `flock` on the PID file
//! (on Windows a `LockFileEx` on one far byte of it, see `sys/windows.rs`) for as long as it
//! holds the lock, and the kernel drops it when the holder dies, however it dies. The PID
//! written in the file only tells people who the holder is.

mod conflict;
mod file;
mod leftovers;
mod options;
mod share;
mod status;
mod wait;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{LockError, UnlockError};
use crate::owner::{self, Process};
use crate::pidfile;
use crate::place::Place;
use crate::sys;

use file::{check_writable_pid_file, let_go_of_stale, names, open_lock_file};
use leftovers::Leftovers;
use wait::{SHARED_PATIENCE, SHARED_TRIES, Try, shared_only, try_lock};

/// A lock that is also a classic Unix PID file containing `"<pid>\n"`.
///
/// `PidLockFile::new` does no I/O; [`acquire`](Self::acquire) takes the lock and
/// [`release`](Self::release) (or dropping the value) lets it go. See the [crate
/// documentation](crate) for what "locked" means under crashes, forks and signals.
///
/// ```
/// use std::time::Duration;
/// use pidlockfile::PidLockFile;
///
/// let path = std::env::temp_dir().join(format!("pidlock-doc-pidlockfile-{}.pid", std::process::id()));
/// let mut lock = PidLockFile::new(&path);
/// lock.acquire(Some(Duration::from_secs(5)))?;
/// assert!(lock.is_locked());
/// assert!(lock.i_am_locking());
/// assert_eq!(lock.read_pid(), Some(std::process::id()));
/// lock.release()?;
/// assert!(!path.exists());
/// # Ok::<(), pidlockfile::Error>(())
/// ```
#[derive(Debug)]
pub struct PidLockFile {
    path: PathBuf,
    held: Option<Held>,
    /// Empty the file on release instead of unlinking it (see [`PidLockFile::keep_file`]).
    keep_file: bool,
    /// Second instances: the handler, and the listener while the lock is held (`forward.rs`).
    pub(crate) forward: crate::forward::Forwarding,
}

/// The open, locked PID file, and what we need to let go of it safely.
#[derive(Debug)]
struct Held {
    file: File,
    /// Where the file is, fixed at acquisition: a relative path keeps naming it after a
    /// `chdir` (see `place.rs`).
    place: Place,
    /// The process that acquired (see `owner.rs`). After `fork`, the child has a copy of this
    /// value whose descriptor shares the parent's lock; only `owner` may rewrite, unlink or
    /// unlock.
    owner: Process,
    dev: u64,
    ino: u64,
    keep_file: bool,
}

impl PidLockFile {
    #[doc = include_str!("lock/acquire.md")]
    pub fn acquire(&mut self, timeout: Option<Duration>) -> Result<(), LockError> {
        self.acquire_unless(timeout, None)
    }

    /// [`acquire`](Self::acquire), giving up as soon as it notices `cancelled` (it looks every
    /// 100 ms, see `wait.rs`): then it fails as a timeout would, and never takes the lock.
    /// For a waiter whose caller may go away (an `async fn`'s helper thread).
    pub(crate) fn acquire_unless(
        &mut self,
        timeout: Option<Duration>,
        cancelled: Option<&AtomicBool>,
    ) -> Result<(), LockError> {
        let me = Process::current();
        match &self.held {
            Some(held) if held.owner == me => return Err(self.mine()),
            // Inherited across fork: the lock is the parent's. Dropping our copy of the
            // descriptor leaves it alone (unlocking it would not).
            Some(_) => self.held = None,
            None => {}
        }

        // A relative path means the current directory now, for the whole acquisition and for
        // as long as the lock is held.
        let place = Place::fix(&self.path).map_err(|e| self.failed(e))?;
        let at = place.path();
        // A deadline too far away to represent is no deadline.
        let started = Instant::now();
        let deadline = timeout.and_then(|t| started.checked_add(t));
        let mut left = Leftovers::new(me);
        // How to wait for a released file to go: needed only on Windows without POSIX deletes.
        let mut deleting = sys::Backoff::new();
        let (file, meta, id, pid_written) = loop {
            // A caller that went away while we were moving from a stale inode to the new file
            // must not get the lock after all.
            if cancelled.is_some_and(|c| c.load(Ordering::Acquire)) {
                return Err(self.busy(timeout.unwrap_or_default()));
            }
            // Never O_TRUNC: a contender that loses must leave the holder's PID alone.
            let file = match open_lock_file(at) {
                Ok(file) => file,
                // Windows, where the last release could not use POSIX deletes: its file lingers,
                // unopenable, until its last handle closes. A release under way is neither a
                // failure nor a free lock: wait it out (a zero timeout for as long as it would
                // ride out shared locks).
                Err(e) if sys::is_delete_pending(&e) => {
                    // Our own handles on stale files count too: the pending file cannot go
                    // while one of them is open, so close them now, not when we are done.
                    drop(std::mem::take(&mut left.stale));
                    let until = deadline.map(|d| d.max(started + SHARED_PATIENCE));
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Err(self.busy(timeout.unwrap_or_default()));
                    }
                    deleting.wait(until.unwrap_or_else(|| Instant::now() + SHARED_PATIENCE));
                    continue;
                }
                Err(e) => return Err(self.failed(e)),
            };
            // A short timeout rides out shared locks for `SHARED_PATIENCE` and `SHARED_TRIES`
            // tries, however slowly a loaded machine lets them come; a longer one for as long
            // as it waits anyway.
            let patience = SHARED_PATIENCE.max(timeout.unwrap_or_default());
            let short = timeout.is_some_and(|t| t <= SHARED_PATIENCE);
            let min_tries = if short { SHARED_TRIES } else { 0 };
            let first = match try_lock(&file, patience, min_tries, &mut left.asked)
                .map_err(|e| self.failed(e))?
            {
                Try::SharedOnly if deadline.is_some() => return Err(self.failed(shared_only())),
                // Without a deadline, the blocking wait below outlasts shared locks too.
                Try::SharedOnly => Try::Held,
                first => first,
            };
            if first == Try::Held {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(self.busy(timeout.unwrap_or_default()));
                }
                // A wait for a lock this very thread holds (through another instance) would
                // never end, or end only at the deadline: say so at once.
                if self.held_by_this_thread(&file) {
                    return Err(self.mine());
                }
                let locked = self.wait_for_release(&file, at, deadline, cancelled, &mut left);
                if !locked.map_err(|e| self.failed(e))? {
                    return Err(self.busy(timeout.unwrap_or_default()));
                }
            }
            // FreeBSD's flopen: the holder we waited for unlinked the file before letting go,
            // or someone replaced it, and then we hold a lock on an inode nobody else will look
            // at. If the name is free, our ready-made successor takes it (`link` fails if the
            // name exists, so this costs nothing to try); otherwise check what it names.
            if let Some((ready, _)) = left.spare.as_ref().and_then(Option::as_ref)
                && sys::link_spare(ready, at).is_ok()
                && let Some((ready, ready_meta)) = left.spare.take().flatten()
            {
                let ready_id = sys::identity(&ready, &ready_meta).ok();
                let_go_of_stale(&file);
                left.stale.push(file);
                left.stale.push(ready);
                // Lock the successor through a descriptor opened by its new name, so that the
                // lock shows on the PID file's path (in `/proc`, `lslocks`), not on the
                // spare's first, empty name. Another waiter may lock it first: then it is
                // theirs, and we wait for it like any other.
                let named = open_lock_file(at).map_err(|e| self.failed(e))?;
                if try_lock(&named, SHARED_PATIENCE, 0, &mut left.asked)
                    .map_err(|e| self.failed(e))?
                    == Try::Locked
                {
                    let meta = named.metadata().map_err(|e| self.failed(e))?;
                    let id = sys::identity(&named, &meta).map_err(|e| self.failed(e))?;
                    let ours = ready_id == Some(id);
                    if names(at, id).map_err(|e| self.failed(e))? {
                        break (named, meta, id, ours);
                    }
                    let_go_of_stale(&named);
                }
                left.stale.push(named);
                continue;
            }
            let meta = file.metadata().map_err(|e| self.failed(e))?;
            let id = sys::identity(&file, &meta).map_err(|e| self.failed(e))?;
            if names(at, id).map_err(|e| self.failed(e))? {
                break (file, meta, id, false);
            }
            // Let other waiters on the stale inode go on to the new file, but do not close it
            // here: its final close frees the unlinked inode, which takes longer than all the
            // rest of a handoff and need not delay this one.
            let_go_of_stale(&file);
            left.stale.push(file);
        };
        // A spare is our own unnamed file, written before it got its name; anything else
        // gets checked, then written.
        if !pid_written {
            check_writable_pid_file(&file, &meta).map_err(|e| self.failed(e))?;
            let written = sys::set_pid_file_mode(&file, &meta)
                .and_then(|()| pidfile::write(&file, me.pid(), meta.len()));
            if let Err(e) = written {
                // A failed write (ENOSPC, EIO) must not leave a half-written file behind. We
                // still hold the lock, so removing the file cannot hurt anyone; closing it
                // releases. A kept file must stay the same inode for flock(1) waiters.
                let _ = if self.keep_file {
                    file.set_len(0)
                } else {
                    fs::remove_file(at)
                };
                return Err(self.failed(e));
            }
        }
        drop(left);
        let (dev, ino) = id;
        // Any thread may hold it from here on: this instance, or the guard around it, can move.
        owner::record_movable(me, dev, ino);
        self.held = Some(Held {
            file,
            place,
            owner: me,
            dev,
            ino,
            keep_file: self.keep_file,
        });
        self.forward.start(&self.path);
        Ok(())
    }

    #[doc = include_str!("lock/release.md")]
    pub fn release(&mut self) -> Result<(), UnlockError> {
        let inherited = match self.held.take() {
            Some(held) if held.owner.is_current() => {
                self.forward.stop(&self.path);
                return held.release(&self.path);
            }
            // Inherited across fork: dropping it closes only this process's copy.
            Some(_) => true,
            None => false,
        };
        Err(self.not_holding(inherited))
    }
}

impl Drop for PidLockFile {
    /// Releases the lock if this instance holds it. Errors are ignored: the kernel lock is gone
    /// in any case, and a file left behind is stale and taken over by the next `acquire`.
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && held.owner.is_current()
        {
            self.forward.stop(&self.path);
            let _ = held.release(&self.path);
        }
    }
}

impl Held {
    /// Lets go of the lock. `path` is the path as the user gave it, for the error.
    fn release(self, path: &Path) -> Result<(), UnlockError> {
        let at = self.place.path();
        // From here on this process does not count itself as the holder.
        owner::forget(self.owner, self.dev, self.ino);
        // Unlink while still holding the lock, so that no one can lock the old inode after we
        // let go and believe it is the lock at `path`. Only unlink the file we locked: if
        // someone replaced it behind our back, the new one is not ours to remove.
        // A kept file is emptied instead, through our own descriptor, so whoever locks the
        // inode next (a flock(1) waiter on it included) finds no PID of ours.
        let removed = if self.keep_file {
            self.file.set_len(0).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("it is kept (keep_file), and emptying it failed: {e}"),
                )
            })
        } else {
            match names(at, (self.dev, self.ino)) {
                Ok(true) => sys::remove_locked_file(at, (self.dev, self.ino)),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            }
        };
        // Unlock explicitly instead of relying on close: children forked since `acquire`
        // share this lock and would otherwise keep it alive. An unlock error would mean the
        // descriptor is bad, and then closing it releases the lock as well.
        let _ = sys::unlock(&self.file);
        // Such a child also keeps our close from being the last, which is what wakes timed
        // waiters.
        sys::announce_release(&self.file);
        drop(self.file);
        removed.map_err(|source| UnlockError::RemoveFailed {
            path: path.to_owned(),
            source,
        })
    }
}
