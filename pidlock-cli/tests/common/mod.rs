//! What the tests of the `pidlock` binary share: scratch directories, a lock held by a real
//! `pidlock run` in the background, and bounded, event-driven waits for processes.
//!
//! Processes coordinate through pipes and files, never through sleeps; every wait has a bound,
//! and every child is killed and reaped, even when a test fails.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal};

/// How long anything in a test may take before the test fails instead of hanging.
pub const BOUND: Duration = Duration::from_secs(20);

pub const PIDLOCK: &str = env!("CARGO_BIN_EXE_pidlock");

/// `pidlock ARGS...` for assert_cmd, with a bound on how long it may run.
pub fn pidlock() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(PIDLOCK);
    command.timeout(BOUND);
    command
}

/// A directory of the test's own, removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh directory for each call: tests that run in parallel may share a `test` name.
    pub fn new(test: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "pidlock-test-cli-{}-{n}-{test}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A child process that is killed and reaped when dropped.
pub struct Reaped(pub Child);

impl Reaped {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Waits (event-driven, bounded) for the process to exit, and reaps it.
    pub fn wait(&mut self) -> ExitStatus {
        assert!(
            exits_within(self.0.id(), BOUND),
            "pid {} did not exit within {BOUND:?}",
            self.0.id()
        );
        self.0.wait().expect("reap the child")
    }

    /// Whether the process is still running (not reaped, not a zombie).
    pub fn running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `pidlock run --file PATH` holding the lock in the background, with a command that says
/// its PID once the PID file names it, then runs until its stdin is closed.
pub struct Held {
    pub wrapper: Reaped,
    /// The command's PID (the PID file names it).
    pub cmd: u32,
    stdin: Option<ChildStdin>,
    pub stdout: Receiver<String>,
    /// A test that ends without `release` (it failed, or it ended the wrapper itself): the
    /// command leads a process group of its own, which outlives a killed wrapper and holds the
    /// lock; it is killed, so that nothing keeps running.
    job: KillGroupOnDrop,
}

/// The command `hold` runs: it waits (bounded by the caller's read) until the PID file names
/// it, says so, and then runs as `cat` (the same process) until its stdin closes.
pub const WAIT_FOR_MY_PID: &str =
    r#"while [ "$(cat "$1" 2>/dev/null)" != "$$" ]; do sleep 0.01; done; echo "$$"; exec cat"#;

pub fn hold(path: &Path, extra: &[&str]) -> Held {
    hold_with(path, extra, WAIT_FOR_MY_PID)
}

/// Like [`hold`], with a shell script of the caller's that must print `$$` once ready, and
/// then keep running until stdin closes. `$1` is the lock path.
pub fn hold_with(path: &Path, extra: &[&str], script: &str) -> Held {
    let mut command = Command::new(PIDLOCK);
    command
        .arg("run")
        .arg("--file")
        .arg(path)
        .args(extra)
        .args(["--", "sh", "-c", script, "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    pidlock_test_support::default_signals(&mut command);
    let mut wrapper = Reaped(command.spawn().expect("start pidlock run"));
    let stdin = wrapper.0.stdin.take();
    let stdout = lines_of(wrapper.0.stdout.take().expect("stdout"));
    let line = stdout
        .recv_timeout(BOUND)
        .expect("the held command starts and names itself");
    let cmd = line.trim().parse().expect("a PID");
    Held {
        wrapper,
        cmd,
        stdin,
        stdout,
        job: KillGroupOnDrop(cmd),
    }
}

impl Held {
    /// Lets the command finish normally, and returns the wrapper's exit status.
    pub fn release(self) -> ExitStatus {
        let Held {
            mut wrapper,
            stdin,
            job,
            ..
        } = self;
        drop(stdin);
        let status = wrapper.wait();
        job.disarm();
        status
    }
}

/// Every line `from` produces, as it comes, on a channel (so that reads can be bounded).
pub fn lines_of(from: impl Read + Send + 'static) -> Receiver<String> {
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Everything `from` produces until EOF, as it comes, chunk by chunk.
pub fn chunks_of(mut from: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (chunks, received) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0_u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || chunks.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    received
}

/// The process `pid` itself, for waiting on its exit without polling.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// Whether the process `pid` (any process, not only a child) exits within `bound`: its pidfd
/// becomes readable when it does.
pub fn exits_within(pid: u32, bound: Duration) -> bool {
    let Some(fd) = pidfd(pid) else {
        return true; // already gone
    };
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Whether a process `pid` exists (a zombie counts).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn send(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, signal).expect("send the signal");
}

/// A live process that has nothing to do with any lock: `sleep`, killed when dropped.
pub fn bystander() -> Reaped {
    Reaped(
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sleep"),
    )
}

/// A PID that no process has now (one that just exited and was reaped).
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("start true");
    let pid = child.id();
    child.wait().expect("reap true");
    pid
}

/// The one line a command wrote to stderr, checked to be exactly one.
pub fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "expected one line, got {text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    text.trim_end().to_owned()
}

/// How many times the killed-wrapper scenario runs: an overlap that shows once in twenty is a
/// failure.
pub const REPETITIONS: usize = 20;

/// A job whose CMD (a shell script) starts a long child, says the child's PID, and waits for
/// it: the child is "the real work" (tar, rsync), and the test ends it by killing it.
pub const SCRIPT_WITH_CHILD: &str = r#"sleep 300 </dev/null & echo "$!"; wait"#;

/// A process started by the test in a process group of its own (as a shell with job control
/// starts a job), with its stdout as lines; killed (the whole group) and reaped when dropped.
pub struct Started {
    pub process: Reaped,
    pub lines: Receiver<String>,
}

impl Started {
    pub fn spawn(command: &mut Command) -> Started {
        command.stderr(Stdio::null());
        Started::spawn_with_stderr(command).0
    }

    /// Like [`spawn`](Self::spawn), with its stderr as lines too.
    pub fn spawn_with_stderr(command: &mut Command) -> (Started, Receiver<String>) {
        use std::os::unix::process::CommandExt;
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        pidlock_test_support::default_signals(command);
        let mut process = Reaped(command.spawn().expect("start the job"));
        let lines = lines_of(process.0.stdout.take().expect("stdout"));
        let errors = process.0.stderr.take().map(lines_of);
        (
            Started { process, lines },
            errors.unwrap_or_else(|| mpsc::channel().1),
        )
    }

    pub fn line(&self) -> String {
        self.lines.recv_timeout(BOUND).expect("a line from the job")
    }
}

pub fn kill_group(pgid: u32, signal: Signal) {
    let pgid = Pid::from_raw(i32::try_from(pgid).expect("pgid")).expect("pgid");
    // The group may be empty already (its last process just exited): that is no failure.
    let _ = rustix::process::kill_process_group(pgid, signal);
}

/// Builds a `pidlock run` of the lock under test: `run(EXTRA, SCRIPT)` is `pidlock run
/// <the lock> EXTRA... -- sh -c SCRIPT ...`.
pub type RunOf<'a> = &'a dyn Fn(&[&str], &str) -> Command;

/// Whether a second copy starts now, without waiting: it prints `second` if it runs.
pub fn second_copy_starts(run: RunOf<'_>) -> bool {
    let out = run(&[], "echo second")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run the second copy");
    let started = String::from_utf8_lossy(&out.stdout).contains("second");
    assert_eq!(
        started,
        out.status.success(),
        "exit status and output disagree: {out:?}"
    );
    started
}

/// The killed-wrapper scenario of the issue, once: the job's first process (the wrapper, or
/// flock(1)) is SIGKILLed while CMD's child works; a second copy without `--wait` is refused,
/// and one with `--wait` starts only once the child has exited. Returns whether a second copy
/// ran beside the child.
pub fn killed_wrapper_scenario(run: RunOf<'_>, first: &mut Command) -> bool {
    let job = Started::spawn(first);
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    send(job.process.id(), Signal::KILL);
    let mut job = job;
    job.process.wait();
    assert!(alive(child), "the child is running");
    let mut overlap = second_copy_starts(run);
    // A waiting second copy checks, once it runs, whether the child still does.
    let check = format!("if kill -0 {child} 2>/dev/null; then echo overlap; else echo clean; fi");
    let mut waiter = run(&["--wait", "60"], &check);
    let (waiter, errors) = Started::spawn_with_stderr(waiter.stderr(Stdio::piped()));
    // Blocked behind the job before the child ends: it says it waits.
    let said = errors.recv_timeout(BOUND).expect("the waiting line");
    assert!(said.starts_with("pidlock: waiting for"), "{said}");
    overlap |= waiter.lines.try_recv().is_ok();
    send(child, Signal::KILL);
    overlap |= waiter.line() == "overlap";
    let mut waiter = waiter;
    assert!(waiter.process.wait().success());
    overlap
}

/// A set-user-ID copy of `sleep` owned by `nobody`, made in `scratch` (which is made searchable
/// by `nobody`, for the exec). Needs root.
pub fn set_user_id_sleep(scratch: &Scratch) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let program = scratch.path("suid-sleep");
    let sleep = Command::new("sh")
        .args(["-c", "command -v sleep"])
        .output()
        .expect("find sleep");
    let sleep = String::from_utf8_lossy(&sleep.stdout).trim().to_owned();
    fs::copy(&sleep, &program).expect("copy sleep");
    let nobody = rustix::process::Uid::from_raw(65534);
    rustix::fs::chown(&program, Some(nobody), None).expect("chown nobody");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    // Scratch lives in the temp dir, which must be searchable by nobody for the exec.
    fs::set_permissions(&scratch.dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    program
}

/// A process that is not the test's child (a job's process reparented when its wrapper was
/// killed), SIGKILLed when dropped, so that a failing test leaves nothing running.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

/// A process group (a job's, led by CMD) SIGKILLed when dropped, so that a failing test
/// leaves nothing running.
pub struct KillGroupOnDrop(pub u32);

impl KillGroupOnDrop {
    /// The group ended as the test meant it to: nothing to kill.
    pub fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0, Signal::KILL);
    }
}
