//! What an adversarial review of the command found, each pinned by a test: output that cannot
//! be written, a lock table naming a dead locker, signals the caller ignores, and `kill --wait`
//! with a waiter queued behind the holder.
// Unix only: the command is a Unix program.
#![cfg(unix)]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn full() -> File {
    OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
}

#[test]
fn output_that_cannot_be_written_changes_no_exit_status() {
    let scratch = Scratch::new("full");
    let path = scratch.path("job.pid");
    let status = |args: &[&str]| {
        Command::new(PIDLOCK)
            .args(args)
            .arg("--file")
            .arg(&path)
            .stdout(full())
            .stderr(full())
            .status()
            .expect("run pidlock")
            .code()
    };
    assert_eq!(status(&["status"]), Some(3));
    assert_eq!(status(&["status", "--json"]), Some(3));
    let held = hold(&path, &[]);
    assert_eq!(status(&["status"]), Some(0));
    // A conflict: one line that goes nowhere, and still exit 1.
    let conflict = Command::new(PIDLOCK)
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "true"])
        .stdout(full())
        .stderr(full())
        .status()
        .expect("run pidlock");
    assert_eq!(conflict.code(), Some(1));
    held.release();
}

#[test]
fn a_lock_passed_on_by_a_dead_locker_is_never_signalled_through_its_number() {
    let scratch = Scratch::new("dead-locker");
    let path = scratch.path("job.pid");
    std::fs::write(&path, "").expect("an empty lock file");
    // flock(1) forks its command, which inherits the locked descriptor; then flock dies.
    let mut flock = Reaped(
        Command::new("flock")
            .arg(&path)
            .args(["sh", "-c", "echo $$; exec sleep 300"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flock(1)"),
    );
    let locker = flock.0.id();
    let mut out = BufReader::new(flock.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("the command's pid");
    let holder: u32 = line.trim().parse().expect("a pid");
    let _holder = KillOnDrop(holder);
    send(locker, rustix::process::Signal::KILL);
    let _ = flock.0.wait();

    // The lock table still names the dead locker; the holder is its child.
    let refused = pidlock()
        .args(["kill", "--file"])
        .arg(&path)
        .assert()
        .code(4)
        .get_output()
        .clone();
    assert!(one_line(&refused.stderr).contains("not signalling"));
    assert!(alive(holder));

    // The same with the locker's number given to an unrelated process, where the kernel lets
    // us choose the next number (root).
    let mut reused = None;
    for _ in 0..20 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", locker - 1)).is_err() {
            break;
        }
        let candidate = bystander();
        if candidate.0.id() == locker {
            reused = Some(candidate);
            break;
        }
    }
    if let Some(bystander) = reused {
        pidlock()
            .args(["kill", "--file"])
            .arg(&path)
            .assert()
            .code(4);
        assert!(
            alive(bystander.0.id()),
            "an unrelated process was signalled"
        );
        assert!(alive(holder));
    }
}

/// Kills a process this test does not own as a child, when the test ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[test]
fn signals_the_caller_ignores_stay_ignored_in_cmd() {
    let scratch = Scratch::new("nohup");
    let path = scratch.path("job.pid");
    let script = format!(
        "trap '' HUP; exec {PIDLOCK} run --file {} -- sh -c 'grep SigIgn /proc/self/status'",
        path.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run pidlock under an ignored SIGHUP");
    let text = String::from_utf8_lossy(&out.stdout);
    let mask = text
        .split_whitespace()
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {text:?}"));
    assert_eq!(mask & 1, 1, "SIGHUP is not ignored in CMD: {text:?}");
}

#[test]
fn kill_wait_ends_when_the_holder_is_gone_though_a_waiter_takes_the_lock_at_once() {
    let scratch = Scratch::new("kill-queued");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    let mut queued = Reaped(
        Command::new(PIDLOCK)
            .arg("run")
            .arg("--file")
            .arg(&path)
            .args(["--wait", "60", "--", "sleep", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a queued pidlock run"),
    );
    let waiting = lines_of(queued.0.stderr.take().expect("stderr"));
    let line = waiting.recv_timeout(BOUND).expect("the waiting line");
    assert!(line.contains("waiting"), "{line}");
    pidlock()
        .args(["kill", "--file"])
        .arg(&path)
        .args(["--wait", "20"])
        .assert()
        .code(0);
    assert!(exits_within(held.cmd, BOUND));
    drop(held);
}

#[test]
fn kill_reaches_cmd_while_the_file_still_names_the_wrapper() {
    let scratch = Scratch::new("kill-window");
    let path = scratch.path("job.pid");
    let script = r#"trap 'echo usr1' USR1
        while [ "$(cat "$1" 2>/dev/null)" != "$$" ]; do sleep 0.01; done
        echo "$$"
        while :; do sleep 0.05; done"#;
    let mut held = hold_with(&path, &[], script);
    // CMD runs on, holding the lock it inherited, once the wrapper is killed at the end.
    let _cmd = KillOnDrop(held.cmd);
    // The instant before `pidlock run` names CMD: the file names the wrapper.
    std::fs::write(&path, format!("{}\n", held.wrapper.0.id())).expect("rewrite the file");
    pidlock()
        .args(["kill", "--signal", "USR1", "--file"])
        .arg(&path)
        .assert()
        .code(0);
    // CMD got it (the wrapper would have died of it, and CMD with it).
    let line = held
        .stdout
        .recv_timeout(BOUND)
        .expect("CMD reports the signal");
    assert_eq!(line, "usr1");
    assert!(held.wrapper.running());
}
