//! `pidlock kill` after the wrapper of a job was SIGKILLed (the OOM killer, systemd's final
//! kill): CMD holds the lock through the descriptor it inherited, so it is the holder, and
//! `kill` and `kill --group` must reach it and its job, although the process that took the lock
//! (the wrapper) is gone and CMD is no longer its child.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// A job whose CMD (a shell) starts a long child, and says the child's PID once the PID file
/// names CMD (the wrapper has rewritten it); then waits for the child.
const JOB: &str = r#"sleep 300 </dev/null >/dev/null 2>&1 & while [ "$(cat "$1")" != "$$" ]; do sleep 0.01; done; echo "$!"; wait"#;

/// The job of a wrapper that has been SIGKILLed and reaped: the PID file names CMD.
struct Orphaned {
    wrapper: u32,
    cmd: KillOnDrop,
    child: KillOnDrop,
}

fn orphaned_job(path: &Path) -> Orphaned {
    let mut wrapper = Reaped(
        Command::new(PIDLOCK)
            .arg("run")
            .arg("--file")
            .arg(path)
            .args(["--", "sh", "-c", JOB, "sh"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pidlock run"),
    );
    let lines = lines_of(wrapper.0.stdout.take().expect("stdout"));
    let child: u32 = lines
        .recv_timeout(BOUND)
        .expect("the job's child")
        .trim()
        .parse()
        .expect("a PID");
    let child = KillOnDrop(child);
    let cmd: u32 = std::fs::read_to_string(path)
        .expect("the PID file")
        .trim()
        .parse()
        .expect("a PID");
    let cmd = KillOnDrop(cmd);
    let _ = wrapper.0.kill();
    wrapper.wait();
    Orphaned {
        wrapper: wrapper.id(),
        cmd,
        child,
    }
}

/// `pidlock kill --file PATH ARGS...`: its exit status and stderr.
fn kill(path: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = pidlock()
        .arg("kill")
        .arg("--file")
        .arg(path)
        .args(args)
        .output()
        .expect("pidlock kill");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signals CMD (SIGCONT, harmless), then ends the whole job through its group and waits until
/// the lock is let go: every process of the job is gone, and the lock is free.
fn kill_reaches_cmd_and_its_group(path: &Path, job: &Orphaned) {
    let (code, said) = kill(path, &["--signal", "CONT"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("sent SIGCONT to pid {}", job.cmd.0)),
        "{said}"
    );
    let (code, said) = kill(path, &["--group", "--signal", "KILL", "--wait", "20"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("the process group of pid {}", job.cmd.0)),
        "{said}"
    );
    assert!(exits_within(job.cmd.0, BOUND));
    assert!(exits_within(job.child.0, BOUND));
    pidlock()
        .args(["run", "--file"])
        .arg(path)
        .args(["--", "true"])
        .assert()
        .success();
}

#[test]
fn kill_and_kill_group_reach_the_job_of_a_killed_wrapper() {
    let scratch = Scratch::new("killed-wrapper");
    let path = scratch.path("job.pid");
    let job = orphaned_job(&path);
    let status = pidlock()
        .args(["status", "--file"])
        .arg(&path)
        .output()
        .expect("status");
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("held by pid {}", job.cmd.0)),
        "{said}"
    );
    kill_reaches_cmd_and_its_group(&path, &job);
}

/// The wrapper died in the instant between starting CMD and naming it in the file: the file
/// names the dead wrapper, whose CMD holds the lock the wrapper took.
#[test]
fn kill_reaches_the_job_when_the_file_names_the_dead_wrapper() {
    let scratch = Scratch::new("killed-wrapper-unnamed");
    let path = scratch.path("job.pid");
    let job = orphaned_job(&path);
    // The lock is advisory: the file's text can be put back to what it was before the rewrite.
    std::fs::write(&path, format!("{}\n", job.wrapper)).expect("name the wrapper");
    assert!(!alive(job.wrapper), "the wrapper was reaped");
    kill_reaches_cmd_and_its_group(&path, &job);
}
