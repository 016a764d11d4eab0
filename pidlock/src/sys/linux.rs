//! Linux: inotify tells a waiter when the lock file is closed, and `/proc/locks` tells a reader
//! whether someone holds the lock without taking part in it.

use std::fs::{self, File, Metadata};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{major, minor};

use super::backoff::Backoff;

/// How long a waiter sleeps without an event before it tries the lock again anyway. A release is
/// a close of the holder's descriptor, which inotify reports; the re-check only covers holders
/// that unlock without closing (`flock -u`) or live on another machine (NFS).
const SAFETY_RECHECK: Duration = Duration::from_millis(100);

/// Waits until the lock file may have been released: a close of the file, the safety re-check,
/// or the deadline. Falls back to [`Backoff`] when inotify is unavailable (no instances left,
/// `/proc` not mounted).
#[derive(Debug)]
pub(crate) struct ReleaseWatch {
    inotify: Option<OwnedFd>,
    backoff: Backoff,
}

impl ReleaseWatch {
    pub(crate) fn new() -> Self {
        ReleaseWatch {
            inotify: inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok(),
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
        if inotify::add_watch(inotify, link, events).is_err() {
            self.inotify = None;
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

fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

/// Discards queued events; which file was closed does not matter, only that one was.
fn drain(inotify: &OwnedFd) {
    let mut buf = [0_u8; 1024];
    while matches!(rustix::io::read(inotify, &mut buf), Ok(n) if n > 0) {}
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
