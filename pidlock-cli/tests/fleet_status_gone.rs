//! Fleet mode (issue 14): `status` and `kill` after the wrapper has exited while the job's child
//! still holds the session (from the review of issue 14).
#![cfg(unix)]
#![cfg(feature = "postgres")]

mod common;
use pidlock_test_support::pg as pg_support;

use common::*;
use rustix::process::Signal;

/// CMD leaves a child that keeps the lock and exits; the wrapper exits normally. `status
/// --json` must not name the wrapper's PID, a process that no longer runs (and whose number the
/// kernel may hand to any unrelated process), as the holder's `pid`. The issue: "`status` names
/// a PID only when that process, or a process of its job, holds the lock". The text says the
/// job outlived its wrapper, and `kill` does not say the wrapper was killed.
#[test]
fn status_names_no_pid_that_is_not_running() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = "review14f-status";
    let out = pidlock()
        .args(["run", "--postgres", &pg.url(), "--name", name, "--"])
        .args([
            "sh",
            "-c",
            r#"sleep 300 </dev/null >/dev/null 2>&1 & echo "$!""#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let status = pidlock()
        .args(["status", "--postgres", &pg.url(), "--name", name, "--json"])
        .output()
        .unwrap();
    let text = pidlock()
        .args(["status", "--postgres", &pg.url(), "--name", name])
        .output()
        .unwrap();
    let kill = pidlock()
        .args(["kill", "--postgres", &pg.url(), "--name", name])
        .output()
        .unwrap();
    send(child, Signal::KILL);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("outlived its wrapper"),
        "status says the job outlived its wrapper: {text}"
    );
    let kill = String::from_utf8_lossy(&kill.stderr).into_owned();
    assert!(
        kill.contains("has exited") && !kill.contains("killed"),
        "kill says the wrapper was killed: {kill}"
    );
    let json = String::from_utf8_lossy(&status.stdout).into_owned();
    let pid: Option<u32> = json
        .split("\"pid\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|p| p.trim().parse().ok());
    assert!(
        pid.is_none_or(alive),
        "status names pid {pid:?}, which is not running, as the holder: {json}"
    );
}
