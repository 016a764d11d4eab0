//! Readers' probes on a loaded machine: alone in its test binary, because it loads the machine.
//!
//! Where readers take a shared lock for an instant to learn whether a lock is held (the
//! portable build, containers, NFS: see `probe.rs`), 8 readers in tight loops on a loaded
//! machine once made a zero-timeout `acquire` of a free lock fail (issue 15: 7 runs of 40 with 6
//! CPU hogs): a reader is now and then preempted while it holds its probe's lock, and with
//! enough of them one always is. Readers now step aside when an acquirer asks
//! (`step_aside.rs`). CI runs this file in the portable build, where the probes are taken; the
//! native build on Linux reads the lock table instead, and must pass all the same.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, Scratch};
use pidlockfile::PidLockFile;
use rustix::process::{Pid, Signal, kill_process};

/// Busy-looping processes, three per core, each in a session of its own (so that the scheduler
/// weighs them against the test's whole session, as it weighs other programs), killed when
/// dropped, and ending by themselves once the test is gone (even killed).
fn hogs() -> Vec<Proc> {
    let cores = thread::available_parallelism().map_or(2, usize::from);
    (0..3 * cores)
        .map(|_| {
            let mut hog = Command::new("setsid");
            hog.args(["sh", "-c", "echo spinning; while kill -0 $PPID; do :; done"]);
            let mut hog = Proc::spawn(hog);
            assert_eq!(hog.next_report(), "spinning");
            hog
        })
        .collect()
}

/// 8 `probe-loop` helpers calling `is_locked()` on `path` in tight loops.
fn readers(path: &Path) -> Vec<Proc> {
    (0..8)
        .map(|_| {
            let mut reader = Proc::helper(&["probe-loop", path.to_str().unwrap()]);
            assert_eq!(reader.next_report(), "probing");
            reader
        })
        .collect()
}

/// Takes the free lock at `path` `rounds` times, alternating a zero timeout and 20 ms, and
/// leaves a stale file behind after each, for the readers to probe. `before` runs before each
/// round.
fn take_free_lock(path: &Path, rounds: u32, mut before: impl FnMut()) {
    for round in 0..rounds {
        before();
        let timeout = Duration::from_millis(if round % 2 == 0 { 0 } else { 20 });
        let mut lock = PidLockFile::new(path);
        if let Err(e) = lock.acquire(Some(timeout)) {
            panic!("round {round}: a free lock was not taken: {e}");
        }
        assert!(lock.is_locked());
        drop(lock);
        fs::write(path, "999999\n").unwrap();
    }
}

#[test]
fn busy_readers_beside_cpu_hogs_never_make_a_free_lock_look_held() {
    let scratch = Scratch::new("probes-hogs");
    let path = scratch.path("app.pid");
    fs::write(&path, "999999\n").unwrap();
    let _readers = readers(&path);
    let _hogs = hogs();
    take_free_lock(&path, 1000, || {});
}

/// The PIDs among `readers` that hold a shared `flock` on inode `ino`, read from the kernel's
/// lock table (which lists every lock, whatever build reads it).
fn shared_holders(ino: u64, readers: &BTreeSet<i32>) -> Vec<i32> {
    let Ok(table) = fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    table
        .lines()
        .filter(|line| !line.contains("->"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (kind, mode, pid, id) = (
                fields.get(1)?,
                fields.get(3)?,
                fields.get(4)?,
                fields.get(5)?,
            );
            let pid: i32 = pid.parse().ok()?;
            let on_ino = id.rsplit(':').next()?.parse::<u64>().ok()? == ino;
            (*kind == "FLOCK" && *mode == "READ" && on_ino && readers.contains(&pid)).then_some(pid)
        })
        .collect()
}

/// Sends `sig` to process `pid`, if it is still there.
fn signal(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, sig);
    }
}

/// The worst a scheduler can do to probes, done on purpose: whenever a reader holds its probe's
/// shared lock, it is stopped there for up to 50 ms (as a preempted reader waits to run again),
/// and the next reader found holding one is stopped before the last is let go, so that a
/// stopped reader's lock is in the way almost all the time. Each round starts while a reader is
/// stopped holding its lock. Readers that kept probing while an acquirer waited made it fail in
/// most runs; readers that step aside leave it a gap as soon as the stopped one runs again.
#[test]
fn readers_preempted_while_they_hold_their_probe_never_make_a_free_lock_look_held() {
    const ROUNDS: u32 = 300;
    let scratch = Scratch::new("probes-preempted");
    let path = scratch.path("app.pid");
    fs::write(&path, "999999\n").unwrap();
    let readers = readers(&path);
    let pids: BTreeSet<i32> = readers.iter().map(|r| r.id().cast_signed()).collect();
    let done = Arc::new(AtomicBool::new(false));
    // The reader stopped now (0: none).
    let stopped_now = Arc::new(AtomicI32::new(0));
    let stopper = {
        let (done, path, stopped_now) = (Arc::clone(&done), path.clone(), Arc::clone(&stopped_now));
        thread::spawn(move || {
            let mut stopped: Option<(i32, Instant)> = None;
            // Let go, and not to be stopped again until they have let go of their lock: a
            // preempted reader runs again before it is preempted again.
            let mut resumed: BTreeSet<i32> = BTreeSet::new();
            while !done.load(Ordering::Relaxed) {
                let ino = fs::metadata(&path).map_or(0, |meta| meta.ino());
                let holding = shared_holders(ino, &pids);
                resumed.retain(|pid| holding.contains(pid));
                let next = holding
                    .into_iter()
                    .find(|pid| !resumed.contains(pid) && stopped.is_none_or(|(s, _)| s != *pid));
                if let Some(next) = next {
                    signal(next, Signal::STOP);
                    stopped_now.store(next, Ordering::Release);
                    if let Some((last, _)) = stopped.replace((next, Instant::now())) {
                        signal(last, Signal::CONT);
                        resumed.insert(last);
                    }
                } else if let Some((last, since)) = stopped
                    && since.elapsed() > Duration::from_millis(50)
                {
                    stopped_now.store(0, Ordering::Release);
                    signal(last, Signal::CONT);
                    resumed.insert(last);
                    stopped = None;
                }
            }
            if let Some((last, _)) = stopped {
                signal(last, Signal::CONT);
            }
        })
    };
    // Where readers probe (the portable build), each round waits for a reader stopped with its
    // lock; elsewhere none ever is, and the rounds just run.
    let mut started_stopped = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        take_free_lock(&path, ROUNDS, || {
            if !cfg!(pidlock_portable) {
                return;
            }
            let give_up = Instant::now() + Duration::from_millis(500);
            while stopped_now.load(Ordering::Acquire) == 0 && Instant::now() < give_up {
                thread::sleep(Duration::from_micros(100));
            }
            if stopped_now.load(Ordering::Acquire) != 0 {
                started_stopped += 1;
            }
        });
    }));
    done.store(true, Ordering::Relaxed);
    stopper.join().unwrap();
    drop(readers);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "rounds that started with a reader stopped holding its probe: {started_stopped} of {ROUNDS}"
    );
    if cfg!(pidlock_portable) {
        assert!(
            started_stopped >= ROUNDS / 2,
            "the scenario did not happen: only {started_stopped} of {ROUNDS} rounds started with a reader stopped"
        );
    }
}
