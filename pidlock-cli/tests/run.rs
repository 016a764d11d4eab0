//! `pidlock run`: the lock lasts exactly as long as CMD, the file names CMD, signals reach CMD,
//! CMD dies with the wrapper, and conflicts and bad input get one line and the documented
//! exit status.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;
use predicates::prelude::*;
use rustix::process::Signal;

#[test]
fn the_pid_file_names_cmd_and_the_exit_status_is_cmds() {
    let scratch = Scratch::new("names-cmd");
    let path = scratch.path("job.pid");
    // Exits 42 once it sees its own PID in the file (bounded: 10 s of tries).
    let script =
        r#"for i in $(seq 1000); do [ "$(cat "$1")" = "$$" ] && exit 42; sleep 0.01; done; exit 1"#;
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "sh", "-c", script, "sh"])
        .arg(&path)
        .assert()
        .code(42)
        .stderr("");
    assert!(!path.exists(), "the file is removed on release");
}

#[test]
fn a_conflict_is_one_line_naming_the_holder_and_exits_1_or_the_code_asked_for() {
    let scratch = Scratch::new("conflict");
    let path = scratch.path("backup.pid");
    let held = hold(&path, &[]);
    let out = pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "true"])
        .assert()
        .code(1)
        .stdout("")
        .get_output()
        .clone();
    let line = one_line(&out.stderr);
    let expected_start = format!(
        "pidlock: backup is already running (pid {}, since ",
        held.cmd
    );
    assert!(line.starts_with(&expected_start), "{line}");
    // The holder's command line, from /proc, and where the lock is.
    assert!(
        line.ends_with(&format!(
            ": sh -c {WAIT_FOR_MY_PID} sh {p}; lock file {p})",
            p = path.display()
        )) || line.ends_with(&format!(": cat; lock file {})", path.display())),
        "{line}"
    );

    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--conflict-exit-code", "75", "--", "true"])
        .assert()
        .code(75);
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--quiet", "--", "true"])
        .assert()
        .code(1)
        .stderr("");
    assert!(held.release().success());
}

#[test]
fn wait_takes_the_lock_when_the_holder_lets_go_and_says_so_once_off_a_terminal() {
    let scratch = Scratch::new("wait-taken");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    let mut waiter = Reaped(
        Command::new(PIDLOCK)
            .arg("run")
            .arg("--file")
            .arg(&path)
            .args(["--wait", "30", "--", "echo", "taken"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the waiter"),
    );
    let stdout = lines_of(waiter.0.stdout.take().expect("stdout"));
    let stderr = lines_of(waiter.0.stderr.take().expect("stderr"));
    let line = stderr.recv_timeout(BOUND).expect("the waiting line");
    assert!(
        line.starts_with(&format!(
            "pidlock: waiting for job (pid {}, since ",
            held.cmd
        )),
        "{line}"
    );
    assert!(line.ends_with(", limit 30s"), "{line}");
    assert!(held.release().success());
    assert_eq!(stdout.recv_timeout(BOUND).as_deref(), Ok("taken"));
    assert!(waiter.wait().success());
    // No live line to erase off a terminal: nothing more was written.
    assert!(stderr.recv_timeout(BOUND).is_err());
}

#[test]
fn wait_gives_up_at_its_limit_with_the_conflict_code() {
    let scratch = Scratch::new("wait-limit");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    let out = pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--wait", "0.2", "--conflict-exit-code", "9", "--", "true"])
        .assert()
        .code(9)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("pidlock: waiting for job ("), "{text}");
    assert!(
        lines[1].starts_with(&format!(
            "pidlock: job is still running after 200ms (pid {}",
            held.cmd
        )),
        "{text}"
    );
    assert!(held.release().success());
}

/// `--no-inherit` is `flock -o`: what the job leaves running holds nothing, by request.
#[test]
fn with_no_inherit_the_lock_ends_with_cmd_though_its_background_children_live_on() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("background");
    let path = scratch.path("job.pid");
    let bg = scratch.path("bg.pid");
    // CMD starts a long sleep in the background, with no descriptor of ours, and exits.
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args([
            "--keep-file",
            "--no-inherit",
            "--",
            "sh",
            "-c",
            r#"sleep 300 </dev/null >/dev/null 2>&1 & echo $! > "$1""#,
            "sh",
        ])
        .arg(&bg)
        .assert()
        .success();
    let sleeper: u32 = fs::read_to_string(&bg)
        .expect("the background PID")
        .trim()
        .parse()
        .expect("a PID");
    let still_running = alive(sleeper);
    // The lock is free at once, for pidlock and for flock(1) on the same (kept) file.
    let flock = Command::new("flock")
        .arg("-n")
        .arg(&path)
        .arg("true")
        .status()
        .expect("run flock");
    pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(3)
        .stdout("free\n");
    send(sleeper, Signal::KILL);
    assert!(still_running, "the background child was still running");
    assert!(flock.success(), "flock -n got the lock while the child ran");
}

#[test]
fn signals_reach_cmd_and_the_status_is_cmds() {
    let scratch = Scratch::new("signals");
    let path = scratch.path("job.pid");
    let traps = r#"trap "exit 10" INT; trap "exit 11" TERM; trap "exit 12" HUP; trap "exit 13" QUIT
        while [ "$(cat "$1" 2>/dev/null)" != "$$" ]; do sleep 0.01; done; echo "$$"
        while :; do sleep 0.05; done"#;
    for (signal, code) in [
        (Signal::INT, 10),
        (Signal::TERM, 11),
        (Signal::HUP, 12),
        (Signal::QUIT, 13),
    ] {
        let mut held = hold_with(&path, &[], traps);
        send(held.wrapper.id(), signal);
        let status = held.wrapper.wait();
        assert_eq!(status.code(), Some(code), "{signal:?}: {status}");
        assert!(!path.exists());
    }
}

#[test]
fn a_cmd_killed_by_a_signal_gives_128_plus_its_number() {
    let scratch = Scratch::new("killed-cmd");
    let path = scratch.path("job.pid");
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "sh", "-c", "kill -KILL $$"])
        .assert()
        .code(137);
    // SIGTERM passed on to a command that does not catch it.
    let mut held = hold(&path, &[]);
    send(held.wrapper.id(), Signal::TERM);
    assert_eq!(held.wrapper.wait().code(), Some(143));
}

#[test]
fn with_no_inherit_a_killed_wrapper_takes_cmd_down_and_the_lock_is_free() {
    let scratch = Scratch::new("sigkill-wrapper");
    let path = scratch.path("job.pid");
    let mut held = hold(&path, &["--no-inherit"]);
    send(held.wrapper.id(), Signal::KILL);
    held.wrapper.wait();
    assert!(
        exits_within(held.cmd, BOUND),
        "CMD outlived its wrapper and its lock"
    );
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "true"])
        .assert()
        .success();
}

#[test]
fn bad_input_gets_one_line_and_exit_1_or_2_for_a_usage_error() {
    let scratch = Scratch::new("bad-input");
    let path = scratch.path("job.pid");
    let run = |args: &[&str]| {
        let mut command = pidlock();
        command.arg("run").arg("--file").arg(&path).args(args);
        command
    };
    let line = |out: std::process::Output| one_line(&out.stderr);

    let missing = run(&[]).assert().code(2).get_output().clone();
    assert!(line(missing).starts_with("pidlock: no command to run"));

    let not_found = run(&["--", "no-such-command-pidlock"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert_eq!(
        line(not_found),
        "pidlock: cannot run `no-such-command-pidlock`: no such command"
    );

    let script = scratch.path("not-executable.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").expect("write the script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).expect("chmod");
    let not_exec = run(&["--", script.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(line(not_exec).ends_with("it is not executable (permission denied)"));
    assert!(!path.exists(), "the lock is let go when CMD cannot start");

    let link = scratch.path("link.pid");
    std::os::unix::fs::symlink(scratch.path("target.pid"), &link).expect("symlink");
    let symlink = pidlock()
        .arg("run")
        .arg("--file")
        .arg(&link)
        .args(["--", "true"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(line(symlink).contains("symbolic link"));
    assert!(
        !scratch.path("target.pid").exists(),
        "nothing followed the link"
    );

    let usage = run(&["--wait", "soon", "--", "true"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(line(usage).starts_with("pidlock: invalid value 'soon' for '--wait"));

    pidlock()
        .args(["run", "--", "true"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--file").and(predicate::str::ends_with("--help)\n")));
}

#[test]
fn an_unreadable_directory_is_an_error_not_a_free_lock() {
    let scratch = Scratch::new("unreadable-dir");
    let closed = scratch.path("closed");
    fs::create_dir(&closed).expect("mkdir");
    let root = rustix::process::geteuid().is_root();
    // Closed to the command: to nobody (0700, ours) when we are root, who may enter any
    // directory; to ourselves (0000) otherwise.
    let mode = if root { 0o700 } else { 0o000 };
    fs::set_permissions(&closed, fs::Permissions::from_mode(mode)).expect("chmod");
    // Opened again however the test ends, so that the scratch directory can be removed.
    struct Reopen<'a>(&'a std::path::Path);
    impl Drop for Reopen<'_> {
        fn drop(&mut self) {
            let _ = fs::set_permissions(self.0, fs::Permissions::from_mode(0o700));
        }
    }
    let _reopen = Reopen(&closed);
    fs::set_permissions(&scratch.dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = closed.join("job.pid");
    let mut command = if root {
        let mut command = assert_cmd::Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", PIDLOCK]);
        command
    } else {
        pidlock()
    };
    let out = command
        .timeout(BOUND)
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "true"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let line = one_line(&out.stderr);
    assert!(
        line.starts_with(&format!("pidlock: cannot lock {}", path.display())),
        "{line}"
    );
    assert!(line.contains("Permission denied"), "{line}");
}

// With the feature (the default), tests/postgres.rs covers `--postgres`.
#[cfg(not(feature = "postgres"))]
#[test]
fn the_fleet_lock_parses_but_says_it_is_not_built_in() {
    let out = pidlock()
        .args([
            "run",
            "--postgres",
            "host=db",
            "--name",
            "backup",
            "--",
            "true",
        ])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(one_line(&out.stderr).contains("built without PostgreSQL support"));
    pidlock()
        .args(["status", "--postgres", "host=db"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--name"));
}
