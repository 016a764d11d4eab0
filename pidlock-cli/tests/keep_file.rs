//! `pidlock run --keep-file` shares a lock with flock(1) scripts: the file stays one inode, so
//! `flock` is refused while pidlock holds it and never runs alongside it.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::thread;

use common::*;

#[test]
fn flock_is_refused_while_held_and_the_file_stays_put_emptied() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("keep-refused");
    let path = scratch.path("job.pid");
    let held = hold(&path, &["--keep-file"]);
    let inode = fs::metadata(&path).expect("the lock file").ino();
    let flock = Command::new("flock")
        .arg("-n")
        .arg(&path)
        .arg("true")
        .status()
        .expect("run flock");
    assert_eq!(flock.code(), Some(1), "flock -n got in alongside pidlock");
    assert!(held.release().success());
    let after = fs::metadata(&path).expect("the kept file");
    assert_eq!((after.ino(), after.len()), (inode, 0));
    let flock = Command::new("flock")
        .arg("-n")
        .arg(&path)
        .arg("true")
        .status();
    assert!(flock.expect("run flock").success());
}

/// Holders take turns: pidlock runs and flock(1) runs on one path, in parallel loops. Each
/// holder marks its turn with a directory that only one can create at a time; a holder that
/// finds it there ran alongside another, and exits 99.
#[test]
fn pidlock_and_flock_holders_never_overlap() {
    pidlock_test_support::require_program!("flock", "util-linux");
    const ROUNDS: usize = 30;
    let scratch = Scratch::new("keep-overlap");
    let path = scratch.path("job.pid");
    let mark = scratch.path("inside");
    let turn = r#"mkdir "$1" || exit 99; ls / >/dev/null; rmdir "$1""#;
    let loops: Vec<_> = (0..4)
        .map(|n| {
            let (path, mark) = (path.clone(), mark.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let mut command = if n % 2 == 0 {
                        let mut command = Command::new(PIDLOCK);
                        command
                            .args(["run", "--keep-file", "--wait", "forever", "--file"])
                            .arg(&path)
                            .arg("--");
                        command
                    } else {
                        let mut command = Command::new("flock");
                        command.arg(&path);
                        command
                    };
                    command.args(["sh", "-c", turn, "sh"]).arg(&mark);
                    let child = command
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start a holder");
                    let status = Reaped(child).wait();
                    if !status.success() {
                        return Err(format!(
                            "a {} holder ended with {status}",
                            ["pidlock", "flock"][n % 2]
                        ));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for one in loops {
        one.join().expect("the loop thread").expect("no overlap");
    }
    assert!(!mark.exists());
}

/// A job whose background child outlives CMD: the child keeps the lock after `pidlock run` has
/// exited, so the file must stay, naming CMD (removing or emptying it under the child would let
/// a second copy in beside it, or hide the job). Once the child ends, nobody is left to tidy
/// up: the file is stale (LSB status 1, "dead, PID file exists"), as `--help` says, until the
/// next run takes it over, which empties a kept file at its end, or removes it.
#[test]
fn a_background_child_that_outlives_cmd_holds_the_lock_and_leaves_the_file_stale() {
    let help = pidlock()
        .args(["run", "--help"])
        .output()
        .expect("pidlock run --help");
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    assert!(
        help.contains("A background process that outlives CMD keeps the lock")
            && help.contains("left stale"),
        "{help}"
    );
    for keep in [&["--keep-file"][..], &[]] {
        let scratch = Scratch::new("keep-outlived");
        let path = scratch.path("job.pid");
        let status = || {
            pidlock()
                .args(["status", "--file"])
                .arg(&path)
                .output()
                .expect("pidlock status")
        };
        let mut wrapper = Reaped(
            Command::new(PIDLOCK)
                .arg("run")
                .arg("--file")
                .arg(&path)
                .args(keep)
                .args(["--", "sh", "-c"])
                .arg("sleep 300 </dev/null >/dev/null 2>&1 & echo $!")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start pidlock run"),
        );
        let child: u32 = lines_of(wrapper.0.stdout.take().expect("stdout"))
            .recv_timeout(BOUND)
            .expect("the child's PID")
            .parse()
            .expect("a PID");
        let child = KillOnDrop(child);
        assert!(wrapper.wait().success());
        let cmd = fs::read_to_string(&path).expect("the file stays while the child holds it");
        let cmd = cmd.trim();
        let held = status();
        let said = String::from_utf8_lossy(&held.stdout).into_owned();
        assert_eq!(held.status.code(), Some(0), "{keep:?}: {said}");
        assert!(
            said.contains(&format!("held by pid {cmd}")),
            "{keep:?}: {said}"
        );
        pidlock()
            .args(["run", "--file"])
            .arg(&path)
            .args(["--", "true"])
            .assert()
            .code(1);

        send(child.0, rustix::process::Signal::KILL);
        assert!(exits_within(child.0, BOUND));
        let stale = status();
        let said = String::from_utf8_lossy(&stale.stdout).into_owned();
        assert_eq!(stale.status.code(), Some(1), "{keep:?}: {said}");
        assert!(
            said.contains(&format!("stale file names pid {cmd}")),
            "{keep:?}: {said}"
        );

        pidlock()
            .args(["run", "--file"])
            .arg(&path)
            .args(keep)
            .args(["--", "true"])
            .assert()
            .success();
        match keep {
            [] => assert!(!path.exists()),
            _ => assert_eq!(fs::metadata(&path).expect("the kept file").len(), 0),
        }
        assert_eq!(status().status.code(), Some(3), "{keep:?}");
    }
}
