//! Waiting for a holder: with no limit, with a timeout, and with readers looking on.
// it reads /proc to see a waiter asleep: Unix only; `tests/windows.rs` covers Windows.
#![cfg(unix)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, Scratch, now_ns};
use pidlockfile::{LockError, PidLockFile};

#[test]
fn acquire_none_waits_until_the_holder_exits() {
    let scratch = Scratch::new("wait-none");
    let path = scratch.path("app.pid");
    for ending in ["release", "exit", "kill"] {
        let mut holder = Proc::holder(&path);
        let mut waiter = Proc::helper(&["try", path.to_str().unwrap(), "none"]);
        common::wait_until_sleeping(waiter.id());
        let released = now_ns();
        match ending {
            "kill" => holder.kill(),
            command => holder.send(command),
        }
        let report = waiter.next_report();
        let fields: Vec<&str> = report.split(' ').collect();
        assert_eq!(fields[0], "ok", "{ending}: {report}");
        let admitted: u128 = fields[1].parse().unwrap();
        assert!(
            admitted > released,
            "{ending}: admitted before the holder let go"
        );
        assert_eq!(waiter.wait().code(), Some(0));
    }
}

#[test]
fn acquire_with_a_timeout_is_admitted_when_the_holder_exits_in_time() {
    let scratch = Scratch::new("wait-timeout");
    let path = scratch.path("app.pid");
    for ending in ["release", "kill"] {
        let mut holder = Proc::holder(&path);
        let mut waiter = Proc::helper(&["try", path.to_str().unwrap(), "60000"]);
        common::wait_until_sleeping(waiter.id());
        match ending {
            "kill" => holder.kill(),
            command => holder.send(command),
        }
        let report = waiter.next_report();
        assert!(report.starts_with("ok "), "{ending}: {report}");
    }
}

#[test]
fn a_timed_out_waiter_reports_the_holder_and_leaves_its_file_alone() {
    let scratch = Scratch::new("timeout");
    let path = scratch.path("app.pid");
    let holder = Proc::holder(&path);
    let mut waiter = Proc::helper(&["try", path.to_str().unwrap(), "200"]);
    let report = waiter.next_report();
    assert!(
        report.starts_with(&format!("timeout {} ", holder.id())),
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", holder.id())
    );
}

#[test]
fn a_zero_timeout_never_waits() {
    let scratch = Scratch::new("zero");
    let path = scratch.path("app.pid");
    let _holder = Proc::holder(&path);
    let started = Instant::now();
    let err = PidLockFile::new(&path)
        .acquire(Some(Duration::ZERO))
        .unwrap_err();
    assert!(matches!(err, LockError::AlreadyLocked { .. }));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_huge_timeout_is_a_wait_without_limit_not_an_overflow() {
    let scratch = Scratch::new("huge");
    let path = scratch.path("app.pid");
    let mut lock = PidLockFile::new(&path);
    lock.acquire(Some(Duration::MAX)).unwrap();
    lock.release().unwrap();
}

/// Readers hammering `is_locked`, `i_am_locking` and `read_pid` must never make an uncontended
/// zero-timeout `acquire` fail, nor a held lock look free.
#[test]
fn looking_does_not_disturb_acquire() {
    let scratch = Scratch::new("looking");
    let path = scratch.path("app.pid");
    let stop = Arc::new(AtomicBool::new(false));
    let lookers: Vec<_> = (0..2)
        .map(|_| {
            let (path, stop) = (path.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let lock = PidLockFile::new(&path);
                let mut looks = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = (lock.is_locked(), lock.i_am_locking(), lock.read_pid());
                    looks += 1;
                }
                looks
            })
        })
        .collect();

    let mut lock = PidLockFile::new(&path);
    for round in 0..2000 {
        if let Err(e) = lock.acquire(Some(Duration::ZERO)) {
            stop.store(true, Ordering::Relaxed);
            panic!("round {round}: a reader made acquire fail: {e}");
        }
        assert!(PidLockFile::new(&path).is_locked());
        lock.release().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let looks: u64 = lookers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(looks > 0);
}

/// The same from another process, against the portable probe too: a stale file makes
/// `is_locked` fall back to its shared-lock probe, which `acquire` must ride out.
#[test]
fn probing_a_stale_file_does_not_disturb_acquire_in_another_process() {
    let scratch = Scratch::new("looking-stale");
    let path = scratch.path("app.pid");
    let stop = Arc::new(AtomicBool::new(false));
    let looker = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = PidLockFile::new(&path).is_locked();
            }
        })
    };
    for _ in 0..50 {
        std::fs::write(&path, "999999\n").unwrap();
        let mut other = Proc::helper(&["try", path.to_str().unwrap(), "0"]);
        let report = other.next_report();
        assert!(report.starts_with("ok "), "{report}");
        other.wait();
    }
    stop.store(true, Ordering::Relaxed);
    looker.join().unwrap();
}

/// After a handoff (on Linux through the waiter's ready-made successor file), the lock file is
/// an ordinary PID file naming the new holder.
#[test]
fn the_file_after_a_handoff_is_an_ordinary_pid_file() {
    use std::os::unix::fs::MetadataExt;
    let scratch = Scratch::new("handoff-file");
    let path = scratch.path("app.pid");
    for timeout in ["none", "60000"] {
        let mut holder = Proc::holder(&path);
        let mut waiter = Proc::helper(&["hold", path.to_str().unwrap(), timeout]);
        common::wait_until_sleeping(waiter.id());
        holder.send("release");
        let report = waiter.next_report();
        assert!(
            report.starts_with(&format!("locked {} ", waiter.id())),
            "{report}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", waiter.id())
        );
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.nlink(), 1);
        assert_eq!(meta.mode() & 0o022, 0, "mode {:o}", meta.mode());
        let lock = PidLockFile::new(&path);
        assert!(lock.is_locked());
        assert_eq!(lock.read_pid(), Some(waiter.id()));
        // Nothing else was left in the directory: no temporary names.
        let entries = std::fs::read_dir(scratch.dir()).unwrap().count();
        assert_eq!(entries, 1);
        waiter.send("release");
        assert!(waiter.next_report().starts_with("released "));
    }
}
