//! Shared plumbing for the multi-process tests: scratch directories, and child processes that
//! report on a pipe, with every wait bounded and every child killed when the test ends.

#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait on a child may take before the test fails. Generous: the machine
/// is shared and noisy, and a correct run never gets near it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A directory of its own for one test, removed when dropped.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pidlock-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running child whose stdout lines arrive on a channel, so the test can wait for a report
/// with a bound instead of sleeping. Killed and reaped on drop.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    pub fn spawn(mut command: Command) -> Proc {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        pidlock_test_support::default_signals(&mut command);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let tx_err = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx_err.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            stdin,
            lines,
        }
    }

    /// The helper binary with `args`.
    pub fn helper(args: &[&str]) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lock-helper"));
        command.args(args);
        Proc::spawn(command)
    }

    /// `lock-helper hold PATH` that has reported holding the lock.
    pub fn holder(path: &Path) -> Proc {
        let mut holder = Proc::helper(&["hold", path.to_str().unwrap(), "none"]);
        let line = holder.next_line();
        assert!(line.starts_with("locked "), "holder did not lock: {line}");
        holder
    }

    /// The channel this child's output arrives on, to hand to another reader.
    pub fn lines_mut(&mut self) -> &mut Receiver<String> {
        &mut self.lines
    }

    /// Whether the child has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .try_wait()
            .map_or(true, |status| status.is_some())
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line (stderr lines are prefixed with `stderr: `), waiting at most
    /// `PATIENCE`.
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("child {} said nothing for {PATIENCE:?}", self.id())
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().unwrap();
                panic!("child {} closed its output ({status})", self.id())
            }
        }
    }

    /// The next stdout line, skipping stderr lines.
    pub fn next_report(&mut self) -> String {
        loop {
            let line = self.next_line();
            if !line.starts_with("stderr: ") {
                return line;
            }
        }
    }

    /// All remaining output after the child has closed it.
    pub fn rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        let give_up = Instant::now() + PATIENCE;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("child {} did not finish", self.id()),
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit on its own (its output pipes close, at most `PATIENCE`),
    /// and returns its status and everything it printed that was not read yet.
    pub fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let rest = self.rest();
        (self.child.wait().unwrap(), rest)
    }

    pub fn wait(&mut self) -> ExitStatus {
        self.finish().0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock the helpers report on.
#[cfg(unix)]
pub fn now_ns() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u128::try_from(t.tv_sec).unwrap() * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap()
}

/// The performance counter now, in nanoseconds: on Windows the clock the helpers report on,
/// shared by every process on the machine.
#[cfg(windows)]
pub fn now_ns() -> u128 {
    let (mut count, mut frequency) = (0_i64, 0_i64);
    // SAFETY: both calls write one i64 each through pointers to live locals.
    #[allow(unsafe_code)]
    unsafe {
        windows_sys::Win32::System::Performance::QueryPerformanceCounter(&raw mut count);
        windows_sys::Win32::System::Performance::QueryPerformanceFrequency(&raw mut frequency);
    }
    u128::try_from(count).unwrap() * 1_000_000_000 / u128::try_from(frequency).unwrap()
}

/// Waits (bounded) until process `pid` is asleep in the kernel, which for a helper that has
/// started its `acquire` against a held lock means it is blocked waiting for the release.
/// Linux only: it reads `/proc/PID/stat`.
pub fn wait_until_sleeping(pid: u32) {
    let give_up = Instant::now() + PATIENCE;
    let stat = format!("/proc/{pid}/stat");
    let mut asleep_in_a_row = 0;
    while asleep_in_a_row < 3 {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        // The state follows the parenthesised command name.
        let state = text
            .rsplit(')')
            .next()
            .and_then(|rest| rest.trim_start().chars().next());
        let blocked = state == Some('S') && wchan_is_a_lock_wait(pid);
        asleep_in_a_row = if blocked { asleep_in_a_row + 1 } else { 0 };
        assert!(Instant::now() < give_up, "process {pid} never blocked");
        thread::yield_now();
    }
}

fn wchan_is_a_lock_wait(pid: u32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    // flock_lock_inode_wait / locks_lock_inode_wait for a blocking flock; do_sys_poll and
    // friends for an inotify wait; hrtimer_nanosleep for the portable backoff; "0" where the
    // kernel hides wchan.
    ["lock", "poll", "sleep"].iter().any(|w| wchan.contains(w)) || wchan == "0" || wchan.is_empty()
}
