//! What differs on Windows, across processes: the lock is `LockFileEx` on one far byte, a dead
//! holder's lock goes with its process, the release deletes the file while other handles may
//! still have it open, and the default path is in the per-user temp dir. `scripts/test-windows.sh`
//! runs these under Wine; on Unix this file is empty.
#![cfg(windows)]

mod common;

use std::fs::File;
use std::os::windows::io::AsRawHandle;
use std::process;
use std::time::{Duration, Instant};

use common::{Proc, Scratch};
use pidlockfile::{LockError, PidLockFile};

#[test]
fn a_killed_holder_is_taken_over_at_once() {
    let scratch = Scratch::new("win-killed");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let dead = holder.id();
    holder.kill();

    let mut lock = PidLockFile::new(&path);
    assert_eq!(
        lock.read_pid(),
        Some(dead),
        "the dead holder's file stays behind"
    );
    assert!(!lock.is_locked(), "a dead holder's file is not a lock");
    lock.acquire(Some(Duration::ZERO)).unwrap();
    assert_eq!(lock.read_pid(), Some(process::id()));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", process::id()),
        "a longer stale PID must not leave its tail behind"
    );
}

#[test]
fn a_timed_wait_ends_at_its_deadline_naming_the_holder() {
    let scratch = Scratch::new("win-timeout");
    let path = scratch.path("app.pid");
    let holder = Proc::holder(&path);
    let timeout = Duration::from_millis(400);

    let started = Instant::now();
    let err = PidLockFile::new(&path).acquire(Some(timeout)).unwrap_err();
    let waited = started.elapsed();

    assert!(
        matches!(err, LockError::LockTimeout { pid: Some(pid), .. } if pid == holder.id()),
        "{err:?}"
    );
    assert!(waited >= timeout, "gave up after {waited:?}");
    assert!(
        waited < timeout + Duration::from_secs(5),
        "overslept: {waited:?}"
    );
    let zero = PidLockFile::new(&path)
        .acquire(Some(Duration::ZERO))
        .unwrap_err();
    assert!(
        matches!(zero, LockError::AlreadyLocked { pid: Some(pid), .. } if pid == holder.id()),
        "{zero:?}"
    );
}

#[test]
fn waiters_with_and_without_a_deadline_get_in_at_the_release() {
    let scratch = Scratch::new("win-waiters");
    let path = scratch.path("app.pid");
    let path_text = path.to_str().unwrap();
    let mut holder = Proc::holder(&path);

    let mut untimed = Proc::helper(&["hold", path_text, "none"]);
    assert!(
        untimed
            .lines_mut()
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "a waiter without a deadline got in while the lock was held"
    );
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
    let got = untimed.next_report();
    assert!(
        got.starts_with(&format!("locked {} ", untimed.id())),
        "{got}"
    );

    let mut timed = Proc::helper(&["try", path_text, "60000"]);
    assert!(
        timed
            .lines_mut()
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "a waiter with a deadline got in while the lock was held"
    );
    untimed.send("release");
    assert!(untimed.next_report().starts_with("released"));
    let got = timed.next_report();
    assert!(got.starts_with("ok "), "{got}");
    assert_eq!(timed.wait().code(), Some(0));
}

#[test]
fn the_pid_stays_readable_while_the_lock_is_held() {
    // Wine does not enforce byte-range locks on reads, so under Wine this passes whatever range
    // is locked; on Windows it fails if the lock covers the PID's bytes.
    let scratch = Scratch::new("win-readable");
    let path = scratch.path("app.pid");
    let holder = Proc::holder(&path);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", holder.id())
    );
    let mut status = Proc::helper(&["status", path.to_str().unwrap()]);
    assert_eq!(
        status.next_report(),
        format!("status true false {}", holder.id())
    );
}

/// Tries an exclusive `LockFileEx` on `len` bytes at `offset` of `file`, and lets go at once.
/// Whether it was granted.
#[allow(unsafe_code)]
fn range_is_free(file: &File, offset: u64, len: u32) -> bool {
    use windows_sys::Win32::Storage::FileSystem::{
        LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, UnlockFileEx,
    };
    use windows_sys::Win32::System::IO::OVERLAPPED;
    let mut at = OVERLAPPED::default();
    at.Anonymous.Anonymous.Offset = offset as u32;
    at.Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
    let handle = file.as_raw_handle();
    let flags = LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY;
    // SAFETY: `file` is open for reading (std's handles are synchronous) and `at` lives across
    // both calls, each of which completes before it returns.
    unsafe {
        if LockFileEx(handle, flags, 0, len, 0, &raw mut at) == 0 {
            return false;
        }
        UnlockFileEx(handle, 0, len, 0, &raw mut at);
    }
    true
}

#[test]
fn the_lock_is_one_byte_far_beyond_the_pid() {
    // Windows locks are mandatory: a lock over the PID's bytes would stop every reader. Wine
    // does not enforce that on reads, but it does enforce locks against locks, which shows
    // where the holder's lock is.
    let scratch = Scratch::new("win-range");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let file = File::open(&path).unwrap();
    assert!(
        range_is_free(&file, 0, 4096),
        "the holder's lock covers the PID"
    );
    assert!(
        !range_is_free(&file, 1 << 62, 1),
        "the lock byte is not held"
    );
    assert!(range_is_free(&file, (1 << 62) + 1, 4096));
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
    assert!(
        range_is_free(&file, 1 << 62, 1),
        "the release left the lock"
    );
}

#[test]
fn a_hard_linked_pid_file_is_refused_and_left_alone() {
    let scratch = Scratch::new("win-hardlink");
    let path = scratch.path("app.pid");
    let other = scratch.path("someone-elses-file");
    std::fs::write(&other, "precious\n").unwrap();
    std::fs::hard_link(&other, &path).unwrap();
    let err = PidLockFile::new(&path)
        .acquire(Some(Duration::ZERO))
        .unwrap_err();
    let LockError::LockFailed { path: p, .. } = &err else {
        panic!("expected LockFailed, got {err:?}")
    };
    assert_eq!(p, &path);
    assert!(err.to_string().contains("2 hard links"), "{err}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "precious\n");
}

#[test]
fn another_programs_whole_file_lock_excludes_the_holder() {
    let scratch = Scratch::new("win-foreign");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let file = File::open(&path).unwrap();
    assert!(
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        "std's whole-file lock got in beside the holder"
    );
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
}

#[test]
fn a_reader_that_keeps_the_file_open_blocks_neither_the_release_nor_the_next_holder() {
    let scratch = Scratch::new("win-reader");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    // std opens with every share mode, as pidlockfile's own readers do.
    let reader = File::open(&path).unwrap();

    holder.send("release");
    let released = holder.next_report();
    assert!(released.starts_with("released "), "{released}");
    assert!(!PidLockFile::new(&path).is_locked());

    // With POSIX deletes the name is gone already; with the classic delete the file waits for
    // the reader's handle, and an acquirer waits too. Neither may fail or be refused for good.
    let mut zero = Proc::helper(&["try", path.to_str().unwrap(), "0"]);
    let zero_report = zero.next_report();
    assert!(
        zero_report.starts_with("ok ") || zero_report.starts_with("already-locked "),
        "{zero_report}"
    );
    drop(zero);
    let mut next = Proc::helper(&["hold", path.to_str().unwrap(), "60000"]);
    drop(reader);
    let got = next.next_report();
    assert!(got.starts_with(&format!("locked {} ", next.id())), "{got}");
    next.send("release");
    assert!(next.next_report().starts_with("released"));
    assert!(!path.exists());
}

#[test]
fn the_default_path_is_in_the_users_temp_dir() {
    let program = format!("pidlock-win-default-{}", process::id());
    let path = pidlockfile::default_path(&program);
    assert_eq!(path.parent(), Some(std::env::temp_dir().as_path()));
    assert_eq!(path.file_name().unwrap(), format!("{program}.pid").as_str());

    let mut first = Proc::helper(&["default", &program]);
    assert_eq!(first.next_report(), format!("ok {}", path.display()));
    let mut second = Proc::helper(&["default", &program]);
    assert_eq!(
        second.next_report(),
        format!("already-locked {}", first.id())
    );
    assert_eq!(second.wait().code(), Some(1));
    first.send("release");
    assert!(first.next_report().starts_with("released"));
    assert!(!path.exists());
}
