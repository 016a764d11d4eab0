//! The job holds the fleet lock too: CMD and every process it starts inherit the server
//! session's socket, so the session (and its advisory lock) lives until the last process of the
//! job has exited, whatever happens to the wrapper. The same scenarios as `job.rs`, against the
//! suite's real PostgreSQL (`PIDLOCK_SKIP_POSTGRES=1` skips them).
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]
#![cfg(feature = "postgres")]

mod common;
use pidlock_test_support::pg as pg_support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use pg_support::Cluster;
use rustix::process::Signal;

/// `pidlock run --postgres URL --name NAME EXTRA... -- sh -c SCRIPT sh`.
fn fleet_run(pg: &Cluster, name: &str, extra: &[&str], script: &str) -> Command {
    let mut command = Command::new(PIDLOCK);
    command
        .args(["run", "--postgres", &pg.url(), "--name", name])
        .args(extra)
        .args(["--", "sh", "-c", script, "sh"]);
    command
}

/// A `pidlock run` of the lock `name` whose CMD runs [`SCRIPT_WITH_CHILD`], and its child's PID.
fn job_with_child(pg: &Cluster, name: &str, extra: &[&str]) -> (Started, u32) {
    let job = Started::spawn(&mut fleet_run(pg, name, extra, SCRIPT_WITH_CHILD));
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    (job, child)
}

/// Whether a copy that waits up to `limit` seconds for the lock runs while one of `pids` still
/// runs: it prints `beside` then, `clean` otherwise. `None` if it did not run at all.
fn waiting_copy_runs_beside(pg: &Cluster, name: &str, limit: &str, pids: &[u32]) -> Option<bool> {
    // Running, not a zombie: a job's process whose parent was killed is reaped by whoever
    // adopts it, which may take its time, and a zombie holds nothing.
    let alive: Vec<String> = pids.iter().map(|pid| format!("runs {pid}")).collect();
    let check = format!(
        "runs() {{ s=$(sed -n 's/^State:[[:space:]]*\\(.\\).*/\\1/p' /proc/$1/status 2>/dev/null); \
         [ -n \"$s\" ] && [ \"$s\" != Z ]; }}; if {}; then echo beside; else echo clean; fi",
        alive.join(" || ")
    );
    let out = fleet_run(pg, name, &["--wait", limit], &check)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run the waiting copy");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match said.as_str() {
        "beside" => Some(true),
        "clean" => Some(false),
        _ => None,
    }
}

/// The issue's scenario in fleet mode: the wrapper is SIGKILLed while CMD's child works; a
/// second copy without `--wait` is refused, and one with `--wait` starts only once the child
/// has exited. Twenty times, no overlap.
#[test]
fn a_killed_wrappers_job_keeps_the_fleet_lock_until_its_last_process_exits() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let run = |extra: &[&str], script: &str| fleet_run(pg, "fleet-job-killed", extra, script);
    // Each round's first job waits for the lock: the last round's waiting copy has exited, but
    // the server may not have ended its session yet.
    let overlaps = (0..REPETITIONS)
        .filter(|_| killed_wrapper_scenario(&run, &mut run(&["--wait", "30"], SCRIPT_WITH_CHILD)))
        .count();
    assert_eq!(
        overlaps, 0,
        "second copies ran beside the first job's child"
    );
}

/// `--no-inherit` is today's behaviour, by request: the wrapper alone holds the session, so a
/// killed wrapper frees the fleet lock beside the child that CMD left running.
#[test]
fn with_no_inherit_a_killed_wrapper_frees_the_fleet_lock_beside_cmds_child() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = "fleet-job-no-inherit";
    let (mut job, child) = job_with_child(pg, name, &["--no-inherit"]);
    send(job.process.id(), Signal::KILL);
    job.process.wait();
    // The server notices the closed connection a moment later: a waiting copy gets in then.
    assert_eq!(
        waiting_copy_runs_beside(pg, name, "10", &[child]),
        Some(true),
        "the lock went with the wrapper, and CMD's child ran on beside the second copy"
    );
    send(child, Signal::KILL);
}

/// `kill -KILL -PGID` of the whole job: the fleet lock is never free while a process of the job
/// lives, and is free within 1 s of the job's end (a second copy that waits 1 s gets in).
fn kill_the_whole_fleet_job(name: &str, groups: impl Fn(u32, u32) -> Vec<u32>) {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let run = |extra: &[&str], script: &str| fleet_run(pg, name, extra, script);
    let mut job = Started::spawn(&mut run(
        &[],
        r#"sleep 300 </dev/null & echo "$!"; echo "$$"; wait"#,
    ));
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    let cmd: u32 = job.line().trim().parse().expect("CMD's PID");
    assert!(!second_copy_starts(&run), "the job holds the lock");
    for pgid in groups(job.process.id(), cmd) {
        kill_group(pgid, Signal::KILL);
    }
    assert!(exits_within(child, BOUND) && exits_within(cmd, BOUND));
    job.process.wait();
    assert_eq!(
        waiting_copy_runs_beside(pg, name, "1", &[cmd, child]),
        Some(false),
        "the lock was not free within 1 s of the job's end"
    );
}

#[test]
fn killing_the_jobs_process_group_frees_the_fleet_lock_within_a_second() {
    kill_the_whole_fleet_job("fleet-job-kill-group", |_wrapper, cmd| vec![cmd]);
}

#[test]
fn killing_the_wrappers_and_the_jobs_groups_frees_the_fleet_lock_within_a_second() {
    kill_the_whole_fleet_job("fleet-job-kill-both", |wrapper, cmd| vec![wrapper, cmd]);
}

/// At the wrapper's normal end (CMD exited), the lock stays with CMD's children that still run:
/// the wrapper never unlocks a session the job shares.
#[test]
fn cmds_children_keep_the_fleet_lock_after_cmd_and_its_wrapper_exit() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = "fleet-job-cmd-exits";
    let run = |extra: &[&str], script: &str| fleet_run(pg, name, extra, script);
    // CMD starts a child that outlives it, names it, and exits 0.
    let mut job = Started::spawn(&mut run(&[], r#"sleep 300 </dev/null & echo "$!""#));
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    assert!(job.process.wait().success());
    assert!(alive(child));
    assert!(
        !second_copy_starts(&run),
        "the wrapper let go of the job's lock"
    );
    send(child, Signal::KILL);
    assert!(exits_within(child, BOUND));
    assert_eq!(
        waiting_copy_runs_beside(pg, name, "10", &[child]),
        Some(false)
    );
}

/// A set-user-ID CMD loses the parent-death signal at exec; with the session inherited, it
/// holds the fleet lock itself. The program is a set-user-ID copy of `sleep` owned by `nobody`.
#[test]
fn a_set_user_id_cmd_keeps_the_fleet_lock_when_the_wrapper_is_killed() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    pidlock_test_support::require_root!("makes a set-user-ID program of another user");
    let name = "fleet-job-setuid";
    let run = |extra: &[&str], script: &str| fleet_run(pg, name, extra, script);
    let scratch = Scratch::new("fleet-job-setuid");
    let program = set_user_id_sleep(&scratch);

    for (extra, inherits) in [(&[][..], true), (&["--no-inherit"][..], false)] {
        let mut first = Command::new(PIDLOCK);
        first
            .args(["run", "--postgres", &pg.url(), "--name", name])
            .args(extra)
            .arg("--")
            .arg(&program)
            .arg("300");
        let mut job = Started::spawn(&mut first);
        let cmd = set_user_id_child_of(&mut job, &program);
        send(job.process.id(), Signal::KILL);
        job.process.wait();
        if inherits {
            assert!(alive(cmd), "CMD runs on");
            assert!(
                !second_copy_starts(&run),
                "a second copy ran beside the set-user-ID CMD"
            );
        } else if alive(cmd) {
            // What --no-inherit gives up: the death signal was dropped at exec, and CMD runs
            // on without the lock.
            assert_eq!(waiting_copy_runs_beside(pg, name, "10", &[cmd]), Some(true));
        }
        send(cmd, Signal::KILL);
        assert!(exits_within(cmd, BOUND));
        assert_eq!(
            waiting_copy_runs_beside(pg, name, "10", &[cmd]),
            Some(false)
        );
    }
}

/// The wrapper's child once it has exec'd `program` and runs as `nobody`.
fn set_user_id_child_of(job: &mut Started, program: &Path) -> u32 {
    let wrapper = job.process.id();
    loop {
        let children = fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
            .unwrap_or_default();
        let found = children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|pid| {
                let exe = fs::read_link(format!("/proc/{pid}/exe"));
                let status = fs::read_to_string(format!("/proc/{pid}/status"));
                exe.is_ok_and(|exe| exe == program)
                    && status.is_ok_and(|s| {
                        s.lines()
                            .any(|l| l.starts_with("Uid:") && l.contains("65534"))
                    })
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(job.process.running(), "the job ended early");
        std::thread::yield_now();
    }
}

/// A lock lost while the wrapper lives stops the whole job, which held it: CMD's child gets the
/// SIGTERM too, and does not run on beside the next holder.
#[test]
fn a_lost_fleet_lock_stops_cmds_children_too() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = "fleet-job-lost";
    let (mut job, child) = job_with_child(pg, name, &[]);
    let wrapper = job.process.id();
    let ended = pg.psql(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'pidlock {wrapper}@%') AS t"
    ));
    assert_eq!(ended, "1", "one session to terminate");
    assert!(exits_within(child, BOUND), "CMD's child was stopped");
    assert_eq!(job.process.wait().code(), Some(75));
}

/// Once the wrapper is gone, its session names a process that no longer runs: `kill` signals
/// nobody and says why, and `wait` sees the lock held by the job until its last process exits.
#[test]
fn a_job_that_outlived_its_wrapper_is_not_signalled_and_wait_sees_its_lock() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = "fleet-job-orphan";
    let (mut job, child) = job_with_child(pg, name, &[]);
    send(job.process.id(), Signal::KILL);
    job.process.wait();
    let refused = pidlock()
        .args(["kill", "--postgres", &pg.url(), "--name", name])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let said = one_line(&refused.stderr);
    assert!(said.contains("which is not running here"), "{said}");
    assert!(alive(child), "nobody was signalled");
    pidlock()
        .args([
            "wait",
            "--postgres",
            &pg.url(),
            "--name",
            name,
            "--timeout",
            "0.3",
        ])
        .assert()
        .code(1);
    send(child, Signal::KILL);
    assert!(exits_within(child, BOUND));
    pidlock()
        .args([
            "wait",
            "--postgres",
            &pg.url(),
            "--name",
            name,
            "--timeout",
            "10",
        ])
        .assert()
        .code(0);
}
