//! `pidlock kill`: only a holder the kernel confirms is signalled; a stale file's PID, which may
//! belong to an unrelated process by now, never is.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn the_holder_is_signalled_and_wait_reports_the_release() {
    let scratch = Scratch::new("kill-holder");
    let path = scratch.path("job.pid");
    let mut held = hold(&path, &[]);
    let out = pidlock()
        .arg("kill")
        .arg("--file")
        .arg(&path)
        .args(["--wait", "20"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!("pidlock: sent SIGTERM to pid {} (", held.cmd)),
        "{text}"
    );
    assert!(
        lines[0].ends_with(&format!("), which holds the lock file {}", path.display())),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "pidlock: the lock file {} was let go after ",
            path.display()
        )),
        "{text}"
    );
    // The TERM reached CMD itself, which died of it; the wrapper reports that as a shell does.
    assert_eq!(held.wrapper.wait().code(), Some(143));
    assert!(!alive(held.cmd) || exits_within(held.cmd, BOUND));
}

#[test]
fn signal_picks_the_signal() {
    let scratch = Scratch::new("kill-signal");
    let path = scratch.path("job.pid");
    let script = r#"trap "exit 10" INT; trap "exit 11" TERM
        while [ "$(cat "$1" 2>/dev/null)" != "$$" ]; do sleep 0.01; done; echo "$$"
        while :; do sleep 0.05; done"#;
    let mut held = hold_with(&path, &[], script);
    pidlock()
        .arg("kill")
        .arg("--file")
        .arg(&path)
        .args(["--signal", "INT"])
        .assert()
        .code(0);
    assert_eq!(held.wrapper.wait().code(), Some(10));
}

#[test]
fn nothing_held_is_1_and_a_stale_pid_reused_by_a_bystander_is_never_signalled() {
    let scratch = Scratch::new("kill-stale");
    let path = scratch.path("job.pid");
    pidlock()
        .arg("kill")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(1)
        .stderr(format!(
            "pidlock: nothing holds the lock file {}\n",
            path.display()
        ));

    // The holder crashed, and its PID now belongs to an unrelated process.
    let mut bystander = bystander();
    fs::write(&path, format!("{}\n", bystander.id())).expect("write the stale file");
    pidlock()
        .arg("kill")
        .arg("--file")
        .arg(&path)
        .args(["--signal", "KILL"])
        .assert()
        .code(1)
        .stderr(format!(
            "pidlock: nothing holds the lock file {}; the stale file names pid {}, which was not \
             signalled\n",
            path.display(),
            bystander.id()
        ));
    assert!(bystander.running(), "the bystander was signalled");
}

#[test]
fn a_held_lock_whose_file_names_an_unrelated_process_is_not_signalled() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("kill-unconfirmed");
    let path = scratch.path("job.pid");
    let mut bystander = bystander();
    fs::write(&path, format!("{}\n", bystander.id())).expect("write the file");
    // flock(1) holds the lock and leaves the file as it was: the PID in it is not the holder.
    let mut flock = Reaped(
        Command::new("flock")
            .arg(&path)
            .args(["-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start flock"),
    );
    let locked = lines_of(flock.0.stdout.take().expect("stdout"));
    assert_eq!(locked.recv_timeout(BOUND).as_deref(), Ok("locked"));
    let out = pidlock()
        .arg("kill")
        .arg("--file")
        .arg(&path)
        .args(["--signal", "KILL"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let line = one_line(&out.stderr);
    assert!(
        line.starts_with(&format!("pidlock: not signalling pid {}: ", bystander.id())),
        "{line}"
    );
    assert!(
        line.contains("neither that process nor a child of it"),
        "{line}"
    );
    assert!(bystander.running(), "the bystander was signalled");
    assert!(flock.running(), "the flock holder was signalled");
}

#[test]
fn wait_that_runs_out_is_3() {
    let scratch = Scratch::new("kill-timeout");
    let path = scratch.path("job.pid");
    let stubborn = r#"trap "" TERM
        while [ "$(cat "$1" 2>/dev/null)" != "$$" ]; do sleep 0.01; done; echo "$$"; exec cat"#;
    let held = hold_with(&path, &[], stubborn);
    let out = pidlock()
        .arg("kill")
        .arg("--file")
        .arg(&path)
        .args(["--wait", "0.3"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        text.ends_with(&format!(
            "pidlock: the lock file {} is still held after 300ms\n",
            path.display()
        )),
        "{text}"
    );
    assert!(held.release().success());
}
