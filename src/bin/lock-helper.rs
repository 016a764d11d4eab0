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
//! lock-helper fork-drop PATH [newns]   acquire, fork (into a new PID namespace with `newns`);
//!                                      the child drops and releases its copy
//! lock-helper exec-child PATH          acquire, spawn a long-lived exec'd child, print its PID
//! lock-helper status PATH              print "status IS_LOCKED I_AM_LOCKING PID" and exit
//! lock-helper default PROGRAM          PidLockFile::for_program, acquire once, print
//!                                      "ok PATH" or the outcome, then obey stdin as `hold` does
//! lock-helper as-pid1 COMMAND...       run COMMAND as PID 1 of a new PID namespace (root only)
//! lock-helper fork-hold PATH           acquire, fork a child that keeps the descriptor and
//!                                      sleeps; print "child PID"; then obey stdin as `hold`
//! lock-helper fork-wait L B C TIMEOUT  wait for L; fork; the child drops its copy of L and
//!                                      waits for B, the parent waits for C; each prints
//!                                      "child PID" / "got B" / "got C"
//! lock-helper wait-threads PATH N      N threads wait for PATH (up to 60 s) and take turns;
//!                                      "all-done" when every one has held it
//! lock-helper probe-loop PATH          call is_locked() on PATH until killed
//! lock-helper fork-stress PATH N       3 threads take and let go of PATH while the main thread
//!                                      forks N children that use pidlock; print "hung K" for
//!                                      the children still running 10 s after they should end
//! ```
//!
//! TIMEOUT is milliseconds, or `none` to wait forever. NS are CLOCK_MONOTONIC nanoseconds (the
//! performance counter's on Windows), which every process on the machine shares. On Windows only
//! `hold`, `try`, `contend`, `status`, `default`, `wait-threads` and `probe-loop` exist, and
//! `try` reports `-` for CPU_NS and SWITCHES.

use std::io::{self, BufRead, Write};
use std::process;
#[cfg(unix)]
use std::process::{Command, Stdio};
use std::time::Duration;

#[cfg(unix)]
use pidlock::UnlockError;
use pidlock::{LockError, PidLockFile};
#[cfg(unix)]
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
        #[cfg(unix)]
        "fork-drop" => fork_drop(arg(1), arg(2) == "newns"),
        #[cfg(unix)]
        "exec-child" => exec_child(arg(1)),
        "status" => status(arg(1)),
        "default" => default_lock(arg(1)),
        #[cfg(unix)]
        "as-pid1" => as_pid1(&args[1..]),
        #[cfg(unix)]
        "fork-hold" => fork_hold(arg(1)),
        #[cfg(unix)]
        "fork-wait" => fork_wait(arg(1), arg(2), arg(3), timeout(arg(4))),
        "wait-threads" => wait_threads(arg(1), arg(2).parse().unwrap_or(1)),
        "probe-loop" => probe_loop(arg(1)),
        #[cfg(unix)]
        "fork-stress" => fork_stress(arg(1), arg(2).parse().unwrap_or(1)),
        other => {
            eprintln!("lock-helper: unknown command {other:?}");
            process::exit(64);
        }
    }
}

#[cfg(unix)]
fn now_ns() -> u128 {
    let t = clock_gettime(ClockId::Monotonic);
    u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap_or(0)
}

/// The performance counter in nanoseconds (see `tests/common/mod.rs`).
#[cfg(windows)]
#[allow(unsafe_code)]
fn now_ns() -> u128 {
    use windows_sys::Win32::System::Performance::{
        QueryPerformanceCounter, QueryPerformanceFrequency,
    };
    let (mut count, mut frequency) = (0_i64, 0_i64);
    // SAFETY: both calls write one i64 each through pointers to live locals.
    unsafe {
        QueryPerformanceCounter(&raw mut count);
        QueryPerformanceFrequency(&raw mut frequency);
    }
    let count = u128::try_from(count).unwrap_or(0);
    count * 1_000_000_000 / u128::try_from(frequency).unwrap_or(1).max(1)
}

/// What the waiter cost: CPU time and voluntary context switches.
#[cfg(unix)]
fn costs() -> String {
    format!("{} {}", cpu_ns(), voluntary_switches())
}

/// Windows has no count of voluntary switches to compare; the tests that read these are Unix's.
#[cfg(windows)]
fn costs() -> String {
    "- -".to_owned()
}

#[cfg(unix)]
fn cpu_ns() -> u128 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap_or(0)
}

/// How often this process has gone to sleep voluntarily: a waiter that polls wakes up often.
#[cfg(unix)]
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
    obey(lock);
}

/// Runs the stdin commands of `hold` on a lock this process holds.
fn obey(mut lock: PidLockFile) {
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
    say(&format!("{} {acquired_ns} {}", outcome(&result), costs()));
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

#[cfg(unix)]
#[allow(unsafe_code)]
fn fork_drop(path: &str, new_pid_namespace: bool) {
    let mut lock = PidLockFile::new(path);
    if let Err(e) = lock.acquire(Some(Duration::ZERO)) {
        say(&format!("failed {e}"));
        process::exit(1);
    }
    let _ = io::stdout().flush();
    if new_pid_namespace {
        enter_new_pid_namespace();
    }
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // The child: it shares the parent's lock through the inherited descriptor, but the
        // lock is the parent's. Both release and drop must leave it alone. (In a new PID
        // namespace the child may have the parent's PID: 1, as its file says.)
        let code = match lock.release() {
            Err(UnlockError::NotMyLock { pid, .. })
                if pid == Some(process::id()) && !new_pid_namespace =>
            {
                3
            }
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

#[cfg(unix)]
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

fn status(path: &str) {
    let lock = PidLockFile::new(path);
    say(&format!(
        "status {} {} {}",
        lock.is_locked(),
        lock.i_am_locking(),
        pid_text(lock.read_pid())
    ));
}

fn default_lock(program: &str) {
    let mut lock = match PidLockFile::for_program(program) {
        Ok(lock) => lock,
        Err(e) => {
            say(&format!("failed {e}"));
            process::exit(2);
        }
    };
    let result = lock.acquire(Some(Duration::ZERO));
    if result.is_err() {
        say(&outcome(&result));
        process::exit(1);
    }
    say(&format!("ok {}", lock.path().display()));
    obey(lock);
}

#[cfg(unix)]
/// Makes the next child this process forks PID 1 of a new PID namespace.
#[allow(unsafe_code)]
fn enter_new_pid_namespace() {
    // SAFETY: unshare takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        say(&format!("failed unshare: {}", io::Error::last_os_error()));
        process::exit(2);
    }
}

#[cfg(unix)]
/// Forks, and returns in the child; the parent waits for the child and exits with its status.
/// The child dies with the parent, so a test that kills the parent leaves nothing behind.
#[allow(unsafe_code)]
fn fork_and_follow() {
    let _ = io::stdout().flush();
    // SAFETY: called while this process is single-threaded.
    let child = unsafe { libc::fork() };
    if child < 0 {
        say(&format!("failed fork: {}", io::Error::last_os_error()));
        process::exit(2);
    }
    if child == 0 {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        return;
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    unsafe { libc::waitpid(child, &mut status, 0) };
    process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    });
}

#[cfg(unix)]
fn as_pid1(command: &[String]) {
    enter_new_pid_namespace();
    fork_and_follow();
    // Now PID 1 of the new namespace: run the rest of the command line here.
    let args = command.to_vec();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match arg(0) {
        "hold" => hold(arg(1), timeout(arg(2))),
        "status" => status(arg(1)),
        "fork-drop" => fork_drop(arg(1), arg(2) == "newns"),
        other => {
            say(&format!("failed unknown as-pid1 command {other:?}"));
            process::exit(64);
        }
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn fork_hold(path: &str) {
    let mut lock = PidLockFile::new(path);
    if let Err(e) = lock.acquire(Some(Duration::ZERO)) {
        say(&format!("failed {e}"));
        process::exit(1);
    }
    let _ = io::stdout().flush();
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // Keep the inherited descriptor open, doing nothing, until the parent is gone.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        loop {
            std::thread::park();
        }
    }
    say(&format!("child {child}"));
    obey(lock);
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn fork_wait(first: &str, child_path: &str, parent_path: &str, timeout: Option<Duration>) {
    let mut lock = PidLockFile::new(first);
    if let Err(e) = lock.acquire(timeout) {
        say(&format!("failed {e}"));
        process::exit(1);
    }
    say("got L");
    let _ = io::stdout().flush();
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    let child = unsafe { libc::fork() };
    let (path, name) = if child == 0 {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        drop(lock);
        (child_path, "B")
    } else {
        say(&format!("child {child}"));
        (parent_path, "C")
    };
    let mut next = PidLockFile::new(path);
    match next.acquire(timeout) {
        Ok(()) => say(&format!("got {name}")),
        Err(e) => say(&format!("failed {name} {e}")),
    }
    // Hold until the test says so (the child reads the same stdin; either line ends both).
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
}

fn wait_threads(path: &str, threads: usize) {
    let waiting: Vec<_> = (0..threads)
        .map(|_| {
            let path = path.to_owned();
            std::thread::spawn(move || {
                let mut lock = PidLockFile::new(path);
                let result = lock.acquire(Some(Duration::from_secs(60)));
                say(&format!("thread {}", outcome(&result)));
            })
        })
        .collect();
    say("started");
    for thread in waiting {
        let _ = thread.join();
    }
    say("all-done");
}

fn probe_loop(path: &str) {
    let lock = PidLockFile::new(path);
    say("probing");
    loop {
        std::hint::black_box(lock.is_locked());
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn fork_stress(path: &str, children: usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let (path, stop) = (path.to_owned(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut lock = PidLockFile::new(&path);
                    if lock.acquire(Some(Duration::from_millis(20))).is_ok() {
                        let _ = lock.i_am_locking();
                        let _ = lock.release();
                    }
                }
            })
        })
        .collect();
    let mut pids = Vec::new();
    for i in 0..children {
        let _ = io::stdout().flush();
        // SAFETY: the child calls only pidlock and `_exit`; what matters here is exactly
        // whether pidlock's own state can be left locked by a thread that is not copied.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let mut own = PidLockFile::new(format!("{path}.child-{i}"));
            let _ = own.acquire(Some(Duration::ZERO));
            let mut shared = PidLockFile::new(path);
            let _ = shared.acquire(Some(Duration::from_millis(5)));
            let _ = own.i_am_locking();
            drop(own);
            drop(shared);
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        pids.push(child);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in busy {
        let _ = thread.join();
    }
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let mut hung = 0;
    for pid in pids {
        let mut status = 0;
        loop {
            // SAFETY: reaping our own child, without blocking.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done != 0 {
                break;
            }
            if std::time::Instant::now() > give_up {
                hung += 1;
                // SAFETY: killing and reaping our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    say(&format!("hung {hung}"));
}
