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
