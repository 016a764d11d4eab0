//! What the system says about a process that holds (or once held) a lock: its command line and
//! start time from `/proc`, and which process the kernel's lock table names as a file's locker.
//!
//! Everything here is best effort: a process of another user, of another PID namespace, or one
//! that exits while we look, gives `None`, and callers say less rather than fail.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::io::Errno;
#[cfg(target_os = "linux")]
use rustix::process::{Pid, PidfdFlags};

/// A live process, as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// Its arguments; empty for a kernel thread or a zombie.
    pub argv: Vec<String>,
    /// When it started, if `/proc` says.
    pub started: Option<SystemTime>,
    /// Its parent's PID.
    pub ppid: Option<u32>,
}

impl ProcessInfo {
    /// Reads what `/proc/PID` says of a process; `None` if it is not running (as far as this
    /// process can see).
    pub fn read(pid: u32) -> Option<ProcessInfo> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name in parentheses may itself hold spaces and parentheses: the fields
        // that follow start after the last `)`.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
        // Fields 4 (ppid) and 22 (starttime) of proc(5), counted from the state, field 3.
        let ppid = fields.get(1).and_then(|f| f.parse().ok());
        let started = fields
            .get(19)
            .and_then(|f| f.parse::<u64>().ok())
            .and_then(start_time);
        let argv = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|arg| !arg.is_empty())
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(ProcessInfo {
            argv,
            started,
            ppid,
        })
    }

    /// The command line as one string, for messages.
    pub fn command_line(&self) -> String {
        self.argv.join(" ")
    }
}

/// Turns a start time in clock ticks since boot into wall-clock time.
fn start_time(ticks: u64) -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    let since_boot = Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second);
    UNIX_EPOCH.checked_add(Duration::from_secs(boot) + since_boot)
}

/// The process holding the exclusive `flock` on the file `meta` describes, as the kernel tells
/// it: the lock table (`/proc/locks`) first, then the open files of `candidate` (the PID in the
/// file) and of its parent (a `pidlock run` wrapper), where the table cannot be matched.
///
/// Only a positive answer is worth anything: the table lists only processes visible in this
/// PID namespace, is read a page at a time (a record can slip between two reads while locks
/// come and go), and on overlayfs or btrfs speaks of other device numbers than `stat`; another
/// user's open files are hidden from us. Callers that need a holder and find none say they
/// cannot confirm one; they never take the absence for "free" (the runtime's `is_locked`
/// answers that).
pub fn locker(meta: &fs::Metadata, candidate: Option<u32>) -> Option<u32> {
    if let Some(pid) = (0..3).find_map(|_| table_locker(meta)) {
        return Some(pid);
    }
    let candidate = candidate?;
    if holds_through_open_file(candidate, meta) {
        return Some(candidate);
    }
    let parent = ProcessInfo::read(candidate)?.ppid?;
    holds_through_open_file(parent, meta).then_some(parent)
}

/// Whether the process `pid` holds the exclusive `flock` on the file `meta` describes, asked
/// again of the kernel now.
///
/// The lock table's PID alone does not do: it is the PID of whoever took the lock, which may
/// have died since while a child it passed the descriptor to (`flock(1)`'s command) holds on,
/// and the PID may by now belong to an unrelated process.
pub fn holds(pid: u32, meta: &fs::Metadata) -> bool {
    holds_through_open_file(pid, meta)
}

/// The PID the kernel's lock table gives for the exclusive `flock` on the file `meta`
/// describes, if it shows one.
fn table_locker(meta: &fs::Metadata) -> Option<u32> {
    let wanted = (
        rustix::fs::major(meta.dev()),
        rustix::fs::minor(meta.dev()),
        meta.ino(),
    );
    let table = fs::read_to_string("/proc/locks").ok()?;
    table.lines().find_map(|line| {
        let (pid, id) = parse_lock_line(line)?;
        (id == wanted).then_some(pid)
    })
}

/// Whether one of the descriptors of process `pid` is open on the file `meta` describes and
/// holds an exclusive `flock` on it.
fn holds_through_open_file(pid: u32, meta: &fs::Metadata) -> bool {
    !lockers_through_open_files(pid, meta).is_empty()
}

/// The lockers (the PIDs that took them) of the exclusive `flock`s that process `pid` holds on
/// the file `meta` describes, through descriptors of its own. `/proc/PID/fd/N` resolves to the
/// file as `stat` sees it, whatever the file system, and `/proc/PID/fdinfo/N` lists the locks
/// held through it, with the PID that took each: a descriptor inherited from a `pidlock run`
/// or a `flock(1)` shows that process's PID, even once it has died.
fn lockers_through_open_files(pid: u32, meta: &fs::Metadata) -> Vec<u32> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            fs::metadata(fd.path())
                .is_ok_and(|open| (open.dev(), open.ino()) == (meta.dev(), meta.ino()))
        })
        .filter_map(|fd| {
            fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()
        })
        .flat_map(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("lock:"))
                .filter_map(|lock| parse_lock_line(lock.trim_start()).map(|(locker, _)| locker))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The processes that share the exclusive `flock` on the file `meta` describes: those that
/// hold it through a descriptor of their own, as far as this process may look (`None` for
/// `locker` means any locker; `Some` only the lock that process took). For a `pidlock run`,
/// that is the wrapper and every process of its job that still has the inherited descriptor.
pub fn sharers(meta: &fs::Metadata, locker: Option<u32>) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            lockers_through_open_files(pid, meta)
                .iter()
                .any(|&found| locker.is_none_or(|locker| locker == found))
        })
        .collect()
}

/// This process's own process group, if this PID namespace can name it: `None` where the
/// group's leader is outside it (`unshare --pid --fork` leaves the new namespace's first process
/// in its parent's group, which reads as 0 there).
pub fn own_process_group() -> Option<u32> {
    // Not rustix's `getpgrp`, whose `Pid` cannot be 0 (it asserts so).
    // SAFETY: `getpgrp` takes no arguments, cannot fail, and touches no memory of ours.
    let group = unsafe { libc::getpgrp() };
    u32::try_from(group).ok().filter(|&group| group != 0)
}

/// The lockers of the exclusive `flock` on the file `meta` describes, as the descriptors of the
/// processes that hold it show them (as far as this process may look): the PID that took it,
/// or 0 where this PID namespace cannot name that process.
pub fn lockers(meta: &fs::Metadata) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .flat_map(|pid| lockers_through_open_files(pid, meta))
        .collect()
}

/// The process group of process `pid`, if `/proc` shows it.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 5 (pgrp) of proc(5), counted from the state, field 3.
    after_name.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// The locker's PID and the (major, minor, inode) of a granted exclusive `flock` that one
/// `/proc/locks` (or fdinfo `lock:`) line shows, through the workspace's one parser of it.
fn parse_lock_line(line: &str) -> Option<(u32, (u32, u32, u64))> {
    pidlockfile::proc_locks::ExclusiveFlock::parse(line).map(|lock| (lock.pid, lock.file))
}

/// The process `pid` itself (a pidfd), where the kernel offers that: `Ok(None)` where it does
/// not (before Linux 5.3, other systems), `Err` if there is no such process.
#[cfg(target_os = "linux")]
pub fn pin(pid: u32) -> Result<Option<OwnedFd>, Errno> {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Err(Errno::SRCH);
    };
    match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::SRCH) => Err(Errno::SRCH),
        // The checks that follow still hold, for a shorter race.
        Err(_) => Ok(None),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn pin(_pid: u32) -> Result<Option<OwnedFd>, Errno> {
    Ok(None)
}

/// The processes whose parent is `pid`, as `/proc` shows them.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| ProcessInfo::read(candidate).and_then(|p| p.ppid) == Some(pid))
        .collect()
}

/// This machine's host name.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// A short human duration: `850ms`, `42s`, `3m05s`, `2h07m`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 && d.subsec_millis() > 0 {
        format!("{}ms", d.subsec_millis())
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// A local time, as `10:31:07` if it is today and `2026-11-28 10:31:07` otherwise.
pub fn format_time(at: SystemTime) -> String {
    let (Some(then), Some(now)) = (local_time(at), local_time(SystemTime::now())) else {
        return "an unknown time".to_owned();
    };
    let clock = format!("{:02}:{:02}:{:02}", then.tm_hour, then.tm_min, then.tm_sec);
    if (then.tm_year, then.tm_yday) == (now.tm_year, now.tm_yday) {
        clock
    } else {
        format!(
            "{}-{:02}-{:02} {clock}",
            then.tm_year + 1900,
            then.tm_mon + 1,
            then.tm_mday
        )
    }
}

/// A local time as ISO 8601 with its UTC offset, for JSON: `2026-11-29T10:31:07+01:00`.
pub fn format_iso(at: SystemTime) -> Option<String> {
    let tm = local_time(at)?;
    let offset = tm.tm_gmtoff / 60;
    let sign = if offset < 0 { '-' } else { '+' };
    Some(format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        offset.abs() / 60,
        offset.abs() % 60
    ))
}

/// Seconds since the epoch, for JSON.
pub fn epoch_seconds(at: SystemTime) -> Option<u64> {
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Breaks `at` down in the local time zone (`TZ`, `/etc/localtime`), as the C library does for
/// every other tool on the system.
fn local_time(at: SystemTime) -> Option<libc::tm> {
    let secs: libc::time_t = at
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs()
        .try_into()
        .ok()?;
    // SAFETY: `tm` is plain old data for which all-zero bytes are a valid value (a null
    // `tm_zone` pointer included), and `localtime_r` fills it in.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, properly aligned locals; `localtime_r` is the
    // thread-safe variant and keeps neither pointer.
    let filled = unsafe { libc::localtime_r(&secs, &mut tm) };
    (!filled.is_null()).then_some(tm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = ProcessInfo::read(std::process::id()).expect("/proc shows this process");
        assert!(!me.argv.is_empty());
        assert_eq!(me.ppid, Some(std::os::unix::process::parent_id()));
        let started = me.started.expect("a start time");
        assert!(started <= SystemTime::now());
        assert!(
            SystemTime::now()
                .duration_since(started)
                .expect("in the past")
                < Duration::from_secs(3600)
        );
    }

    #[test]
    fn finds_a_lock_through_the_holders_open_file() {
        let path = std::env::temp_dir().join(format!("pidlock-cli-holder-{}", std::process::id()));
        let file = fs::File::create(&path).expect("create");
        let meta = fs::metadata(&path).expect("stat");
        let me = std::process::id();
        assert!(!holds_through_open_file(me, &meta));
        file.lock().expect("flock");
        assert!(holds_through_open_file(me, &meta));
        assert!(holds(me, &meta));
        assert_eq!(locker(&meta, Some(me)), Some(me));
        file.unlock().expect("unlock");
        assert!(!holds_through_open_file(me, &meta));
        assert_eq!(locker(&meta, Some(me)), None);
        file.lock_shared().expect("shared flock");
        assert!(
            !holds_through_open_file(me, &meta),
            "a shared lock is no holder"
        );
        drop(file);
        fs::remove_file(&path).expect("remove");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(7620)), "2h07m");
    }
}
