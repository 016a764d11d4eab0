//! Fleet mode (issue 14): a lost fleet lock stops the whole job before the wrapper reports the
//! loss and exits, since another copy may start at once (from the review of issue 14).
#![cfg(unix)]
#![cfg(feature = "postgres")]

mod common;
use pidlock_test_support::pg as pg_support;

use std::process::{Command, Stdio};

use common::*;
use rustix::process::Signal;

/// CMD (a shell) dies of the SIGTERM at once; its child ignores SIGTERM. The wrapper must
/// still SIGKILL the job's group after the grace, and exit 75 only once the group is empty:
/// before the fix it looked at CMD alone, exited 75, and the child ran on beside a second copy.
#[test]
fn a_child_that_outlives_the_sigterm_of_a_lost_lock_runs_beside_the_next_copy() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = "review14f-lost-term";
    let mut job = Started::spawn(
        Command::new(PIDLOCK)
            .args(["run", "--postgres", &pg.url(), "--name", name])
            .args(["--kill-grace", "2", "--", "sh", "-c"])
            .arg(r#"(trap '' TERM; exec sleep 300 </dev/null) & echo "$!"; wait"#),
    );
    let child: u32 = job.line().trim().parse().expect("the child's PID");
    let wrapper = job.process.id();
    let ended = pg.psql(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'pidlock {wrapper}@%') AS t"
    ));
    assert_eq!(ended, "1");
    assert_eq!(
        job.process.wait().code(),
        Some(75),
        "the wrapper reported the loss"
    );
    let still_running = alive(child);
    // A scheduler retries at once after 75: the next copy.
    let second = Command::new(PIDLOCK)
        .args(["run", "--postgres", &pg.url(), "--name", name, "--"])
        .args(["sh", "-c", "echo second"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("second copy");
    let second_ran = String::from_utf8_lossy(&second.stdout).contains("second");
    if still_running {
        send(child, Signal::KILL);
    }
    assert!(
        !still_running,
        "the job's child (pid {child}) outlived the wrapper's exit 75"
    );
    assert!(
        !(still_running && second_ran),
        "the first job's child (pid {child}) still ran after its wrapper exited 75, and a \
         second copy ran beside it"
    );
}
