//! The job holds the lock: CMD and every process it starts inherit the locked descriptor, so a
//! killed wrapper never lets a second copy in while any part of the job runs, and a job killed
//! as a whole frees the lock at once. Signals reach CMD exactly once, whichever process group
//! they are sent to. `flock(1)` is the control: the same scenario must behave the same with it.
// Unix only: the command is a Unix program.
#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use rustix::process::Signal;

/// `pidlock run --file PATH EXTRA... -- sh -c SCRIPT sh PATH`.
fn pidlock_run(path: &Path, extra: &[&str], script: &str) -> Command {
    let mut command = Command::new(PIDLOCK);
    command
        .arg("run")
        .arg("--file")
        .arg(path)
        .args(extra)
        .args(["--", "sh", "-c", script, "sh"])
        .arg(path);
    command
}

/// `flock -n PATH sh -c SCRIPT`: the control.
fn flock_run(path: &Path, script: &str) -> Command {
    let mut command = Command::new("flock");
    command.arg("-n").arg(path).args(["sh", "-c", script, "sh"]);
    command
}

/// Whether a second copy starts now, without waiting: it prints `second` if it runs.
fn second_copy_starts(path: &Path) -> bool {
    common::second_copy_starts(&|extra, script| pidlock_run(path, extra, script))
}

/// The killed-wrapper scenario of the issue, once, on the PID file `path`.
fn killed_wrapper_scenario(path: &Path, first: &mut Command) -> bool {
    common::killed_wrapper_scenario(&|extra, script| pidlock_run(path, extra, script), first)
}

#[test]
fn a_killed_wrappers_job_keeps_the_lock_until_its_last_process_exits() {
    let scratch = Scratch::new("job-killed-wrapper");
    let path = scratch.path("job.pid");
    let overlaps = (0..REPETITIONS)
        .filter(|_| killed_wrapper_scenario(&path, &mut pidlock_run(&path, &[], SCRIPT_WITH_CHILD)))
        .count();
    assert_eq!(
        overlaps, 0,
        "second copies ran beside the first job's child"
    );
    // The control: flock(1), whose CMD inherits the lock, behaves the same.
    let control = (0..REPETITIONS)
        .filter(|_| killed_wrapper_scenario(&path, &mut flock_run(&path, SCRIPT_WITH_CHILD)))
        .count();
    assert_eq!(control, 0, "flock(1) let second copies in");
}

/// `--no-inherit` is today's behaviour, by request: the wrapper alone holds the lock, so a
/// killed wrapper lets a second copy in beside the child that CMD left running.
#[test]
fn with_no_inherit_a_killed_wrapper_frees_the_lock_beside_cmds_child() {
    let scratch = Scratch::new("job-no-inherit");
    let path = scratch.path("job.pid");
    let job = Started::spawn(&mut pidlock_run(
        &path,
        &["--no-inherit"],
        SCRIPT_WITH_CHILD,
    ));
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    let mut job = job;
    send(job.process.id(), Signal::KILL);
    job.process.wait();
    assert!(second_copy_starts(&path), "the lock went with the wrapper");
    assert!(
        alive(child),
        "and CMD's child ran on beside the second copy"
    );
    send(child, Signal::KILL);
}

/// The job's processes: CMD (the PID in the file, also the job's process group) and its child.
fn start_job(path: &Path) -> (Started, u32, u32) {
    let job = Started::spawn(&mut pidlock_run(
        path,
        &[],
        r#"sleep 300 </dev/null & echo "$!"; while [ "$(cat "$1")" != "$$" ]; do sleep 0.01; done; echo "$$"; wait"#,
    ));
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    let cmd: u32 = job.line().trim().parse().expect("CMD's PID");
    (job, cmd, child)
}

/// Ends the whole job by SIGKILL to the groups in `groups`, and checks that the lock is never
/// free while a process of the job lives, and is free as soon as they are all gone.
fn kill_the_whole_job(groups: impl Fn(u32, u32) -> Vec<u32>) {
    let scratch = Scratch::new("job-kill-group");
    let path = scratch.path("job.pid");
    let (mut job, cmd, child) = start_job(&path);
    assert!(!second_copy_starts(&path));
    for pgid in groups(job.process.id(), cmd) {
        kill_group(pgid, Signal::KILL);
    }
    // Every try that gets the lock must find the whole job gone. The wrapper does not count:
    // once CMD is reaped it closes its copy of the lock and tidies up, and may still be
    // exiting when a second copy starts, which then runs beside no part of the job.
    loop {
        let free = second_copy_starts(&path);
        let gone = [cmd, child]
            .iter()
            .all(|&pid| exits_within(pid, std::time::Duration::ZERO));
        assert!(!free || gone, "the lock was free while the job ran");
        if gone {
            job.process.wait();
            // All gone: free at once, with no waiting.
            assert!(second_copy_starts(&path), "the lock outlived its job");
            return;
        }
        assert!(exits_within(child, BOUND) && exits_within(cmd, BOUND));
    }
}

#[test]
fn killing_the_jobs_process_group_frees_the_lock_at_once() {
    kill_the_whole_job(|_wrapper, cmd| vec![cmd]);
}

#[test]
fn killing_the_wrappers_and_the_jobs_groups_frees_the_lock_at_once() {
    kill_the_whole_job(|wrapper, cmd| vec![wrapper, cmd]);
}

/// SIGKILL to the wrapper's group alone leaves the job running: it keeps the lock until it
/// ends.
#[test]
fn killing_the_wrappers_group_leaves_the_lock_with_the_job() {
    let scratch = Scratch::new("job-kill-wrapper-group");
    let path = scratch.path("job.pid");
    let (mut job, cmd, child) = start_job(&path);
    kill_group(job.process.id(), Signal::KILL);
    job.process.wait();
    assert!(alive(cmd) && alive(child));
    assert!(!second_copy_starts(&path), "the lock went with the wrapper");
    let status = Command::new(PIDLOCK)
        .arg("status")
        .arg("--file")
        .arg(&path)
        .output()
        .expect("pidlock status");
    assert_eq!(status.status.code(), Some(0));
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.starts_with(&format!("held by pid {cmd}")), "{said}");
    kill_group(cmd, Signal::KILL);
    assert!(exits_within(child, BOUND) && exits_within(cmd, BOUND));
    assert!(second_copy_starts(&path));
}

/// CMD counts each SIGINT and SIGUSR1 it gets. `wait` is interrupted by a trapped signal, so
/// each is handled as it comes (two that were pending together would be counted once).
const COUNTS_SIGNALS: &str = r#"trap 'echo INT' INT; trap 'echo USR1' USR1
    sleep 300 </dev/null & p=$!
    while [ "$(cat "$1")" != "$$" ]; do sleep 0.01; done; echo ready
    while kill -0 "$p" 2>/dev/null; do wait "$p"; done"#;

/// Sends SIGINT with `send_int`, then SIGUSR1 to the wrapper, which passes it on after any
/// SIGINT it passed on: CMD must have counted exactly one SIGINT by the time it says USR1.
fn sigint_reaches_cmd_once(send_int: impl Fn(u32, u32)) {
    let scratch = Scratch::new("job-sigint");
    let path = scratch.path("job.pid");
    let mut run = pidlock_run(&path, &[], COUNTS_SIGNALS);
    let job = Started::spawn(&mut run);
    assert_eq!(job.line(), "ready");
    let cmd: u32 = fs::read_to_string(&path)
        .expect("the PID file")
        .trim()
        .parse()
        .expect("CMD's PID");
    // CMD leads a process group of its own, which killing the wrapper leaves running.
    let _job_group = KillGroupOnDrop(cmd);
    send_int(job.process.id(), cmd);
    assert_eq!(job.line(), "INT");
    send(job.process.id(), Signal::USR1);
    let mut seen = Vec::new();
    loop {
        let line = job.line();
        if line == "USR1" {
            break;
        }
        seen.push(line);
    }
    assert!(seen.is_empty(), "CMD got more: {seen:?}");
    kill_group(cmd, Signal::KILL);
    let mut job = job;
    job.process.wait();
}

#[test]
fn a_sigint_to_the_wrappers_process_group_reaches_cmd_once() {
    sigint_reaches_cmd_once(|wrapper, _cmd| kill_group(wrapper, Signal::INT));
}

#[test]
fn a_sigint_to_the_jobs_process_group_reaches_cmd_once() {
    sigint_reaches_cmd_once(|_wrapper, cmd| kill_group(cmd, Signal::INT));
}

#[test]
fn a_sigint_to_the_wrapper_alone_reaches_cmd_once() {
    sigint_reaches_cmd_once(|wrapper, _cmd| send(wrapper, Signal::INT));
}

/// A set-user-ID CMD loses the parent-death signal at exec; with the lock inherited, it holds
/// the lock itself. The program is a set-user-ID copy of `sleep` owned by `nobody`, made here.
#[test]
fn a_set_user_id_cmd_keeps_the_lock_when_the_wrapper_is_killed() {
    pidlock_test_support::require_root!("makes a set-user-ID program of another user");
    let scratch = Scratch::new("job-setuid");
    let path = scratch.path("job.pid");
    let program = set_user_id_sleep(&scratch);

    for (extra, inherits) in [(&[][..], true), (&["--no-inherit"][..], false)] {
        let mut first = Command::new(PIDLOCK);
        first
            .arg("run")
            .arg("--file")
            .arg(&path)
            .args(extra)
            .arg("--")
            .arg(&program)
            .arg("300");
        let mut job = Started::spawn(&mut first);
        // Wait for the exec: the process in the file runs as nobody.
        let cmd = loop {
            let named = fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            if let Some(pid) = named.filter(|&pid| pid != job.process.id())
                && fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                    s.lines()
                        .any(|l| l.starts_with("Uid:") && l.contains("65534"))
                })
            {
                break pid;
            }
            assert!(job.process.running(), "the job ended early");
            std::thread::yield_now();
        };
        send(job.process.id(), Signal::KILL);
        job.process.wait();
        if inherits {
            assert!(alive(cmd), "CMD runs on");
            assert!(
                !second_copy_starts(&path),
                "a second copy ran beside the set-user-ID CMD"
            );
        } else if alive(cmd) {
            // What --no-inherit gives up: the death signal was dropped at exec, and CMD runs
            // on without the lock.
            assert!(second_copy_starts(&path));
        }
        send(cmd, Signal::KILL);
        assert!(exits_within(cmd, BOUND));
        assert!(second_copy_starts(&path));
    }
}

#[test]
fn no_command_is_a_usage_error_2() {
    let scratch = Scratch::new("job-no-cmd");
    let path = scratch.path("job.pid");
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(2);
    pidlock()
        .args(["run", "--file"])
        .arg(&path)
        .args(["--wait", "soon", "--", "true"])
        .assert()
        .code(2);
    pidlock()
        .args(["run", "--no-such-flag", "--file"])
        .arg(&path)
        .args(["--", "true"])
        .assert()
        .code(2);
    assert!(!path.exists());
}

/// `pidlock ARGS...` on the lock at `path`, its exit status and stderr.
fn pidlock_on(path: &Path, subcommand: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(PIDLOCK)
        .arg(subcommand)
        .arg("--file")
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pidlock");
    let said = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    (out.status.code(), said.into_owned())
}

/// `kill --wait` waits for the job, not for the process it signalled: a shell-script CMD dies of
/// the SIGTERM, its child still holds the lock.
#[test]
fn kill_wait_returns_only_once_the_shell_scripts_child_has_exited() {
    let scratch = Scratch::new("job-kill-wait");
    let path = scratch.path("job.pid");
    let (mut job, cmd, child) = start_job(&path);
    let (code, said) = pidlock_on(&path, "kill", &["--wait", "0.3"]);
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains(&format!("sent SIGTERM to pid {cmd}")),
        "{said}"
    );
    assert!(exits_within(cmd, BOUND), "CMD died of the SIGTERM");
    assert!(alive(child));
    job.process.wait();
    let (code, said) = pidlock_on(&path, "wait", &["--timeout", "0.3"]);
    assert_eq!(code, Some(1), "{said}");
    send(child, Signal::KILL);
    assert!(exits_within(child, BOUND));

    // Once more, waiting without a limit, with the child ended meanwhile.
    let (mut job, _cmd, child) = start_job(&path);
    let mut kill = Command::new(PIDLOCK);
    kill.arg("kill")
        .arg("--file")
        .arg(&path)
        .args(["--wait", "60"]);
    let (mut kill, errors) = Started::spawn_with_stderr(kill.stderr(Stdio::piped()));
    let said = errors.recv_timeout(BOUND).expect("the sent line");
    assert!(said.contains("sent SIGTERM"), "{said}");
    assert!(
        kill.process.running(),
        "kill --wait returned while the child ran"
    );
    send(child, Signal::KILL);
    assert!(kill.process.wait().success());
    assert!(exits_within(child, std::time::Duration::ZERO));
    job.process.wait();
    assert!(second_copy_starts(&path));
}

/// `kill --wait` and `wait` against a holder that is not pidlock's: `flock(1)`, whose command
/// (a shell with a child) holds the lock after `flock(1)` itself is gone.
#[test]
fn kill_wait_and_wait_never_say_let_go_while_a_flock_holds_the_lock() {
    let scratch = Scratch::new("job-flock-holder");
    let path = scratch.path("job.pid");
    let mut command = Command::new("flock");
    command.arg(&path).args(["sh", "-c", SCRIPT_WITH_CHILD]);
    let mut flock = Started::spawn(&mut command);
    let child: u32 = flock.line().trim().parse().expect("the child's PID");
    let (code, said) = pidlock_on(&path, "wait", &["--timeout", "0.3"]);
    assert_eq!(code, Some(1), "{said}");
    let (code, said) = pidlock_on(&path, "kill", &["--wait", "0.3"]);
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains(&format!("sent SIGTERM to pid {}", flock.process.id())),
        "{said}"
    );
    flock.process.wait();
    // flock(1) is gone; its command and the command's child hold the lock.
    assert!(alive(child));
    let (code, said) = pidlock_on(&path, "wait", &["--timeout", "0.3"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(!second_copy_starts(&path));
    kill_group(flock.process.id(), Signal::KILL);
    assert!(exits_within(child, BOUND));
    let (code, said) = pidlock_on(&path, "wait", &["--timeout", "60"]);
    assert_eq!(code, Some(0), "{said}");
}

/// A kept file that a `flock(1)` script holds still names the PID of an earlier holder, by now
/// an unrelated live process: `status` must not name it as the holder.
#[test]
fn status_never_names_a_stale_pid_of_a_kept_file_that_flock_holds() {
    let scratch = Scratch::new("job-status-stale");
    let path = scratch.path("job.pid");
    let bystander = bystander();
    fs::write(&path, format!("{}\n", bystander.id())).expect("write the stale PID");
    let mut command = Command::new("flock");
    command
        .arg(&path)
        .args(["sh", "-c", r#"echo "$$"; exec sleep 300 </dev/null"#]);
    let flock = Started::spawn(&mut command);
    let holder: u32 = flock.line().trim().parse().expect("the holder's PID");
    let out = Command::new(PIDLOCK)
        .arg("status")
        .arg("--file")
        .arg(&path)
        .output()
        .expect("pidlock status");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.starts_with("held by a process that did not write the PID file"),
        "{said}"
    );
    assert!(said.contains(&holder.to_string()), "{said}");
    assert!(
        !said.contains(&format!("pid {} ", bystander.id())) || said.contains("does not hold it"),
        "{said}"
    );
    let json = Command::new(PIDLOCK)
        .args(["status", "--json", "--file"])
        .arg(&path)
        .output()
        .expect("pidlock status --json");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(json["pid"], serde_json::Value::Null);
    assert_eq!(json["file_pid"], bystander.id());
    assert!(
        json["holder_pids"]
            .as_array()
            .is_some_and(|pids| pids.contains(&holder.into()))
    );
    kill_group(flock.process.id(), Signal::KILL);
}

/// `kill --group` signals the job's whole process group (CMD leads it), children included, and
/// `--wait` sees the lock let go once they are all gone.
#[test]
fn kill_group_ends_the_whole_job_and_wait_sees_the_lock_go() {
    let scratch = Scratch::new("job-kill-group-flag");
    let path = scratch.path("job.pid");
    let (mut job, cmd, child) = start_job(&path);
    let (code, said) = pidlock_on(
        &path,
        "kill",
        &["--group", "--signal", "KILL", "--wait", "60"],
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("sent SIGKILL to the process group of pid {cmd}")),
        "{said}"
    );
    assert!(
        exits_within(child, std::time::Duration::ZERO),
        "the child got it too"
    );
    job.process.wait();
    assert!(second_copy_starts(&path));
    // A holder that leads no group of its own (flock(1) in the test's group) gets nothing.
    let mut flock = Command::new("flock");
    flock.arg(&path).args(["sh", "-c", SCRIPT_WITH_CHILD]);
    let mut flock = Reaped(
        flock
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flock"),
    );
    let lines = lines_of(flock.0.stdout.take().expect("stdout"));
    let child: u32 = lines
        .recv_timeout(BOUND)
        .expect("the child")
        .trim()
        .parse()
        .expect("a PID");
    let (code, said) = pidlock_on(&path, "kill", &["--group"]);
    assert_eq!(code, Some(4), "{said}");
    send(child, Signal::KILL);
    flock.wait();
}

/// CMD has exited and left a child holding the lock: `status` still sees the job hold it, and
/// `kill --group` reaches the child through the group CMD led (its number is CMD's PID, in the
/// file), while a plain `kill` has no process to signal.
#[test]
fn a_job_whose_cmd_has_exited_is_still_seen_and_reached_through_its_group() {
    let scratch = Scratch::new("job-orphaned");
    let path = scratch.path("job.pid");
    let out = Command::new(PIDLOCK)
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args([
            "--",
            "sh",
            "-c",
            r#"sleep 300 </dev/null >/dev/null 2>&1 & echo "$!""#,
        ])
        .output()
        .expect("run the job");
    assert!(out.status.success());
    let child: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a PID");
    assert!(alive(child));
    let cmd: u32 = fs::read_to_string(&path)
        .expect("the file stays while the job holds the lock")
        .trim()
        .parse()
        .expect("CMD's PID");
    let (code, said) = pidlock_on(&path, "status", &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("held through pid {child}")),
        "{said}"
    );
    assert!(!second_copy_starts(&path));
    let (code, said) = pidlock_on(&path, "kill", &[]);
    assert_eq!(code, Some(4), "{said}");
    assert!(alive(child));
    let (code, said) = pidlock_on(&path, "kill", &["--group", "--wait", "60"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("process group of pid {cmd}")),
        "{said}"
    );
    assert!(exits_within(child, std::time::Duration::ZERO));
    assert!(second_copy_starts(&path));
}
