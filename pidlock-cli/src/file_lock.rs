//! The PID-file backend: [`pidlockfile::PidLockFile`], plus what only a separate command needs:
//! confirming a holder through the kernel's lock table, and waiting for a release without
//! taking part in the lock.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pidlockfile::{LockError, LossWatch, PidLockFile, UnlockError};
use rustix::fs::OFlags;

use crate::failure::Failure;
use crate::holder::{self, ProcessInfo, pin};
use crate::lock::{self, Confirmed, Holder, Lock, Status, Target};

#[derive(Debug)]
pub struct FileLock {
    lock: PidLockFile,
    keep_file: bool,
    /// This process's copy of a lock handed over to a job: held open, never unlocked.
    handed_over: Option<OwnedFd>,
}

impl FileLock {
    pub fn new(path: &Path, keep_file: bool) -> Self {
        FileLock {
            lock: PidLockFile::new(path).keep_file(keep_file),
            keep_file,
            handed_over: None,
        }
    }

    fn path(&self) -> &Path {
        self.lock.path()
    }

    /// What is at the path: `None` if nothing; an error for anything that cannot be a PID
    /// file, or that this user may not read (the runtime counts such a file as held, and a
    /// command that reports must say why instead).
    fn inspect(&self) -> Result<Option<Metadata>, Failure> {
        let path = self.path();
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(inspect_failed(path, source)),
        };
        if meta.file_type().is_symlink() {
            return Err(Failure::NotAPidFile {
                path: path.to_owned(),
                reason: "it is a symbolic link, and pidlock does not follow symbolic links",
            });
        }
        if !meta.is_file() {
            return Err(Failure::NotAPidFile {
                path: path.to_owned(),
                reason: "it is not a regular file",
            });
        }
        match open_for_reading(path) {
            Ok(_) => Ok(Some(meta)),
            // Removed since the look above: a holder's release does that, while it still holds
            // the lock, so the lock is being let go (seen once in CI as `wait` failing).
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(inspect_failed(path, source)),
        }
    }

    /// Waits up to `timeout` (`None`: as long as it takes) until the lock is free at some
    /// instant: the lock of the file at the path, or, with `only`, of that file alone (its
    /// device and inode), whatever file the path names after it. `Ok(false)` if the time ran out.
    fn free_within(
        &self,
        only: Option<(u64, u64)>,
        timeout: Option<Duration>,
    ) -> Result<bool, Failure> {
        if self.inspect()?.is_none() {
            return Ok(true);
        }
        let path = self.path().to_owned();
        let Some(limit) = timeout else {
            return wait_free(&path, only).map(|()| true);
        };
        if limit.is_zero() {
            return Ok(!self.lock.is_locked());
        }
        // A blocking flock cannot be given a deadline: it waits on a thread of its own, which
        // simply ends with this process if the time runs out.
        let (done, result) = mpsc::channel();
        thread::spawn(move || done.send(wait_free(&path, only)));
        match result.recv_timeout(limit) {
            Ok(outcome) => outcome.map(|()| true),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(false),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(inspect_failed(
                self.path(),
                io::Error::other("the waiting thread ended without an answer"),
            )),
        }
    }

    fn stale_or_free(&self, meta: &Metadata) -> Status {
        // An empty file is what a kept file (--keep-file) looks like between holders.
        if meta.len() == 0 {
            return Status::Free;
        }
        let pid = self.lock.read_pid();
        Status::Stale {
            pid,
            now: pid.and_then(ProcessInfo::read),
        }
    }
}

impl Lock for FileLock {
    fn name(&self) -> String {
        let path = self.path();
        path.file_stem()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    fn location(&self) -> String {
        format!("lock file {}", self.path().display())
    }

    fn json_id(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.path().to_string_lossy() })
    }

    fn acquire(&mut self, timeout: Option<Duration>) -> Result<(), LockError> {
        self.lock.acquire(timeout)
    }

    fn set_pid(&mut self, pid: u32) -> Result<(), LockError> {
        self.lock.set_pid(pid)
    }

    fn loss_watch(&self) -> Option<LossWatch> {
        // A file lock cannot be lost while its holder lives.
        None
    }

    fn release(&mut self) -> Result<(), UnlockError> {
        self.lock.release()
    }

    fn inheritable(&mut self) -> Option<BorrowedFd<'_>> {
        self.lock.locked_fd()
    }

    fn hand_over(&mut self) {
        // Detached, the runtime's lock no longer unlocks or unlinks on drop or release.
        if let Some(fd) = self.lock.detach() {
            self.handed_over = Some(fd);
        }
    }

    fn leave(&mut self) -> Result<(), UnlockError> {
        // Closing this copy unlocks nothing while the job holds another.
        drop(self.handed_over.take());
        drop(self.lock.detach());
        // Tidy up as a newcomer would: only a lock taken afresh, proof that nobody holds it,
        // may remove or empty the file (see run.rs).
        let mut fresh = PidLockFile::new(self.path()).keep_file(self.keep_file);
        match fresh.acquire(Some(Duration::ZERO)) {
            Ok(()) => fresh.release(),
            // Still held (by the job, or already by the next holder), or not ours to touch:
            // the file stays, which is always safe.
            Err(_) => Ok(()),
        }
    }

    fn status(&self) -> Result<Status, Failure> {
        let Some(meta) = self.inspect()? else {
            return Ok(Status::Free);
        };
        if !self.lock.is_locked() {
            return Ok(self.stale_or_free(&meta));
        }
        let in_file = self.lock.read_pid();
        let locker = holder::locker(&meta, in_file);
        let holders = holder::sharers(&meta, None);
        // The file's PID only if its process, or its job, holds the lock: a stale PID left by
        // a holder that writes none (flock(1) on a kept file) may be anyone's by now.
        let pid = in_file.filter(|&pid| names_a_holder(pid, locker, &holders));
        // The named process, or (once it has exited, its job holding on) what holds the lock.
        let process = pid
            .and_then(ProcessInfo::read)
            .or_else(|| holders.iter().find_map(|&holder| ProcessInfo::read(holder)))
            .or_else(|| locker.and_then(ProcessInfo::read));
        Ok(Status::Held(Holder {
            pid,
            locker,
            // The kernel lists only this machine's locks.
            host: locker.map(|_| holder::host_name()),
            process,
            session: None,
            command: None,
            // The holder's write of its PID is the last change to the file's inode.
            since: changed_at(&meta),
            file_pid: in_file.filter(|_| pid.is_none()),
            holders,
            wrapper_gone: None,
        }))
    }

    fn wait_until_free(&self, timeout: Option<Duration>) -> Result<bool, Failure> {
        self.free_within(None, timeout)
    }

    /// Waits until no process that shares the lock `target`'s locker took holds it any more:
    /// the signalled holder and every process of its job with the inherited descriptor. A
    /// newcomer that takes the lock at once does not count (its lock has another locker), and
    /// a holder this process cannot see (another user's) is waited for through the lock itself.
    fn let_go_within(
        &self,
        target: &Confirmed,
        timeout: Option<Duration>,
    ) -> Result<bool, Failure> {
        let deadline = timeout.and_then(|limit| Instant::now().checked_add(limit));
        let Some(locker) = target.locker else {
            return self.wait_until_free(timeout);
        };
        loop {
            let Some(meta) = self.inspect()? else {
                return Ok(true);
            };
            let sharers = holder::sharers(&meta, Some(locker));
            if sharers.is_empty() {
                // No process seen to hold that lock is left. That is only "let go" if the lock
                // itself is free, asked of the lock, or has a newcomer for its holder: processes
                // of the job may still hold it out of our sight (another user's, or, in a PID
                // namespace, once the locker is reaped the kernel shows its PID as 0 and drops
                // the lock from /proc/locks).
                if !self.lock.is_locked() || newcomer_holds(&meta, locker) {
                    return Ok(true);
                }
                // This file's lock only: once the job lets go, the next holder (or the
                // wrapper's own tidying up, whose lock has the same locker) may hold it, or a
                // new file at the path, at once.
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                return self.free_within(Some((meta.dev(), meta.ino())), left);
            }
            let pidfds: Vec<OwnedFd> = sharers
                .iter()
                .filter_map(|&pid| pin(pid).ok().flatten())
                .collect();
            if pidfds.len() < sharers.len() {
                // One exited as we looked, or pidfds are not offered: look again.
                if pidfds.is_empty() && !sharers.iter().any(|&pid| pin(pid).is_err()) {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    return self.wait_until_free(left);
                }
                continue;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let pidfds: Vec<&OwnedFd> = pidfds.iter().collect();
            let exited = lock::any_exited_within(&pidfds, left).map_err(|e| {
                Failure::Refused(format!("cannot wait for the holders to exit: {e}"))
            })?;
            if !exited {
                return Ok(false);
            }
        }
    }

    fn signal_target(&self) -> Result<Target, Failure> {
        let Some(meta) = self.inspect()? else {
            return Ok(Target::Nothing(Status::Free));
        };
        let in_file = self.lock.read_pid();
        // Pin the process the file names before anything is checked, so that the checks and
        // the signal are about one and the same process even if its PID is reused meanwhile.
        let pinned = match in_file.map(pin) {
            Some(Ok(pidfd)) => pidfd,
            // Not running: whoever holds the lock now, if anyone, is not the file's PID.
            Some(Err(_)) if !self.lock.is_locked() => {
                return Ok(Target::Nothing(self.stale_or_free(&meta)));
            }
            Some(Err(_)) => {
                // CMD has exited, and processes of the job it led (its process group) may hold
                // the lock it passed on to them: only that group can be signalled.
                let sharers = holder::sharers(&meta, None);
                if let Some(pid) = in_file
                    && let Some(&member) = sharers
                        .iter()
                        .find(|&&sharer| holder::process_group(sharer) == Some(pid))
                {
                    return Ok(Target::Confirmed(Confirmed {
                        pid,
                        process: ProcessInfo::read(member),
                        pidfd: None,
                        locker: holder::locker(&meta, None),
                        leader_gone: true,
                    }));
                }
                // A `pidlock run` wrapper that died before it named CMD in the file: its CMD
                // holds the lock the wrapper took.
                if let Some(pid) = in_file
                    && let Some(confirmed) = command_of_dead_locker(pid, &meta)
                {
                    return Ok(Target::Confirmed(confirmed));
                }
                return Ok(Target::Unconfirmed {
                    pid: in_file,
                    why: "that process is not running".to_owned(),
                });
            }
            None => None,
        };
        let Some(locker) = holder::locker(&meta, in_file) else {
            if !self.lock.is_locked() {
                return Ok(Target::Nothing(self.stale_or_free(&meta)));
            }
            return Ok(Target::Unconfirmed {
                pid: in_file,
                why: "the kernel does not show this user who holds it (a holder of another \
                      user, in another PID namespace, or on another machine)"
                    .to_owned(),
            });
        };
        // A holder that wrote no PID (flock(1)) is signalled by the kernel's word alone.
        let (pid, pidfd) = match in_file {
            Some(pid) => (pid, pinned),
            None => match pin(locker) {
                Ok(pidfd) => (locker, pidfd),
                Err(_) if !self.lock.is_locked() => return self.status().map(Target::Nothing),
                Err(_) => {
                    return Ok(Target::Unconfirmed {
                        pid: Some(locker),
                        why: format!(
                            "pid {locker}, which the kernel's lock table names, is no longer \
                             running: it passed the lock on to a child before it died"
                        ),
                    });
                }
            },
        };
        let process = ProcessInfo::read(pid);
        // The process holds the lock through a descriptor of its own: a `pidlock run`'s CMD that
        // inherited it, whatever became of the wrapper that took it (SIGKILLed, say).
        let holds_itself = holder::holds(pid, &meta);
        // `pidlock run` holds the lock in the wrapper and names its command in the file.
        let related =
            holds_itself || pid == locker || process.as_ref().and_then(|p| p.ppid) == Some(locker);
        if !related {
            return Ok(Target::Unconfirmed {
                pid: Some(pid),
                why: format!(
                    "the kernel says pid {locker} holds it, and pid {pid} in the file is neither \
                     that process nor a child of it"
                ),
            });
        }
        if !holds_itself && !holder::holds(locker, &meta) {
            if !self.lock.is_locked() {
                return self.status().map(Target::Nothing);
            }
            return Ok(Target::Unconfirmed {
                pid: Some(pid),
                why: format!(
                    "pid {locker}, which the kernel's lock table names, does not have the file \
                     open (it may have passed the lock on to a child and died, and its number \
                     may have been reused)"
                ),
            });
        }
        // A `pidlock run` that has started CMD but not yet named it in the file (an instant
        // after the start): the signal is for CMD, its only child, as it will be a moment later.
        if pid == locker
            && let Some(command) = process.as_ref().and_then(|p| command_of_run(pid, p))
            && let Ok(command_fd) = pin(command)
        {
            return Ok(Target::Confirmed(Confirmed {
                pid: command,
                process: ProcessInfo::read(command),
                pidfd: command_fd,
                locker: Some(locker),
                leader_gone: false,
            }));
        }
        Ok(Target::Confirmed(Confirmed {
            pid,
            process,
            pidfd,
            locker: Some(locker),
            leader_gone: false,
        }))
    }
}

/// Whether the lock on the file `meta` describes is held by a lock another process than
/// `locker` took, as the kernel names it (its lock table, or the holders' descriptors, where
/// the table speaks of other device numbers: overlayfs): a newcomer that took it once the job
/// let go. A lock whose locker the kernel does not name (0, or nowhere) is not known to be a
/// newcomer's.
fn newcomer_holds(meta: &Metadata, locker: u32) -> bool {
    let other = |now: u32| now != locker && now != 0;
    holder::locker(meta, None).is_some_and(other) || holder::lockers(meta).into_iter().any(other)
}

/// Whether process `pid` (the PID file's) is a holder of the lock: it holds it itself, its
/// parent does (a `pidlock run --no-inherit` wrapper), or a process of the job it leads does
/// (its children, once it has exited). `holders` are the processes seen to hold it; where none
/// can be seen (another user's), the kernel's lock table's `locker` decides as for a parent.
fn names_a_holder(pid: u32, locker: Option<u32>, holders: &[u32]) -> bool {
    let parent = ProcessInfo::read(pid).and_then(|p| p.ppid);
    if holders.is_empty() {
        return locker.is_some_and(|locker| locker == pid || parent == Some(locker));
    }
    holders.contains(&pid)
        || parent.is_some_and(|parent| holders.contains(&parent))
        || holders
            .iter()
            .any(|&holder| holder::process_group(holder) == Some(pid))
}

/// The command of a `pidlock run` wrapper `locker` that died before it named its command in
/// the PID file: of the processes that hold the lock `locker` took, the one whose parent is not
/// one of them (the job's first process; its children hold the lock through it). `None` if
/// there is not exactly one such process, or it exits as it is pinned.
fn command_of_dead_locker(locker: u32, meta: &Metadata) -> Option<Confirmed> {
    let job = holder::sharers(meta, Some(locker));
    let first: Vec<u32> = job
        .iter()
        .copied()
        .filter(|&pid| {
            ProcessInfo::read(pid)
                .and_then(|p| p.ppid)
                .is_none_or(|parent| !job.contains(&parent))
        })
        .collect();
    let [command] = first.as_slice() else {
        return None;
    };
    let pidfd = pin(*command).ok()?;
    // Pinned after it was found: it must still hold the lock, so that the number is its.
    if !holder::holds(*command, meta) {
        return None;
    }
    Some(Confirmed {
        pid: *command,
        process: ProcessInfo::read(*command),
        pidfd,
        locker: Some(locker),
        leader_gone: false,
    })
}

/// The command of the `pidlock run` that is process `pid`: its only child. `None` if `pid` is
/// any other program.
fn command_of_run(pid: u32, info: &ProcessInfo) -> Option<u32> {
    let program = info.argv.first()?;
    let is_run = Path::new(program).file_name() == Some("pidlock".as_ref())
        && info.argv.get(1).map(String::as_str) == Some("run");
    if !is_run {
        return None;
    }
    match holder::children(pid).as_slice() {
        [command] => Some(*command),
        _ => None,
    }
}

/// Waits as long as it takes until the lock at `path` is free at some instant: a shared lock
/// on the file that `path` names goes through only when nobody holds the exclusive one. The
/// kernel wakes the wait at the release, as it does a blocking `acquire`, and the shared lock
/// is dropped at once, which `acquire` rides out. If the holder unlinked the file on release,
/// a new holder may have a new file by now: that one is waited for in turn.
///
/// With `only` (a device and inode), waits for that file's lock alone: a file at the path that
/// is not that one means that one was removed, which only its holder does, as it lets go.
fn wait_free(path: &Path, only: Option<(u64, u64)>) -> Result<(), Failure> {
    loop {
        let file = match open_for_reading(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(inspect_failed(path, source)),
        };
        if let Some(wanted) = only {
            let opened = file
                .metadata()
                .map_err(|source| inspect_failed(path, source))?;
            if (opened.dev(), opened.ino()) != wanted {
                return Ok(());
            }
        }
        loop {
            match file.lock_shared() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(inspect_failed(path, source)),
            }
        }
        let locked = file
            .metadata()
            .map_err(|source| inspect_failed(path, source))?;
        let still_named = match fs::symlink_metadata(path) {
            Ok(now) => (now.dev(), now.ino()) == (locked.dev(), locked.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(inspect_failed(path, source)),
        };
        let _ = file.unlock();
        if still_named || only.is_some() {
            return Ok(());
        }
    }
}

/// Opens `path` to read or to take a shared lock: no symlink followed, no blocking on a FIFO.
fn open_for_reading(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits().cast_signed())
        .open(path)
}

/// The inode change time of `meta`, as wall-clock time.
fn changed_at(meta: &Metadata) -> Option<SystemTime> {
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn inspect_failed(path: &Path, source: io::Error) -> Failure {
    Failure::Inspect {
        path: PathBuf::from(path),
        source,
    }
}
