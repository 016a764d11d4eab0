//! `pidlock` inside a new PID namespace (a container), made with `unshare(1)`: there the kernel
//! shows a process outside the namespace as PID 0, and drops from `/proc/locks` a lock whose
//! locker it cannot name (its reaped wrapper, say). Needs root.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use pidlock_test_support::{require_program, require_root};

/// Runs `script` with `sh` as the first process (PID 1) of a new PID namespace with its own
/// `/proc`, `$1` the scratch directory and `$P` the pidlock binary, and returns what it printed,
/// line by line, and its exit status. The namespace, and every process in it, is killed if the
/// test gives up (`--kill-child`).
fn in_pid_namespace(dir: &Path, script: &str) -> (Vec<String>, Option<i32>) {
    let mut unshare = Reaped(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(["sh", "-c", script, "sh"])
            .arg(dir)
            .env("P", PIDLOCK)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start unshare"),
    );
    let lines = lines_of(unshare.0.stdout.take().expect("stdout"));
    let deadline = Instant::now() + BOUND;
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => said.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("the namespace's script did not end; it said {said:#?}")
            }
        }
    }
    (said, unshare.wait().code())
}

/// `unshare --pid --fork` leaves the namespace's first process in its parent's process group,
/// whose leader is outside: `getpgrp()` is 0 there. `pidlock run` must still run CMD.
#[test]
fn run_works_where_the_process_group_leader_is_outside_the_namespace() {
    require_root!("unshare --pid makes a PID namespace");
    require_program!("unshare", "util-linux");
    let scratch = Scratch::new("namespace-run");
    let (said, code) = in_pid_namespace(
        &scratch.dir,
        // Field 5 of /proc/PID/stat is the process group (`sh` has no space in its name).
        r#"echo "pgid $(cut -d ' ' -f 5 /proc/$$/stat)"
           "$P" run --file "$1/job.pid" -- echo cmd ran; echo "run $?""#,
    );
    assert_eq!(code, Some(0), "{said:#?}");
    assert_eq!(said, ["pgid 0", "cmd ran", "run 0"]);
}

/// In a PID namespace, once the wrapper of a job has been reaped, the kernel shows the job's
/// lock with locker PID 0 in the holders' fdinfo and drops it from `/proc/locks`. `kill --wait`
/// must still see the lock held by CMD's child, and never say "let go" while it is.
#[test]
fn kill_wait_in_a_pid_namespace_waits_for_the_jobs_child_after_the_wrapper_is_reaped() {
    require_root!("unshare --pid makes a PID namespace");
    require_program!("unshare", "util-linux");
    let scratch = Scratch::new("namespace-kill-wait");
    // CMD says its PID, then its child's once it runs; the script waits (bounded by the test)
    // until the file names CMD, SIGKILLs the wrapper and reaps it.
    let script = r#"
        cd "$1" || exit 9
        "$P" run --file job.pid -- sh -c 'echo $$ > cmd; sleep 300 </dev/null >/dev/null 2>&1 & echo $! > child.new; mv child.new child; wait' </dev/null >/dev/null 2>&1 &
        wrapper=$!
        until [ -s child ] && [ -s cmd ] && [ "$(cat job.pid)" = "$(cat cmd)" ]; do sleep 0.01; done
        kill -KILL $wrapper; wait $wrapper
        "$P" kill --file job.pid --wait 1 2>/dev/null; echo "kill-wait $?"
        kill -0 "$(cat child)" && echo "child runs"
        "$P" run --file job.pid -- echo second copy 2>/dev/null; echo "second $?"
        kill "$(cat child)"
        "$P" wait --file job.pid --timeout 20; echo "wait $?"
    "#;
    let (said, code) = in_pid_namespace(&scratch.dir, script);
    assert_eq!(code, Some(0), "{said:#?}");
    assert_eq!(
        said,
        ["kill-wait 3", "child runs", "second 1", "wait 0"],
        "`kill --wait` must run out (3) while CMD's child holds the lock"
    );
}
