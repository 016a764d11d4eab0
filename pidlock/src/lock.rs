//! `PidLockFile`: the whole acquire/release algorithm, in the manner of FreeBSD's `flopen(3)` and
//! `pidfile(3)`.
//!
//! The kernel decides who holds the lock: the holder keeps an exclusive `flock` on the PID file
//! (on Windows a `LockFileEx` on one far byte of it, see `sys/windows.rs`) for as long as it
//! holds the lock, and the kernel drops it when the holder dies, however it dies. The PID
//! written in the file only tells people who the holder is.

use std::fs::{self, File, Metadata, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{LockError, UnlockError};
use crate::guard::PidLockGuard;
use crate::owner::{self, Process};
use crate::place::Place;
use crate::sys::{self, FileId, ReleaseWatch};
use crate::{closer, pidfile, probe};

/// A lock that is also a classic Unix PID file containing `"<pid>\n"`.
///
/// `PidLockFile::new` does no I/O; [`acquire`](Self::acquire) takes the lock and
/// [`release`](Self::release) (or dropping the value) lets it go. See the [crate
/// documentation](crate) for what "locked" means under crashes, forks and signals.
///
/// ```
/// use std::time::Duration;
/// use pidlock::PidLockFile;
///
/// let path = std::env::temp_dir().join(format!("pidlock-doc-pidlockfile-{}.pid", std::process::id()));
/// let mut lock = PidLockFile::new(&path);
/// lock.acquire(Some(Duration::from_secs(5)))?;
/// assert!(lock.is_locked());
/// assert!(lock.i_am_locking());
/// assert_eq!(lock.read_pid(), Some(std::process::id()));
/// lock.release()?;
/// assert!(!path.exists());
/// # Ok::<(), pidlock::Error>(())
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
    /// A lock on the file at exactly `path`. Nothing is opened or created until
    /// [`acquire`](Self::acquire).
    ///
    /// ```
    /// let lock = pidlock::PidLockFile::new("/run/user/1000/myapp.pid");
    /// assert_eq!(lock.path(), std::path::Path::new("/run/user/1000/myapp.pid"));
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PidLockFile {
            path: path.into(),
            held: None,
            keep_file: false,
            forward: crate::forward::Forwarding::default(),
        }
    }

    /// With `true`, [`release`](Self::release) empties the PID file and leaves it in place
    /// instead of removing it, so that the lock file is always the same inode.
    ///
    /// Use it when shell scripts lock the same file with `flock(1)` (or any locker that does
    /// not check, after locking, that the path still names the file it locked). By default the
    /// release unlinks the file while still holding the lock, which is safe among pidlock
    /// users, who re-check the path after locking; but a `flock(1)` already waiting on the old
    /// file would then lock an inode that nobody else sees, and run alongside the next holder
    /// of the new file. With the file kept, everyone locks the one inode. The cost: a free lock
    /// leaves an empty file behind, which readers take as "free", as they take any file that
    /// no live process holds.
    ///
    /// Every process using the path should agree on this setting: a holder without it still
    /// unlinks the file.
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-keep-file-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path).keep_file(true);
    /// lock.acquire(None)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, format!("{}\n", std::process::id()));
    /// lock.release()?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "");
    /// assert!(!lock.is_locked());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn keep_file(mut self, keep: bool) -> Self {
        self.keep_file = keep;
        self
    }

    /// Takes the lock on `path` and returns a guard that releases it when dropped.
    ///
    /// `timeout` means the same as for [`acquire`](Self::acquire).
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-lock-{}.pid", std::process::id()));
    /// {
    ///     let _guard = PidLockFile::lock(&path, None)?;
    ///     // ... the only copy of this program runs here ...
    /// }
    /// assert!(!PidLockFile::new(&path).is_locked());
    /// # Ok::<(), pidlock::LockError>(())
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn lock(
        path: impl Into<PathBuf>,
        timeout: Option<Duration>,
    ) -> Result<PidLockGuard, LockError> {
        let mut lock = PidLockFile::new(path);
        lock.acquire(timeout)?;
        Ok(PidLockGuard::new(lock))
    }

    /// One try, without waiting: the lock's guard if it was free, `None` if another holder has it
    /// (another process, or another instance in this one). The shorthand for
    /// [`acquire`](Self::acquire)`(Some(Duration::ZERO))` that tells "held" apart from an error,
    /// as `fslock`'s `try_lock` does.
    ///
    /// It returns the guard rather than a `bool`: a `bool` that a caller forgets to look at (or
    /// `?`s away) lets two copies run, while here the only way to run under the lock is to hold
    /// the `Some`. Any other failure (a missing directory, a symlink at `path`, no permission) is
    /// an `Err`, never a `None`.
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-try-{}.pid", std::process::id()));
    /// let Some(guard) = PidLockFile::new(&path).try_acquire()? else {
    ///     eprintln!("another copy is running");
    ///     return Ok(());
    /// };
    /// // Held: a second try, from anywhere, gets `None`.
    /// assert!(PidLockFile::new(&path).try_acquire()?.is_none());
    /// drop(guard);
    /// assert!(PidLockFile::new(&path).try_acquire()?.is_some());
    /// # Ok::<(), pidlock::LockError>(())
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn try_acquire(mut self) -> Result<Option<PidLockGuard>, LockError> {
        match self.acquire(Some(Duration::ZERO)) {
            Ok(()) => Ok(Some(PidLockGuard::new(self))),
            Err(LockError::AlreadyLocked { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The lock file's path, as given to [`new`](Self::new).
    ///
    /// While this instance holds the lock, its status calls and its release do not look this
    /// path up again when it is relative: they go to the file found at acquisition, in the
    /// directory that was current then (held open on Linux, so that renaming it changes
    /// nothing; elsewhere the path resolved to an absolute one then).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `pid` into the PID file of the lock this instance holds, in place of this
    /// process's own, for a supervisor that holds the lock on behalf of a child it started (as
    /// the `pidlock run` command does): `kill $(cat app.pid)` then reaches the child, not the
    /// supervisor. The lock stays with this process, and lasts until it is released or this
    /// process dies, whatever becomes of `pid`: the supervisor must not outlive the child's
    /// work for long, nor let the child outlive it.
    ///
    /// Like every write of the PID, the new one goes over the old, so readers never see an
    /// empty or torn file. Fails with [`LockError::LockFailed`] if this instance does not hold
    /// the lock in this process, if `pid` is not a PID (`1..=i32::MAX`), or if the write fails.
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-set-pid-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// lock.acquire(None)?;
    /// let mut child = std::process::Command::new("true").spawn()?;
    /// lock.set_pid(child.id())?;
    /// assert_eq!(lock.read_pid(), Some(child.id()));
    /// child.wait()?;
    /// lock.release()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_pid(&mut self, pid: u32) -> Result<(), LockError> {
        let file = match &self.held {
            Some(held) if held.owner.is_current() => &held.file,
            _ => {
                return Err(self.failed(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "this PidLockFile does not hold the lock, so it may not write the PID file",
                )));
            }
        };
        if pidfile::parse(pid.to_string().as_bytes()) != Some(pid) {
            return Err(self.failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{pid} is not a process ID"),
            )));
        }
        file.metadata()
            .and_then(|meta| pidfile::write(file, pid, meta.len()))
            .map_err(|e| self.failed(e))
    }

    /// Takes the lock, creating the PID file if needed and writing this process's PID into it.
    ///
    /// - `None`: wait as long as it takes.
    /// - `Some(Duration::ZERO)`: try once; [`LockError::AlreadyLocked`] if someone holds it.
    /// - `Some(d)`: wait up to `d` (on the monotonic clock); [`LockError::LockTimeout`] after.
    ///
    /// A waiter is woken by the release itself (a blocking `flock`, or on Linux an inotify close
    /// event when there is a deadline), not by polling. A file left by a dead holder is not
    /// locked and is taken over at once.
    ///
    /// A relative `path` means the current directory at this call, for as long as the lock is
    /// held: a later `chdir`, or on Linux a rename of the directory, does not change which file
    /// this instance's status calls and release look at (see [`path`](Self::path)).
    ///
    /// # Waiting for a lock this process holds
    ///
    /// The lock is not reentrant, and a holder in this process is waited for like any other:
    /// the lock belongs to whoever has the holding `PidLockFile` (or [`PidLockGuard`]), on
    /// whatever thread it has been moved to, and another thread that asks for it waits until
    /// that value releases it. Waiting for itself is refused at once in exactly these cases:
    /// - this instance holds the lock: `AlreadyLocked`, whatever the timeout;
    /// - the calling thread runs a `#[single_instance]` function that holds the lock (its guard
    ///   cannot leave the function's frame): `AlreadyLocked`, for any timeout but zero.
    ///
    /// A lock that a guarded `async fn`'s task holds is not taken for the calling thread's: a
    /// multi-threaded runtime moves the task between worker threads, and a thread it left must
    /// wait its turn. (A guarded function called within such a task is refused at once, see
    /// `#[single_instance]`.)
    ///
    /// Otherwise, as with [`std::sync::Mutex::lock`], a caller that holds the lock itself
    /// through another value (a guard kept on this thread, or moved into it) is not recognised:
    /// `Some(d)` fails with [`LockError::LockTimeout`] after `d`, `Some(Duration::ZERO)` with
    /// `AlreadyLocked` at once, and `None` never returns. A guard cannot say which thread it is
    /// on, so telling this case apart would refuse the far more common one of a guard that was
    /// handed to another thread, which will let go.
    ///
    /// Any error other than "someone holds it" is [`LockError::LockFailed`]; in particular a
    /// symlink, directory, FIFO or hard-linked file at `path` is refused and never written.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pidlock::{LockError, PidLockFile};
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-acquire-{}.pid", std::process::id()));
    /// let mut holder = PidLockFile::new(&path);
    /// holder.acquire(None)?;
    ///
    /// let waiting = path.clone();
    /// let err = std::thread::spawn(move || {
    ///     PidLockFile::new(waiting).acquire(Some(Duration::from_millis(50)))
    /// })
    /// .join()
    /// .unwrap()
    /// .unwrap_err();
    /// assert!(matches!(err, LockError::LockTimeout { .. }));
    /// assert!(err.to_string().contains("is locked by process"));
    ///
    /// // Asking the holding instance again is refused at once.
    /// let err = holder.acquire(Some(Duration::from_secs(60))).unwrap_err();
    /// assert!(matches!(err, LockError::AlreadyLocked { .. }));
    ///
    /// // A lock handed to another thread is waited for, and taken when that thread lets go.
    /// let worker = std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(20));
    ///     drop(holder);
    /// });
    /// let mut again = PidLockFile::new(&path);
    /// again.acquire(Some(Duration::from_secs(60)))?;
    /// worker.join().unwrap();
    /// # Ok::<(), pidlock::Error>(())
    /// ```
    pub fn acquire(&mut self, timeout: Option<Duration>) -> Result<(), LockError> {
        self.acquire_unless(timeout, None)
    }

    /// [`acquire`](Self::acquire), giving up as soon as it notices `cancelled` (within the
    /// safety re-check, 100 ms): then it fails as a timeout would, and never takes the lock.
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
        let mut left = Leftovers {
            me,
            expected: false,
            watch: None,
            spare: None,
            stale: Vec::new(),
        };
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
            // A zero timeout rides out shared locks for `SHARED_PATIENCE`; a longer one for as
            // long as it waits anyway.
            let patience = SHARED_PATIENCE.max(timeout.unwrap_or_default());
            let first = match try_lock(&file, patience).map_err(|e| self.failed(e))? {
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
                // Get ready for the handoff while there is time: a successor file, and the
                // thread that will close what we leave behind (see `closer.rs`).
                // A kept file is never unlinked, so there is no name for a successor to take.
                if left.spare.is_none() {
                    left.spare = Some(if self.keep_file {
                        None
                    } else {
                        sys::prepare_spare(parent_dir(at), me.pid())
                    });
                }
                if !left.expected {
                    closer::expect(me);
                    left.expected = true;
                }
                let locked = match (deadline, cancelled) {
                    (None, None) => lock_blocking(&file),
                    // A blocking flock cannot be interrupted: a cancellable wait watches.
                    (None, Some(cancelled)) => {
                        lock_before(&file, None, &mut left.watch, me, Some(cancelled))
                    }
                    (Some(deadline), _) => {
                        lock_before(&file, Some(deadline), &mut left.watch, me, cancelled)
                    }
                };
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
                if try_lock(&named, SHARED_PATIENCE).map_err(|e| self.failed(e))? == Try::Locked {
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

    /// Releases the lock: removes the PID file while still holding the lock (or, with
    /// [`keep_file`](Self::keep_file), empties it), then unlocks.
    ///
    /// Fails with [`UnlockError::NotLocked`] if nobody holds the lock, and with
    /// [`UnlockError::NotMyLock`] if someone else does, including the parent of a forked child:
    /// the child's copy of the descriptor is closed, but the parent's lock and file stay.
    ///
    /// ```
    /// use pidlock::{PidLockFile, UnlockError};
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-release-{}.pid", std::process::id()));
    /// let mut mine = PidLockFile::new(&path);
    /// mine.acquire(None)?;
    /// let mut other = PidLockFile::new(&path);
    /// assert!(matches!(other.release(), Err(UnlockError::NotMyLock { .. })));
    /// mine.release()?;
    /// assert!(matches!(mine.release(), Err(UnlockError::NotLocked { .. })));
    /// # Ok::<(), pidlock::Error>(())
    /// ```
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
        if inherited || probe::lock_is_held(&self.path) {
            Err(UnlockError::NotMyLock {
                path: self.path.clone(),
                pid: probe::holder_pid(&self.path),
                host: None,
                server: None,
            })
        } else {
            Err(UnlockError::NotLocked {
                path: self.path.clone(),
                server: None,
            })
        }
    }

    /// Whether a live process holds the lock, through any instance.
    ///
    /// Unlike the seed's "the file exists" rule, a file left behind by a dead holder does not
    /// count: only a held kernel lock does. On Linux this reads the kernel's lock table where it
    /// is complete, and on macOS and FreeBSD asks `fcntl(F_GETLK)`, without touching the lock;
    /// elsewhere it takes a shared lock for an instant, which concurrent `acquire` calls ride
    /// out. A file this process may not open counts as held.
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-is-locked-{}.pid", std::process::id()));
    /// std::fs::write(&path, "4242\n")?; // a leftover from a crashed holder
    /// let lock = PidLockFile::new(&path);
    /// assert!(!lock.is_locked());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.holds_path() || probe::lock_is_held(self.at())
    }

    /// Whether the current process holds the lock, through this instance or any other.
    ///
    /// This is answered from the locks this process has taken, never from the PID in the file:
    /// two containers sharing a volume may both run their program as PID 1, and a PID file
    /// saying "1" names neither for sure.
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-i-am-locking-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// assert!(!lock.i_am_locking());
    /// lock.acquire(None)?;
    /// assert!(PidLockFile::new(&path).i_am_locking());
    /// # Ok::<(), pidlock::LockError>(())
    /// ```
    pub fn i_am_locking(&self) -> bool {
        self.holds_path()
            || sys::path_identity(self.at())
                .is_ok_and(|id| id.is_some_and(|(dev, ino)| owner::holds(dev, ino)))
    }

    /// The PID written in the lock file, read the way FHS asks readers to (whitespace, leading
    /// zeros, a missing newline and extra lines are fine). `None` if there is no file or it does
    /// not hold a valid PID. If the lock is held and the file is still empty, the holder is just
    /// starting, and this re-reads for a few milliseconds.
    ///
    /// The file of a dead holder still names it; use [`is_locked`](Self::is_locked) to know
    /// whether the PID belongs to a live holder.
    ///
    /// ```
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-read-pid-{}.pid", std::process::id()));
    /// std::fs::write(&path, " 0042 \n")?;
    /// assert_eq!(PidLockFile::new(&path).read_pid(), Some(42));
    /// std::fs::write(&path, "0x42\n")?;
    /// assert_eq!(PidLockFile::new(&path).read_pid(), None);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_pid(&self) -> Option<u32> {
        probe::holder_pid(self.at())
    }

    /// Where the lock file is for this instance's status calls: where it was found at
    /// acquisition while this instance holds the lock (a relative path is not looked up again
    /// after a `chdir`, see `place.rs`), else the path as given.
    fn at(&self) -> &Path {
        self.held
            .as_ref()
            .map_or(self.path.as_path(), |held| held.place.path())
    }

    /// Whether this instance holds the lock in this process (not a copy inherited by fork) on
    /// the file that `path` still names: if someone removed or replaced the file, the lock at
    /// `path` is no longer the one we hold.
    fn holds_path(&self) -> bool {
        self.held.as_ref().is_some_and(|held| {
            held.owner.is_current()
                && names(held.place.path(), (held.dev, held.ino)).unwrap_or(false)
        })
    }

    /// Whether the thread calling holds the lock on the inode `file` has open, through any
    /// instance.
    fn held_by_this_thread(&self, file: &File) -> bool {
        file.metadata()
            .and_then(|meta| sys::identity(file, &meta))
            .is_ok_and(|(dev, ino)| owner::held_by_thread(dev, ino))
    }

    /// Whether the caller (this thread, or the async task `task` wakes) holds the lock at
    /// `path`, through any instance: then waiting for it would never end.
    pub(crate) fn held_by_caller(path: &Path, task: Option<&Waker>) -> bool {
        sys::path_identity(path)
            .is_ok_and(|id| id.is_some_and(|(dev, ino)| owner::held_by_caller(dev, ino, task)))
    }

    /// Records that the calling thread holds this lock until it is released: for a
    /// `#[single_instance]` function, whose guard never leaves the frame that runs its body, so
    /// that a nested call on this thread is refused at once instead of waiting for itself.
    pub(crate) fn pin_to_thread(&self) {
        if let Some(held) = &self.held {
            owner::pin_to_thread(held.owner, held.dev, held.ino);
        }
    }

    /// Records that the async task `task` wakes now holds this lock (see `owner.rs`).
    pub(crate) fn hand_to_task(&self, task: &Waker) {
        if let Some(held) = &self.held {
            owner::hand_to_task(held.owner, held.dev, held.ino, task);
        }
    }

    /// The error for a lock this process already holds: it is not reentrant.
    fn mine(&self) -> LockError {
        LockError::AlreadyLocked {
            path: self.path.clone(),
            pid: Some(std::process::id()),
            host: None,
            server: None,
        }
    }

    fn failed(&self, source: io::Error) -> LockError {
        LockError::failed(&self.path, source)
    }

    fn busy(&self, timeout: Duration) -> LockError {
        let path = self.path.clone();
        let pid = probe::holder_pid(&self.path);
        if timeout.is_zero() {
            LockError::AlreadyLocked {
                path,
                pid,
                host: None,
                server: None,
            }
        } else {
            LockError::LockTimeout {
                path,
                pid,
                timeout,
                host: None,
                server: None,
            }
        }
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

/// What a waiter gathers on its way to the lock and lets go of once it holds the lock, or gives
/// up: the watch it slept on, its spare successor file if unused, and the stale inodes it locked
/// on the way (and its spare's unnamed descriptor, once the spare has a name). They are closed at once, so that the lock is seen on the PID file alone, but not
/// by the caller: final closes are slow (see `closer.rs`).
struct Leftovers {
    me: Process,
    /// Whether the closer thread was told to expect these (see `closer.rs`).
    expected: bool,
    watch: Option<ReleaseWatch>,
    spare: Option<Option<(File, Metadata)>>,
    stale: Vec<File>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let watch = self.watch.take();
        let unused = self.spare.take().flatten().map(|(unused, _)| unused);
        let stale = std::mem::take(&mut self.stale);
        let nothing = watch.is_none() && unused.is_none() && stale.is_empty();
        let items = (watch, unused, stale);
        if self.expected {
            closer::hand_over(self.me, items);
        } else if !nothing {
            // A file replaced under us between the lock and the check; no wait came first.
            closer::close_later(self.me, items);
        }
    }
}

/// Opens (creating with mode 0644 if needed) the lock file for locking, without following a
/// symlink and without truncating it.
fn open_lock_file(path: &Path) -> io::Result<File> {
    sys::open_for_locking(path).map_err(|e| explain_open_error(path, e))
}

/// Turns the bare errno of a refused open into a sentence about the path.
fn explain_open_error(path: &Path, err: io::Error) -> io::Error {
    let kind = err.kind();
    let found = fs::symlink_metadata(path).ok();
    let reason = match &found {
        // ELOOP on Linux and macOS, EMLINK on FreeBSD: O_NOFOLLOW met a symlink.
        Some(meta) if meta.file_type().is_symlink() => {
            "it is a symbolic link, and pidlock does not follow symbolic links".to_owned()
        }
        Some(meta) if meta.is_dir() => "it is a directory".to_owned(),
        None if kind == io::ErrorKind::NotFound => "its parent directory does not exist".to_owned(),
        _ => return err,
    };
    io::Error::new(kind, format!("{reason} ({err})"))
}

/// Waits as long as it takes for the lock.
fn lock_blocking(file: &File) -> io::Result<bool> {
    loop {
        match sys::lock_exclusive(file) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Tries for the lock until `deadline` (`None`: without a limit) or until `cancelled`,
/// sleeping between tries until the file is closed by someone (the holder's release), not for
/// fixed intervals. The caller has tried once already.
fn lock_before(
    file: &File,
    deadline: Option<Instant>,
    watch: &mut Option<ReleaseWatch>,
    me: Process,
    cancelled: Option<&AtomicBool>,
) -> io::Result<bool> {
    /// How far ahead a wait without a deadline looks; the safety re-check comes first anyway.
    const FAR: Duration = Duration::from_secs(3600);
    // Where the kernel queues waiters itself (Windows), it wakes us with the lock.
    if let Some(locked) = sys::wait_in_kernel(file, deadline, cancelled) {
        return locked;
    }
    let watch = watch.get_or_insert_with(|| ReleaseWatch::new(me));
    // Arm, then try again: a release between the caller's try and the watch would otherwise go
    // unnoticed until the safety re-check.
    watch.arm(file);
    loop {
        if cancelled.is_some_and(|c| c.load(Ordering::Acquire)) {
            return Ok(false);
        }
        // Shared locks that stay are waited out like a holder, within the deadline.
        let patience = deadline.map_or(SHARED_PATIENCE, |d| {
            d.saturating_duration_since(Instant::now())
                .min(SHARED_PATIENCE)
        });
        if try_lock(file, patience)? == Try::Locked {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        watch.wait(deadline.unwrap_or(now + FAR));
    }
}

/// How long [`try_lock`] rides out shared locks at least, even for a zero timeout. A reader's
/// probe holds its shared lock for microseconds, so readers probing back to back leave a gap
/// well within this; shared locks that stay in the way this long belong to some other program
/// (`flock -s`).
const SHARED_PATIENCE: Duration = Duration::from_millis(200);

/// What one attempt at the exclusive lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Try {
    /// We hold it now.
    Locked,
    /// Someone holds it exclusively: a holder.
    Held,
    /// Only shared locks were in the way, for all of the patience given.
    SharedOnly,
}

/// One non-blocking attempt at the exclusive lock, riding out readers' probes for up to
/// `patience`.
///
/// A holder's lock is exclusive; a reader's probe (see `probe.rs`) is a shared lock held for an
/// instant. If a shared lock of our own goes through, nobody holds the exclusive one and only
/// shared locks are in the way, so we try again: a lock that nobody holds is never reported as
/// held, however busy its readers are. Between tries we yield, then sleep a little longer each
/// time, so that readers probing back to back leave a gap.
fn try_lock(file: &File, patience: Duration) -> io::Result<Try> {
    let mut pause = Duration::ZERO;
    let mut shared_since = None;
    loop {
        match sys::try_lock_exclusive(file) {
            Ok(()) => return Ok(Try::Locked),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e),
        }
        match sys::try_lock_shared(file) {
            Ok(()) => sys::unlock(file)?,
            Err(TryLockError::WouldBlock) => return Ok(Try::Held),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if shared_since.get_or_insert_with(Instant::now).elapsed() > patience {
            return Ok(Try::SharedOnly);
        }
        if pause.is_zero() {
            thread::yield_now();
        } else {
            thread::sleep(pause);
        }
        pause = (pause * 2).clamp(Duration::from_micros(20), Duration::from_millis(2));
    }
}

/// The error for a lock that nobody holds but shared locks kept from us for the whole timeout
/// (or [`SHARED_PATIENCE`]): not a holder, so not `AlreadyLocked` or `LockTimeout`.
fn shared_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "nobody holds the lock, but shared locks kept it from being taken: another program \
         holds the file with `flock -s`",
    )
}

/// Unlocks a stale inode we locked on the way (unlinked or replaced), and says so to the
/// other waiters on it: an unlock alone makes no event, and they would sleep until the safety
/// re-check before moving on to the new file.
fn let_go_of_stale(file: &File) {
    let _ = sys::unlock(file);
    sys::announce_release(file);
}

/// The directory the lock file lives in.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether `path` (not followed if a symlink) names the file `id`.
fn names(path: &Path, id: FileId) -> io::Result<bool> {
    Ok(sys::path_identity(path)? == Some(id))
}

/// Refuses to write a PID into anything but a plain regular file with a single name. A FIFO or
/// device planted at the path is not a PID file, and a hard link could point our write at
/// someone else's file.
fn check_writable_pid_file(file: &File, meta: &Metadata) -> io::Result<()> {
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

/// Sharing the lock with a job of child processes, as `flock(1)` does: the kernel keeps a
/// `flock` for as long as any descriptor of the locked open file is open, in any process.
#[cfg(unix)]
impl PidLockFile {
    /// The locked descriptor, while this process holds the lock; `None` otherwise.
    ///
    /// It is close-on-exec (pitfall 8). A program that wants a child to hold the lock too
    /// duplicates it without that flag for the child (`rustix::io::dup`) and passes it on; the
    /// lock then lasts until the last copy is closed, and must be let go with
    /// [`detach`](Self::detach), never [`release`](Self::release), which would unlock it under
    /// the child's feet.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-locked-fd-{}.pid", std::process::id()));
    /// let mut lock = pidlock::PidLockFile::new(&path);
    /// assert!(lock.locked_fd().is_none());
    /// lock.acquire(None)?;
    /// assert!(lock.locked_fd().is_some());
    /// lock.release()?;
    /// # Ok::<(), pidlock::Error>(())
    /// ```
    pub fn locked_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.held
            .as_ref()
            .filter(|held| held.owner.is_current())
            .map(|held| held.file.as_fd())
    }

    /// Stops holding the lock through this instance without unlocking it, and hands over the
    /// locked descriptor: the lock now lasts while that descriptor, or any copy of it that
    /// children inherited, is open. Nothing is unlinked or emptied, and release and drop do
    /// nothing from here on. `None` if this process does not hold the lock.
    ///
    /// The file is left with the last PID written to it. It cannot be removed safely while
    /// others may still hold the lock (a newcomer would create and lock a new file beside
    /// them, pitfall 4); once the last copy is closed it is an unlocked file, which the next
    /// holder takes over and readers count as free (pitfall 1). To tidy up, take the lock
    /// again with a fresh instance and release that: it succeeds only when nobody holds it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pidlock::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-detach-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// lock.acquire(None)?;
    /// let fd = lock.detach().expect("held");
    /// assert!(lock.is_locked() && !lock.i_am_locking());
    /// drop(fd);
    /// assert!(!lock.is_locked());
    /// let mut tidy = PidLockFile::new(&path);
    /// tidy.acquire(Some(Duration::ZERO))?;
    /// tidy.release()?;
    /// assert!(!path.exists());
    /// # Ok::<(), pidlock::Error>(())
    /// ```
    pub fn detach(&mut self) -> Option<std::os::fd::OwnedFd> {
        let held = self.held.take()?;
        if !held.owner.is_current() {
            // Inherited across fork: this process's copy is closed, as on drop.
            return None;
        }
        owner::forget(held.owner, held.dev, held.ino);
        Some(held.file.into())
    }
}
