//! On a terminal, `pidlock run --wait` keeps one live line up to date and erases it when the
//! lock is taken. The terminal is a pty that `script(1)` provides.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use common::*;

#[test]
fn the_live_waiting_line_is_rewritten_in_place_and_erased_when_the_lock_is_taken() {
    let scratch = Scratch::new("terminal");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    let inner = format!(
        "{PIDLOCK} run --file {} --wait 60 -- echo taken",
        path.display()
    );
    let mut script = on_a_pty(&inner);
    let output = chunks_of(script.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + BOUND;
    // The line is redrawn as the seconds waited go up: wait for a redraw with "1s waited".
    while !String::from_utf8_lossy(&seen).contains("1s waited") {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.extend(output.recv_timeout(left).expect("the live line"));
    }
    assert!(held.release().success());
    while let Ok(chunk) = output.recv_timeout(BOUND) {
        seen.extend(chunk);
    }
    assert!(script.wait().success());
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.starts_with("\rpidlock: waiting for job (pid "),
        "{text:?}"
    );
    assert!(text.contains(": 0s waited, limit 1m00s\x1b[K"), "{text:?}");
    assert!(text.contains(": 1s waited, limit 1m00s\x1b[K"), "{text:?}");
    // Erased, then the command's own output on a clean line.
    assert!(text.ends_with("\r\x1b[Ktaken\r\n"), "{text:?}");
    assert_eq!(text.matches('\n').count(), 1, "{text:?}");
}

/// On a terminal, CMD's job has the foreground: the terminal's Ctrl-C reaches CMD once (not the
/// wrapper, which would pass it on a second time), and CMD can read the terminal.
#[test]
fn on_a_terminal_ctrl_c_reaches_cmd_once_and_cmd_reads_the_terminal() {
    use std::io::Write as _;
    let scratch = Scratch::new("terminal-ctrl-c");
    let path = scratch.path("job.pid");
    // A `read` that the trapped SIGINT interrupts is tried again; a hundred failed reads are the
    // end of input (the test gone), and the job ends instead of spinning.
    let job = r#"trap "echo INT" INT; echo ready; n=0; until read x; do n=$((n+1)); [ $n -lt 100 ] || exit 1; done; echo "got $x""#;
    // `exec`: no non-interactive shell waits in the foreground group, where the terminal's
    // SIGINT would end it (dash does, bash does not), and script(1) with it.
    let inner = format!(
        "exec {PIDLOCK} run --file {} -- sh -c '{}'",
        path.display(),
        job.replace('\'', r"'\''")
    );
    let mut script = on_a_pty(&inner);
    let mut keys = script.0.stdin.take().expect("stdin");
    let output = chunks_of(script.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    let wait_for = |text: &str, seen: &mut Vec<u8>| {
        let deadline = Instant::now() + BOUND;
        while !String::from_utf8_lossy(seen).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.extend(output.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "waited for {text:?}, got {:?}",
                    String::from_utf8_lossy(seen)
                )
            }));
        }
    };
    wait_for("ready", &mut seen);
    keys.write_all(b"\x03").expect("Ctrl-C");
    wait_for("INT", &mut seen);
    keys.write_all(b"hello\r").expect("type a line");
    wait_for("got hello", &mut seen);
    drop(keys);
    assert!(script.wait().success());
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert_eq!(text.matches("INT").count(), 1, "{text:?}");
}

/// An interactive `bash` on a pty (`script(1)`), with the prompt `PS> `, typed to by the test.
struct Shell {
    script: Reaped,
    keys: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Shell {
    fn start() -> Shell {
        let mut script = on_a_pty("bash --norc --noprofile -i");
        let keys = script.0.stdin.take();
        let output = chunks_of(script.0.stdout.take().expect("stdout"));
        let mut shell = Shell {
            script,
            keys,
            output,
            seen: Vec::new(),
        };
        // The prompt, spelled so that the echo of what is typed does not show it.
        shell.type_keys("PS1=\"P\"\"S> \"\n");
        shell.wait_for("PS> ", 1);
        shell
    }

    /// Typing goes only to a shell that shows its prompt, or to a command that said it reads:
    /// keys typed while the terminal changes hands may be lost.
    fn type_keys(&mut self, keys: &str) {
        use std::io::Write as _;
        let stdin = self.keys.as_mut().expect("the shell's terminal");
        stdin.write_all(keys.as_bytes()).expect("type");
    }

    /// Waits until `text` has been shown `times` times in all; bounded even when output keeps
    /// coming.
    fn wait_for(&mut self, text: &str, times: usize) {
        let deadline = Instant::now() + BOUND;
        while String::from_utf8_lossy(&self.seen).matches(text).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = (!left.is_zero())
                .then(|| self.output.recv_timeout(left).ok())
                .flatten();
            self.seen.extend(chunk.unwrap_or_else(|| {
                panic!(
                    "waited for {text:?}, got {:?}",
                    String::from_utf8_lossy(&self.seen)
                )
            }));
        }
    }

    /// Types `exit`, and returns everything the terminal showed.
    fn exit(mut self) -> String {
        self.type_keys("exit\n");
        drop(self.keys.take());
        assert!(self.script.wait().success());
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

/// Ctrl-Z in an interactive shell stops the job and the wrapper with it, so the shell gets its
/// prompt back; `fg` gives the job the terminal again, and CMD reads from it.
#[test]
fn ctrl_z_stops_the_job_and_fg_gives_it_the_terminal_back() {
    let scratch = Scratch::new("terminal-ctrl-z");
    let path = scratch.path("job.pid");
    let mut shell = Shell::start();
    shell.type_keys(&format!(
        "{PIDLOCK} run --file {} -- sh -c 'echo re\"\"ady $$ e\"\"nd; read x; echo go\"\"t $x'\n",
        path.display()
    ));
    shell.wait_for(" end", 1);
    let text = String::from_utf8_lossy(&shell.seen).into_owned();
    let cmd: u32 = text
        .split("ready ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("CMD's PID in {text:?}"));
    shell.type_keys("\x1a");
    shell.wait_for("Stopped", 1);
    shell.wait_for("PS> ", 2);
    // The shell shows its prompt once the wrapper has stopped, but CMD, woken in its `read` by
    // the SIGTSTP, may not have run since: the kernel would still hand it a key typed now,
    // before it stops. Typing waits until CMD has stopped.
    wait_until_stopped(cmd);
    shell.type_keys("fg\n");
    // `fg` echoes the command line, which reads now.
    shell.wait_for("sh -c", 3);
    shell.type_keys("hello\n");
    shell.wait_for("got hello", 1);
    shell.wait_for("PS> ", 3);
    shell.exit();
}

/// Typed at an interactive shell, `pidlock run -- CMD | PAGER` where the pager reads the terminal
/// (as `less` does) works as it does without pidlock, or with `flock(1)`: the pager reads the key
/// typed, and nothing of the pipeline is stopped. The wrapper must not take the terminal's
/// foreground from the shell's job (the pager would then be stopped by SIGTTIN).
#[test]
fn a_pager_after_pidlock_run_in_a_pipeline_reads_the_terminal() {
    let scratch = Scratch::new("terminal-pipeline");
    let path = scratch.path("job.pid");
    // Two FIFOs order the pipeline: the pager reads the terminal only once CMD runs (so that
    // whatever CMD's start did to the terminal is done), and CMD runs until the pager has read.
    let started = scratch.path("started");
    let read = scratch.path("read");
    for fifo in [&started, &read] {
        assert!(
            Command::new("mkfifo")
                .arg(fifo)
                .status()
                .expect("mkfifo")
                .success()
        );
    }
    let mut shell = Shell::start();
    // Texts to wait for are spelled apart, so that the echo of the typed line does not show them.
    let (started, read) = (started.display(), read.display());
    shell.type_keys(&format!(
        "{PIDLOCK} run --file {} -- sh -c 'seq 3; echo >{started}; cat {read} >/dev/null' | \
         sh -c 'cat {started} >/dev/null; echo pa\"\"ger reads >&2; read k </dev/tty; \
         echo pa\"\"ger got $k; echo >{read}; echo li\"\"nes $(wc -l)'\n",
        path.display()
    ));
    shell.wait_for("pager reads", 1);
    shell.type_keys("hello\n");
    shell.wait_for("pager got hello", 1);
    shell.wait_for("lines 3", 1);
    shell.wait_for("PS> ", 2);
    let text = shell.exit();
    assert!(!text.contains("Stopped"), "{text:?}");
}

/// On a terminal CMD shares the wrapper's process group; a signal sent to the wrapper alone
/// (not by the terminal) is still passed on to CMD, once.
#[test]
fn on_a_terminal_a_signal_sent_to_the_wrapper_reaches_cmd_once() {
    let scratch = Scratch::new("terminal-forward");
    let path = scratch.path("job.pid");
    let mut shell = Shell::start();
    // CMD says its wrapper's PID ($PPID), says each SIGTERM (15) it gets, and reads a line to
    // end (a `read` that the trapped signal interrupts is tried again).
    shell.type_keys(&format!(
        "{PIDLOCK} run --file {} -- sh -c 'trap \"echo sig\"\"term\" 15; \
         echo wra\"\"pper $PPID e\"\"nd; n=0; until read x; do n=$((n+1)); [ $n -lt 100 ] || exit 1; done; \
         echo go\"\"t $x'\n",
        path.display()
    ));
    shell.wait_for(" end", 1);
    let text = String::from_utf8_lossy(&shell.seen).into_owned();
    let wrapper: u32 = text
        .split("wrapper ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the wrapper's PID in {text:?}"));
    send(wrapper, rustix::process::Signal::TERM);
    shell.wait_for("sigterm", 1);
    shell.type_keys("hello\n");
    shell.wait_for("got hello", 1);
    shell.wait_for("PS> ", 2);
    let text = shell.exit();
    assert_eq!(text.matches("sigterm").count(), 1, "{text:?}");
}

/// Ctrl-C on a terminal reaches CMD once: the terminal sends it to the whole foreground group,
/// CMD and the wrapper alike, and the wrapper must not pass its copy on. Made deterministic by
/// stopping the wrapper while Ctrl-C is typed: its copy waits, pending, until CMD has counted
/// its own; then SIGUSR1 is sent to the stopped wrapper too, and it is continued: it takes both
/// pending signals in one batch and passes on what it passes on at once, so CMD has any second
/// SIGINT by the time it reports the SIGUSR1 (without the fix, it does: `total 2`). CMD is a
/// program (Python) that counts every delivery through a wakeup pipe, however close together.
#[test]
fn on_a_terminal_ctrl_c_reaches_a_program_exactly_once() {
    use std::io::Write as _;
    pidlock_test_support::require_program!("python3", "python3");
    let scratch = Scratch::new("terminal-ctrl-c-program");
    let path = scratch.path("job.pid");
    let program = scratch.path("count.py");
    std::fs::write(
        &program,
        "import os, select, signal, sys\n\
         wake, woken = os.pipe()\n\
         os.set_blocking(woken, False)\n\
         signal.signal(signal.SIGINT, lambda *_: None)\n\
         signal.signal(signal.SIGUSR1, lambda *_: None)\n\
         signal.set_wakeup_fd(woken)\n\
         ints = 0\n\
         print('wrapper', os.getppid(), 'end', flush=True)\n\
         while True:\n    ready, _, _ = select.select([wake, sys.stdin], [], [])\n    \
         if wake in ready:\n        for number in os.read(wake, 64):\n            \
         if number == signal.SIGINT:\n                ints += 1\n                \
         print('sigint', ints, flush=True)\n            \
         elif number == signal.SIGUSR1:\n                print('usr1', flush=True)\n    \
         if sys.stdin in ready:\n        sys.stdin.readline()\n        break\n\
         print('total', ints, 'fin', flush=True)\n",
    )
    .expect("write the program");
    // `; true`: the wrapper is the shell's child, not script(1)'s, which would stop itself,
    // and no longer pass on what is typed, when it sees its child stop. The shell traps SIGINT
    // so that the terminal's Ctrl-C does not end it (dash, unlike bash, would die of it); a
    // trapped signal is reset on exec, so the wrapper gets SIGINT as it would from any shell.
    let inner = format!(
        "trap : INT; {PIDLOCK} run --file {} -- python3 {}; true",
        path.display(),
        program.display()
    );
    let mut script = on_a_pty(&inner);
    let mut keys = script.0.stdin.take().expect("stdin");
    let output = chunks_of(script.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    let mut wait_for = |text: &str| {
        let deadline = Instant::now() + BOUND;
        while !String::from_utf8_lossy(&seen).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.extend(output.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "waited for {text:?}, got {:?}",
                    String::from_utf8_lossy(&seen)
                )
            }));
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    let text = wait_for(" end");
    let wrapper: u32 = text
        .split("wrapper ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the wrapper's PID in {text:?}"));
    send(wrapper, rustix::process::Signal::STOP);
    wait_until_stopped(wrapper);
    keys.write_all(b"\x03").expect("Ctrl-C");
    wait_for("sigint 1");
    send(wrapper, rustix::process::Signal::USR1);
    send(wrapper, rustix::process::Signal::CONT);
    wait_for("usr1");
    keys.write_all(b"done\r").expect("type a line");
    let text = wait_for(" fin");
    drop(keys);
    assert!(script.wait().success());
    assert!(text.contains("total 1 fin"), "{text:?}");
}

/// Runs `command` under `script(1)` on a new pty, with the test's pipes as the terminal's keys
/// and screen. script(1) runs it with `$SHELL -c`: `SHELL` is set to `/bin/sh` so that the test
/// does not depend on the login shell of whoever runs it.
/// A terminal's programs start with SIGINT's default action, whatever this test run has.
fn on_a_pty(command: &str) -> Reaped {
    let mut script = Command::new("script");
    script
        .args(["--quiet", "--return", "--command", command, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    pidlock_test_support::default_signals(&mut script);
    Reaped(script.spawn().expect("start script(1)"))
}

/// Waits (bounded) until `/proc` shows process `pid` stopped: SIGSTOP takes effect when the
/// process next runs, which the kernel schedules at once.
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + BOUND;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process");
        let state = stat[stat.rfind(')').expect("a stat line") + 1..]
            .split_whitespace()
            .next();
        if state == Some("T") {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} did not stop");
        std::thread::yield_now();
    }
}
