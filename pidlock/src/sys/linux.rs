//! Linux: inotify tells a waiter when the lock file is closed, `O_TMPFILE` lets a waiter have its
//! successor file ready before the release, and `/proc/locks` tells a reader whether someone holds
//! the lock without taking part in it.

use std::fs::{self, File, Metadata};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, linkat, major, minor, openat};
use rustix::io::Errno;

use super::backoff::Backoff;

/// How long a waiter sleeps without an event before it tries the lock again anyway. A release is
/// a close of the holder's descriptor, which inotify reports; the re-check only covers holders
/// that unlock without closing (`flock -u`) or live on another machine (NFS).
const SAFETY_RECHECK: Duration = Duration::from_millis(100);

/// Idle inotify instances, with the process that made them. Closing an instance that has held a
/// watch waits for an RCU grace period in the kernel (often milliseconds), which would delay the
/// return of every `acquire` that had to wait; so instances are kept for the next waiter.
static IDLE: Mutex<Vec<(u32, OwnedFd)>> = Mutex::new(Vec::new());

/// Idle instances kept at most: one per thread that waits at the same time, in most programs.
const MAX_IDLE: usize = 4;

/// Waits until the lock file may have been released: a close of the file, the safety re-check,
/// or the deadline. Falls back to [`Backoff`] when inotify is unavailable (no instances left,
/// `/proc` not mounted).
#[derive(Debug)]
pub(crate) struct ReleaseWatch {
    inotify: Option<OwnedFd>,
    watches: Vec<i32>,
    backoff: Backoff,
}

impl ReleaseWatch {
    pub(crate) fn new() -> Self {
        let inotify = take_idle()
            .or_else(|| inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok());
        ReleaseWatch {
            inotify,
            watches: Vec::new(),
            backoff: Backoff::new(),
        }
    }

    /// Starts watching the inode that `file` has open. The caller must try the lock once more
    /// after this, so that a release between its last try and the watch is not missed.
    pub(crate) fn arm(&mut self, file: &File) {
        let Some(inotify) = &self.inotify else { return };
        // The descriptor's /proc link names the very inode we hold open, even if the path has
        // since been unlinked or replaced, which watching the path itself would not.
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        let events = WatchFlags::CLOSE_WRITE | WatchFlags::CLOSE_NOWRITE;
        match inotify::add_watch(inotify, link, events) {
            Ok(watch) => self.watches.push(watch),
            Err(_) => self.inotify = None,
        }
    }

    /// Blocks until a watched file is closed by anyone, the safety re-check is due, or
    /// `deadline` passes.
    pub(crate) fn wait(&mut self, deadline: Instant) {
        let Some(inotify) = &self.inotify else {
            self.backoff.wait(deadline);
            return;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = timespec(left.min(SAFETY_RECHECK));
        let mut fds = [PollFd::new(inotify, PollFlags::IN)];
        // EINTR and spurious wake-ups are harmless: the caller tries the lock again either way.
        let _ = poll(&mut fds, Some(&timeout));
        drain(inotify);
    }
}

impl Drop for ReleaseWatch {
    /// Returns the instance, emptied, to the idle list.
    fn drop(&mut self) {
        let Some(inotify) = self.inotify.take() else {
            return;
        };
        for watch in self.watches.drain(..) {
            // Fails harmlessly for a watch the kernel already dropped with its inode.
            let _ = inotify::remove_watch(&inotify, watch);
        }
        drain(&inotify);
        let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((process::id(), inotify));
        }
    }
}

/// An idle instance made by this process. One inherited across `fork` is shared with the
/// parent, whose events it would steal; it is closed instead (cheaply: the parent still has it).
fn take_idle() -> Option<OwnedFd> {
    let me = process::id();
    let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
    while let Some((owner, inotify)) = idle.pop() {
        if owner == me {
            return Some(inotify);
        }
    }
    None
}

fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

/// Discards queued events; which file was closed does not matter, only that one was. One read
/// takes what a handoff queues; anything left over only causes a harmless early wake-up.
fn drain(inotify: &OwnedFd) {
    let mut buf = [0_u8; 4096];
    let _ = rustix::io::read(inotify, &mut buf);
}

/// Whether the kernel's lock table shows an exclusive `flock` on the file `meta` describes.
///
/// `true` is reliable. `false` is not a proof that the file is unlocked: on overlay file systems
/// `stat` may report another device than the lock table, and NFS emulates `flock` with POSIX
/// locks; the caller then falls back to its probe.
pub(crate) fn kernel_reports_holder(meta: &Metadata) -> bool {
    let Ok(table) = fs::read_to_string("/proc/locks") else {
        return false;
    };
    let (dev_major, dev_minor, ino) = (major(meta.dev()), minor(meta.dev()), meta.ino());
    table
        .lines()
        .filter_map(parse_lock_line)
        .any(|entry| entry == (dev_major, dev_minor, ino))
}

/// Parses one `/proc/locks` line, such as `1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF`,
/// into the (major, minor, inode) of a granted exclusive `flock`; other lines give `None`.
/// Waiters are listed with a `->` marker and are skipped.
fn parse_lock_line(line: &str) -> Option<(u32, u32, u64)> {
    let mut fields = line.split_ascii_whitespace().skip(1);
    if fields.next()? != "FLOCK" {
        return None;
    }
    let _mode = fields.next()?;
    if fields.next()? != "WRITE" {
        return None;
    }
    let _pid = fields.next()?;
    let mut id = fields.next()?.split(':');
    let dev_major = u32::from_str_radix(id.next()?, 16).ok()?;
    let dev_minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let ino = id.next()?.parse().ok()?;
    Some((dev_major, dev_minor, ino))
}

/// Makes a waiter's successor file ahead of time: an unnamed file (`O_TMPFILE`) in the lock
/// file's directory, already locked and already holding `"<pid>\n"`. When the holder unlinks the
/// lock file and lets go, the waiter links this file into place ([`link_spare`]) instead of
/// creating and writing one: creating a file is the slowest step of a handoff, and this way no
/// reader ever sees the new file empty. Nobody else can open an unnamed file, so the lock is ours
/// at once; if the waiter dies, the kernel frees the file with it.
///
/// `None` where the file system has no `O_TMPFILE` (NFS, old kernels) or anything else fails:
/// the caller then creates the file the ordinary way.
pub(crate) fn prepare_spare(dir: &std::path::Path, pid: u32) -> Option<(File, Metadata)> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = openat(CWD, dir, flags, Mode::from_raw_mode(0o644)).ok()?;
    let file = File::from(fd);
    file.try_lock().ok()?;
    crate::pidfile::write(&file, pid, 0).ok()?;
    let meta = file.metadata().ok()?;
    Some((file, meta))
}

/// Gives the spare file the lock file's name. Fails with `AlreadyExists` if another contender
/// created the lock file first; `link(2)` never replaces or follows what is at the target.
pub(crate) fn link_spare(spare: &File, path: &std::path::Path) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::parse_lock_line;

    #[test]
    fn reads_granted_exclusive_flocks_only() {
        assert_eq!(
            parse_lock_line("1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010721 0 EOF"),
            Some((0xfe, 0, 10_010_721))
        );
        assert_eq!(
            parse_lock_line("12: FLOCK  ADVISORY  WRITE 7 103:0a:42 0 EOF"),
            Some((0x103, 0x0a, 42))
        );
        // A waiter blocked behind the holder, a shared lock, a POSIX lock, and garbage.
        assert_eq!(
            parse_lock_line("1: -> FLOCK  ADVISORY  WRITE 4243 fe:00:10010721 0 EOF"),
            None
        );
        assert_eq!(
            parse_lock_line("2: FLOCK  ADVISORY  READ 4244 fe:00:10010721 0 EOF"),
            None
        );
        assert_eq!(
            parse_lock_line("3: POSIX  ADVISORY  WRITE 4245 fe:00:10010721 0 EOF"),
            None
        );
        assert_eq!(
            parse_lock_line("4: FLOCK ADVISORY WRITE 1 zz:00:1 0 EOF"),
            None
        );
        assert_eq!(parse_lock_line(""), None);
    }
}
