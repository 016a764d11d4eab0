//! A small process for the multi-process tests and the benchmark to start: it takes, holds and
//! releases a `PidLockFile` as told on its command line and stdin, and reports on stdout.
//!
//! Every report is one line, so the parent can wait on the pipe instead of sleeping:
//!
//! ```text
//! lock-helper hold PATH [TIMEOUT]      acquire, print "locked PID NS", then obey stdin lines:
//!                                      "release" (print "released NS"), "exit" (process::exit,
//!                                      skipping destructors), "abort", "drop", "status";
//!                                      EOF returns from main
//! lock-helper try PATH [TIMEOUT]       acquire once, print "OUTCOME NS CPU_NS SWITCHES" (see
//!                                      `outcome`), and exit (0 locked, 1 busy, 2 failed)
//! lock-helper contend PATH N LOG [K]   N rounds of acquire / record / release; intervals go to
//!                                      LOG; every K-th round it says "paused" while holding the
//!                                      lock and waits for a stdin line (the parent may kill it)
//! lock-helper fork-drop PATH           acquire, fork; the child drops and releases its copy
//! lock-helper exec-child PATH          acquire, spawn a long-lived exec'd child, print its PID
//! ```
//!
//! TIMEOUT is milliseconds, or `none` to wait forever. NS are CLOCK_MONOTONIC nanoseconds, which
//! every process on the machine shares.

use std::io::{self, BufRead, Write};
use std::process::{self, Command, Stdio};
use std::time::Duration;

use pidlock::{LockError, PidLockFile, UnlockError};
use rustix::time::{ClockId, clock_gettime};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match arg(0) {
        "hold" => hold(arg(1), timeout(arg(2))),
        "try" => try_once(arg(1), timeout(arg(2))),
        "contend" => contend(
            arg(1),
            arg(2).parse().unwrap_or(0),
            arg(3),
            arg(4).parse().unwrap_or(0),
        ),
        "fork-drop" => fork_drop(arg(1)),
        "exec-child" => exec_child(arg(1)),
        other => {
            eprintln!("lock-helper: unknown command {other:?}");
            process::exit(64);
        }
    }
}

fn now_ns() -> u128 {
    let t = clock_gettime(ClockId::Monotonic);
    u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap_or(0)
}

fn cpu_ns() -> u128 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap_or(0)
}

/// How often this process has gone to sleep voluntarily: a waiter that polls wakes up often.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn timeout(arg: &str) -> Option<Duration> {
    match arg {
        "" | "none" => None,
        ms => Some(Duration::from_millis(ms.parse().unwrap_or(0))),
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
}

/// One line describing how `acquire` ended: `ok`, `already-locked PID`, `timeout PID`,
/// `failed MESSAGE`.
fn outcome(result: &Result<(), LockError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(LockError::AlreadyLocked { pid, .. }) => format!("already-locked {}", pid_text(*pid)),
        Err(LockError::LockTimeout { pid, .. }) => format!("timeout {}", pid_text(*pid)),
        Err(e) => format!("failed {e}"),
    }
}

fn hold(path: &str, timeout: Option<Duration>) {
    let mut lock = PidLockFile::new(path);
    let result = lock.acquire(timeout);
    if result.is_err() {
        say(&outcome(&result));
        process::exit(1);
    }
    say(&format!("locked {} {}", process::id(), now_ns()));
    for line in io::stdin().lock().lines() {
        match line.as_deref().unwrap_or("exit") {
            "release" => {
                let ns = now_ns();
                match lock.release() {
                    Ok(()) => say(&format!("released {ns}")),
                    Err(e) => say(&format!("release-failed {e}")),
                }
            }
            "drop" => {
                drop(lock);
                say("dropped");
                return;
            }
            "exit" => process::exit(0),
            "abort" => process::abort(),
            "status" => say(&format!(
                "status {} {} {}",
                lock.is_locked(),
                lock.i_am_locking(),
                pid_text(lock.read_pid())
            )),
            other => say(&format!("unknown {other}")),
        }
    }
}

fn try_once(path: &str, timeout: Option<Duration>) {
    let mut lock = PidLockFile::new(path);
    let result = lock.acquire(timeout);
    let acquired_ns = now_ns();
    say(&format!(
        "{} {acquired_ns} {} {}",
        outcome(&result),
        cpu_ns(),
        voluntary_switches()
    ));
    process::exit(match result {
        Ok(()) => 0,
        Err(LockError::LockFailed { .. }) => 2,
        Err(_) => 1,
    });
}

/// `rounds` times: take the lock (alternating no deadline and a generous one, so both waiting
/// paths are exercised), record the hold interval, check the file names us, release. Every
/// `pause_every`-th round it stops while holding and waits for the parent, which may kill it.
fn contend(path: &str, rounds: u32, log: &str, pause_every: u32) {
    let mut log = match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lock-helper: cannot open log: {e}");
            process::exit(2);
        }
    };
    let me = process::id();
    let mut lock = PidLockFile::new(path);
    let mut round = 0;
    while round < rounds {
        let timeout = (round % 2 == 1).then(|| Duration::from_secs(30));
        match lock.acquire(timeout) {
            Ok(()) => {}
            Err(LockError::LockTimeout { .. }) => continue,
            Err(e) => {
                eprintln!("lock-helper: {e}");
                process::exit(2);
            }
        }
        let start = now_ns();
        // One write per record, so a SIGKILL leaves whole lines only.
        let _ = log.write_all(format!("S {start}\n").as_bytes());
        say("acquired");
        if pause_every > 0 && (round + 1) % pause_every == 0 {
            say("paused");
            let mut line = String::new();
            let _ = io::stdin().lock().read_line(&mut line);
        }
        let sane = lock.i_am_locking() && lock.read_pid() == Some(me);
        let end = now_ns();
        let _ = log.write_all(format!("E {end} {sane}\n").as_bytes());
        if let Err(e) = lock.release() {
            eprintln!("lock-helper: {e}");
            process::exit(2);
        }
        round += 1;
    }
    say("done");
}

#[allow(unsafe_code)]
fn fork_drop(path: &str) {
    let mut lock = PidLockFile::new(path);
    if let Err(e) = lock.acquire(Some(Duration::ZERO)) {
        say(&format!("failed {e}"));
        process::exit(1);
    }
    let _ = io::stdout().flush();
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // The child: it shares the parent's lock through the inherited descriptor, but the
        // lock is the parent's. Both release and drop must leave it alone.
        let code = match lock.release() {
            Err(UnlockError::NotMyLock { pid, .. }) if pid == Some(process::id()) => 3,
            Err(UnlockError::NotMyLock { .. }) => 0,
            Ok(()) => 4,
            Err(_) => 5,
        };
        let mut again = PidLockFile::new(path);
        let code = if code == 0 && again.i_am_locking() {
            6
        } else {
            code
        };
        let code = if code == 0 && again.acquire(Some(Duration::ZERO)).is_ok() {
            7
        } else {
            code
        };
        drop(lock);
        drop(again);
        process::exit(code);
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    say(&format!("child-exited {code} {}", process::id()));
    // Keep holding until told, so the parent test can look at the file and the lock.
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
    say(&format!("still-mine {}", lock.i_am_locking()));
    match lock.release() {
        Ok(()) => say("released"),
        Err(e) => say(&format!("release-failed {e}")),
    }
}

fn exec_child(path: &str) {
    let mut lock = PidLockFile::new(path);
    if let Err(e) = lock.acquire(Some(Duration::ZERO)) {
        say(&format!("failed {e}"));
        process::exit(1);
    }
    // A child that outlives us. If it inherited our lock descriptor it would keep the lock
    // alive after we are gone.
    let child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => say(&format!("child {}", child.id())),
        Err(e) => say(&format!("failed {e}")),
    }
    // Leave without destructors, as a crash would: only the kernel can release the lock now.
    process::exit(0);
}
