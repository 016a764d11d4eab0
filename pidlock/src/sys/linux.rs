//! Linux: inotify tells a waiter when the lock file is closed, `O_TMPFILE` lets a waiter have its
//! successor file ready before the release, and `/proc/locks` tells a reader whether someone holds
//! the lock without taking part in it.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{
    AtFlags, CWD, Mode, OFlags, Timestamps, UTIME_NOW, futimens, linkat, major, minor, openat,
};
use rustix::io::Errno;

use super::backoff::Backoff;
use crate::owner::{PerProcess, Process};

/// How long a waiter first sleeps without an event before it tries the lock again anyway. A
/// release is a close of the holder's descriptor, which inotify reports (pidlockfile's own unlocks
/// announce themselves too, see [`announce_release`]); the re-check only covers what the kernel
/// cannot report: another program that unlocks without closing (`flock -u` on a descriptor it
/// keeps), or a holder on another machine (NFS). Each re-check that finds nothing doubles the
/// next, up to [`SAFETY_RECHECK_MAX`], and an event starts it over.
///
/// Measured for issue 15: a re-check costs the waiter about 50 µs of CPU on the 2-core VM, so
/// a fixed 100 ms made a 5 s timed wait cost 2.5 to 4.5 ms; growing, it costs about 9 wakes
/// (0.5 ms). What it gives up: a foreign unlock-without-close is noticed within a second
/// instead of 100 ms. A cancellable wait (an `async fn`'s helper) still looks every 100 ms (see
/// `lock/wait.rs`).
const SAFETY_RECHECK: Duration = Duration::from_millis(100);

/// The longest the re-check grows to.
const SAFETY_RECHECK_MAX: Duration = Duration::from_secs(1);

/// The one inotify instance of a process, shared by all its waiting threads and open only while
/// one of them waits: inotify instances are a per-user resource (128 by default), and a program
/// that merely holds a lock must not use one up.
///
/// One waiter at a time polls the instance; the others sleep on `woken`. Every event the poller
/// reads bumps `epoch`, and a waiter that sees the epoch move since its last try of the lock
/// tries again at once, so no event is lost between a waiter's try and its sleep.
#[derive(Debug)]
struct Waiting {
    shared: Mutex<Shared>,
    woken: Condvar,
}

#[derive(Debug)]
struct Shared {
    inotify: Option<Arc<OwnedFd>>,
    waiters: usize,
    polling: bool,
    epoch: u64,
    /// Watch descriptors and how many waiters use each: two waiters watching the same inode
    /// get the same one.
    watches: Vec<(i32, usize)>,
}

/// Each process's own: a forked child never polls or closes its parent's instance.
static WAITING: PerProcess<Waiting> = PerProcess::new();

impl Waiting {
    fn new() -> Self {
        Waiting {
            shared: Mutex::new(Shared {
                inotify: None,
                waiters: 0,
                polling: false,
                epoch: 0,
                watches: Vec::new(),
            }),
            woken: Condvar::new(),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits until the lock file may have been released: a close of the file, the safety re-check,
/// or the deadline. Falls back to [`Backoff`] when inotify is unavailable (no instances left,
/// `/proc` not mounted).
///
/// Dropping it leaves the shared instance, and closes the instance if no one else waits, which
/// is slow: `acquire` hands it to the closer thread (see `closer.rs`).
#[derive(Debug)]
pub(crate) struct ReleaseWatch {
    waiting: Arc<Waiting>,
    /// `None`: back off instead.
    inotify: Option<Arc<OwnedFd>>,
    watches: Vec<i32>,
    /// The epoch of the last wake-up this waiter has acted on.
    seen: u64,
    backoff: Backoff,
    /// The next safety re-check's interval (see [`SAFETY_RECHECK`]).
    recheck: Duration,
}

impl ReleaseWatch {
    /// Joins this process's waiters, opening the shared instance if this is the first.
    pub(crate) fn new(me: Process) -> Self {
        let waiting = WAITING.get(me, Waiting::new);
        let mut shared = waiting.shared();
        if shared.inotify.is_none() {
            shared.inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
                .ok()
                .map(Arc::new);
        }
        let inotify = shared.inotify.clone();
        if inotify.is_some() {
            shared.waiters += 1;
        }
        let seen = shared.epoch;
        drop(shared);
        ReleaseWatch {
            waiting,
            inotify,
            watches: Vec::new(),
            seen,
            backoff: Backoff::new(),
            recheck: SAFETY_RECHECK,
        }
    }

    /// Starts watching the inode that `file` has open. The caller must try the lock once more
    /// after this, so that a release between its last try and the watch is not missed.
    pub(crate) fn arm(&mut self, file: &File) {
        let Some(inotify) = &self.inotify else { return };
        // The descriptor's /proc link names the very inode we hold open, even if the path has
        // since been unlinked or replaced, which watching the path itself would not. A close is
        // a release; so is the change of times a release makes (see `announce_release`). The
        // holder's unlink changes the link count, an attribute too, and wakes us once early.
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        let events = WatchFlags::CLOSE_WRITE | WatchFlags::CLOSE_NOWRITE | WatchFlags::ATTRIB;
        let mut shared = self.waiting.shared();
        self.seen = shared.epoch;
        match inotify::add_watch(&**inotify, link, events) {
            Ok(watch) => {
                match shared.watches.iter_mut().find(|(w, _)| *w == watch) {
                    Some((_, users)) => *users += 1,
                    None => shared.watches.push((watch, 1)),
                }
                self.watches.push(watch);
            }
            // Without a watch this waiter would sleep through the release: back off instead.
            Err(_) => {
                drop(shared);
                self.leave();
            }
        }
    }

    /// Blocks until a watched file is closed by anyone, the safety re-check is due, or
    /// `deadline` passes.
    pub(crate) fn wait(&mut self, deadline: Instant) {
        let Some(inotify) = self.inotify.clone() else {
            self.backoff.wait(deadline);
            return;
        };
        let nap = deadline
            .saturating_duration_since(Instant::now())
            .min(self.recheck);
        let mut shared = self.waiting.shared();
        if shared.epoch != self.seen {
            self.seen = shared.epoch;
            return;
        }
        if shared.polling {
            let (shared, _) = self
                .waiting
                .woken
                .wait_timeout(shared, nap)
                .unwrap_or_else(PoisonError::into_inner);
            let woken = shared.epoch != self.seen;
            self.seen = shared.epoch;
            self.recheck = if woken {
                SAFETY_RECHECK
            } else {
                (self.recheck * 2).min(SAFETY_RECHECK_MAX)
            };
            return;
        }
        shared.polling = true;
        drop(shared);
        let mut fds = [PollFd::new(&*inotify, PollFlags::IN)];
        // EINTR and spurious wake-ups are harmless: the caller tries the lock again either way.
        let _ = poll(&mut fds, Some(&timespec(nap)));
        let woken = drain(&inotify);
        let mut shared = self.waiting.shared();
        shared.polling = false;
        if woken {
            shared.epoch += 1;
        }
        self.recheck = if woken {
            SAFETY_RECHECK
        } else {
            (self.recheck * 2).min(SAFETY_RECHECK_MAX)
        };
        self.seen = shared.epoch;
        // Someone else polls next, or everyone tries again.
        self.waiting.woken.notify_all();
    }

    /// Stops using the shared instance: removes this waiter's watches, and closes the instance
    /// if no one else waits.
    fn leave(&mut self) {
        let Some(inotify) = self.inotify.take() else {
            return;
        };
        let mut shared = self.waiting.shared();
        for watch in self.watches.drain(..) {
            if let Some(at) = shared.watches.iter().position(|(w, _)| *w == watch) {
                shared.watches[at].1 -= 1;
                if shared.watches[at].1 == 0 {
                    shared.watches.swap_remove(at);
                    // Fails harmlessly for a watch the kernel already dropped with its inode.
                    let _ = inotify::remove_watch(&*inotify, watch);
                }
            }
        }
        shared.waiters = shared.waiters.saturating_sub(1);
        if shared.waiters == 0 {
            // The last reference: this close waits for an RCU grace period.
            shared.inotify = None;
        }
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        self.leave();
    }
}

fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

/// Discards queued events, and says whether there were any; which file was closed does not
/// matter, only that one was.
fn drain(inotify: &OwnedFd) -> bool {
    let mut buf = [0_u8; 4096];
    let mut any = false;
    while let Ok(n) = rustix::io::read(inotify, &mut buf) {
        if n == 0 {
            break;
        }
        any = true;
    }
    any
}

/// Makes sure timed waiters hear of a release, after the unlock. They sleep until the lock file
/// is closed, but the kernel reports only the last close of a descriptor, and a child forked
/// while the lock was held may still have one. Setting the file's times to now is an event of
/// our own (`IN_ATTRIB`) in one cheap system call, and needs only the write access the holder
/// has.
pub(crate) fn announce_release(file: &File) {
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let _ = futimens(
        file,
        &Timestamps {
            last_access: now,
            last_modification: now,
        },
    );
}

/// What the kernel's lock table says of the file `meta` describes, at `path`: `Some(true)` if
/// it shows an exclusive `flock` on it, `Some(false)` if it shows none and would show one if there
/// were, `None` if it cannot tell (then the caller probes).
///
/// A holder is always worth believing. An absence only counts where the table is complete, read
/// at one instant, and speaks of the same device numbers as `stat`:
/// - the table lists only the locks of processes visible in the PID namespace of `/proc`, so a
///   holder in another container is missing unless we are in the initial namespace;
/// - the kernel renders the table a page or so per `read(2)`, each under the lock-table lock,
///   and picks up the next one by position: a lock taken or dropped between two reads shifts
///   the records, and one can be skipped. Only a table that came in one read is a snapshot;
/// - overlayfs and btrfs report other device numbers from `stat` than the lock table does, and
///   NFS emulates `flock` with POSIX locks; only file systems known to agree are trusted.
pub(crate) fn lock_table(path: &Path, meta: &Metadata) -> Option<bool> {
    let id = (major(meta.dev()), minor(meta.dev()), meta.ino());
    let shows = |table: &str| table.lines().filter_map(parse_lock_line).any(|e| e == id);
    let (table, snapshot) = read_lock_table()?;
    if shows(&table) {
        return Some(true);
    }
    if !(snapshot
        && crate::owner::pid_namespace() == super::INITIAL_PID_NAMESPACE
        && on_local_file_system(path))
    {
        return None;
    }
    // One read that ended early (its next record, a lock with many waiters, did not fit) and a
    // second that found the end because locks went away meanwhile look like one complete read.
    // Fooling two reads in a row that way takes the same race twice: a second look settles it.
    match read_lock_table()? {
        (again, true) if !shows(&again) => Some(false),
        (again, _) if shows(&again) => Some(true),
        _ => None,
    }
}

/// Reads `/proc/locks`, and says whether it is a snapshot: rendered by the kernel at one
/// instant, in one `read(2)`.
///
/// The kernel renders a page per read and stops early when the next record (a lock with its
/// waiters) does not fit; the next read resumes by position. So a first read is a snapshot only
/// if a second read finds nothing more, and the first left room on its page for any record
/// without a long queue of waiters: else it may have stopped at a record that did not fit,
/// after which locks that went away made the second read find the end.
fn read_lock_table() -> Option<(String, bool)> {
    /// Room for the longest record without waiters (one line), with margin.
    const ONE_RECORD: usize = 256;
    let mut file = File::open("/proc/locks").ok()?;
    let mut table = Vec::with_capacity(16 * 1024);
    let mut reads = 0;
    let mut first = 0;
    loop {
        let start = table.len();
        table.resize(start + 16 * 1024, 0);
        let n = file.read(&mut table[start..]).ok()?;
        table.truncate(start + n);
        if n == 0 {
            break;
        }
        if reads == 0 {
            first = n;
        }
        reads += 1;
    }
    let page = rustix::param::page_size();
    let snapshot = reads <= 1 && first + ONE_RECORD < page;
    Some((String::from_utf8(table).ok()?, snapshot))
}

/// Whether `path` is on a local file system whose `stat` device numbers are the lock table's.
fn on_local_file_system(path: &Path) -> bool {
    const EXT: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6;
    const F2FS: i64 = 0xF2F5_2010;
    rustix::fs::statfs(path).is_ok_and(|fs| {
        // `f_type` is signed on some architectures; the magic numbers are not.
        #[allow(clippy::cast_possible_wrap, clippy::useless_conversion)]
        let kind = i64::from(fs.f_type) & 0xFFFF_FFFF;
        [EXT, XFS, TMPFS, RAMFS, F2FS].contains(&kind)
    })
}

/// The (major, minor, inode) of a granted exclusive `flock` that one `/proc/locks` line shows.
fn parse_lock_line(line: &str) -> Option<(u32, u32, u64)> {
    crate::proc_locks::ExclusiveFlock::parse(line).map(|lock| lock.file)
}

/// Makes a waiter's successor file ahead of time: an unnamed file (`O_TMPFILE`) in the lock
/// file's directory, already holding `"<pid>\n"`. When the holder unlinks the lock file and lets
/// go, the waiter links this file into place ([`link_spare`]) and locks it by that name, instead
/// of creating and writing one: creating a file is the slowest step of a handoff, and this way
/// no reader ever sees the new file empty. If the waiter dies first, the kernel frees the file
/// with it.
///
/// `None` where the file system has no `O_TMPFILE` (NFS, old kernels) or anything else fails:
/// the caller then creates the file the ordinary way.
pub(crate) fn prepare_spare(dir: &Path, pid: u32) -> Option<(File, Metadata)> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = openat(CWD, dir, flags, Mode::from_raw_mode(super::PID_FILE_MODE)).ok()?;
    let file = File::from(fd);
    crate::pidfile::write(&file, pid, 0).ok()?;
    let meta = file.metadata().ok()?;
    super::set_pid_file_mode(&file, &meta).ok()?;
    Some((file, meta))
}

/// Gives the spare file the lock file's name. Fails with `AlreadyExists` if another contender
/// created the lock file first; `link(2)` never replaces or follows what is at the target.
pub(crate) fn link_spare(spare: &File, path: &Path) -> std::io::Result<()> {
    // Linking a descriptor directly needs CAP_DAC_READ_SEARCH (or a recent kernel); the /proc
    // link of the descriptor works for everyone and costs one more path walk.
    static DIRECT_WORKS: AtomicBool = AtomicBool::new(true);
    if DIRECT_WORKS.load(Ordering::Relaxed) {
        match linkat(spare, "", CWD, path, AtFlags::EMPTY_PATH) {
            Err(e) if e == Errno::NOENT || e == Errno::PERM || e == Errno::INVAL => {
                DIRECT_WORKS.store(false, Ordering::Relaxed);
            }
            result => return Ok(result?),
        }
    }
    let source = format!("/proc/self/fd/{}", spare.as_raw_fd());
    linkat(CWD, source, CWD, path, AtFlags::SYMLINK_FOLLOW)?;
    Ok(())
}
