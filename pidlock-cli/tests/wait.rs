//! `pidlock wait`: blocks until nobody holds the lock, without taking it.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn a_free_lock_returns_0_at_once_and_creates_nothing() {
    let scratch = Scratch::new("wait-free");
    let path = scratch.path("job.pid");
    pidlock()
        .arg("wait")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(0)
        .stderr("");
    assert!(!path.exists());
}

#[test]
fn a_held_lock_times_out_with_1_and_is_waited_for_until_released() {
    let scratch = Scratch::new("wait-held");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    pidlock()
        .arg("wait")
        .arg("--file")
        .arg(&path)
        .args(["--timeout", "0.2"])
        .assert()
        .code(1)
        .stderr(format!(
            "pidlock: the lock file {} is still held after 200ms\n",
            path.display()
        ));

    let mut waiter = Reaped(
        Command::new(PIDLOCK)
            .arg("wait")
            .arg("--file")
            .arg(&path)
            .stdout(Stdio::null())
            // Into the test's log: a failure says why.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pidlock wait"),
    );
    let cmd = held.cmd;
    assert!(held.release().success());
    assert!(waiter.wait().success());
    assert!(!alive(cmd) || exits_within(cmd, BOUND));
    // It never took the lock: nothing it left behind.
    assert!(!path.exists());
}

#[test]
fn a_waiter_outlasts_a_handoff_to_the_next_holder() {
    let scratch = Scratch::new("wait-handoff");
    let path = scratch.path("job.pid");
    let first = hold(&path, &[]);
    // A second job queues for the lock, and will hold it until its stdin closes.
    let mut second = Reaped(
        Command::new(PIDLOCK)
            .arg("run")
            .arg("--file")
            .arg(&path)
            .args([
                "--wait",
                "forever",
                "--",
                "sh",
                "-c",
                "echo second; exec cat",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the second job"),
    );
    let second_out = lines_of(second.0.stdout.take().expect("stdout"));
    assert!(first.release().success());
    assert_eq!(second_out.recv_timeout(BOUND).as_deref(), Ok("second"));
    pidlock()
        .arg("wait")
        .arg("--file")
        .arg(&path)
        .args(["--timeout", "0.3"])
        .assert()
        .code(1);
    drop(second.0.stdin.take());
    assert!(second.wait().success());
    pidlock()
        .arg("wait")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(0);
}

#[test]
fn a_path_that_cannot_be_a_lock_is_an_error_4() {
    let scratch = Scratch::new("wait-error");
    let path = scratch.path("link.pid");
    std::os::unix::fs::symlink("/etc/passwd", &path).expect("symlink");
    let out = pidlock()
        .arg("wait")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(4)
        .get_output()
        .clone();
    assert!(one_line(&out.stderr).contains("symbolic link"));
}
