//! `PidLockFile::keep_file(true)`: release empties the file instead of unlinking it, so that
//! `flock(1)` scripts locking the same path always lock the same inode as we do, and never run
//! alongside a holder.
// Unix only: it checks inode numbers, and flock(1) is a Unix tool.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::thread;

use common::{PATIENCE, Scratch};
use pidlockfile::{LockError, PidLockFile};

fn flock_n(path: &std::path::Path) -> i32 {
    Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .expect("run flock(1)")
        .code()
        .expect("flock exits")
}

#[test]
fn flock_is_refused_while_held_and_release_empties_the_same_inode() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("keep-file-refused");
    let path = scratch.path("job.pid");
    let mut lock = PidLockFile::new(&path).keep_file(true);
    lock.acquire(Some(PATIENCE)).expect("take the lock");
    let inode = fs::metadata(&path).expect("the file").ino();
    assert_eq!(flock_n(&path), 1, "flock -n got in alongside the holder");
    lock.release().expect("release");
    let after = fs::metadata(&path).expect("the kept file");
    assert_eq!((after.ino(), after.len()), (inode, 0));
    assert!(!lock.is_locked());
    assert_eq!(lock.read_pid(), None);
    assert_eq!(flock_n(&path), 0);
    // The next holder takes the same inode over and writes its PID into it.
    lock.acquire(Some(PATIENCE)).expect("take it again");
    assert_eq!(fs::metadata(&path).expect("the file").ino(), inode);
    assert_eq!(lock.read_pid(), Some(std::process::id()));
}

#[test]
fn the_default_still_unlinks() {
    let scratch = Scratch::new("keep-file-default");
    let path = scratch.path("job.pid");
    let mut lock = PidLockFile::new(&path).keep_file(false);
    lock.acquire(Some(PATIENCE)).expect("take the lock");
    lock.release().expect("release");
    assert!(!path.exists());
}

/// Threads of ours and flock(1) processes take turns on one path. Each holder marks its turn
/// with a directory that only one can create at a time: a holder that finds it there ran
/// alongside another. Without `keep_file`, a flock(1) waiting on an unlinked inode gets in
/// alongside the next holder within a few rounds.
#[test]
fn holders_and_flock_scripts_never_overlap() {
    pidlock_test_support::require_program!("flock", "util-linux");
    const ROUNDS: usize = 40;
    let scratch = Scratch::new("keep-file-overlap");
    let path = scratch.path("job.pid");
    let mark = scratch.path("inside");
    let ours: Vec<_> = (0..2)
        .map(|_| {
            let (path, mark) = (path.clone(), mark.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let mut lock = PidLockFile::new(&path).keep_file(true);
                    lock.acquire(Some(PATIENCE)).map_err(|e| e.to_string())?;
                    fs::create_dir(&mark).map_err(|e| format!("ran alongside another: {e}"))?;
                    thread::yield_now();
                    fs::remove_dir(&mark).map_err(|e| e.to_string())?;
                    lock.release().map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let scripts: Vec<_> = (0..2)
        .map(|_| {
            let (path, mark) = (path.clone(), mark.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let status = Command::new("flock")
                        .args(["-w", &PATIENCE.as_secs().to_string()])
                        .arg(&path)
                        .args(["sh", "-c", r#"mkdir "$1" || exit 99; rmdir "$1""#, "sh"])
                        .arg(&mark)
                        .stdin(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .map_err(|e| e.to_string())?;
                    if !status.success() {
                        return Err(format!("a flock(1) holder ended with {status}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for one in ours.into_iter().chain(scripts) {
        one.join().expect("a holder thread").expect("no overlap");
    }
}

#[test]
fn set_pid_needs_the_lock_and_a_pid() {
    let scratch = Scratch::new("set-pid");
    let path = scratch.path("job.pid");
    let mut lock = PidLockFile::new(&path);
    assert!(matches!(
        lock.set_pid(42),
        Err(LockError::LockFailed { .. })
    ));
    assert!(!path.exists(), "nothing written without the lock");
    lock.acquire(Some(PATIENCE)).expect("take the lock");
    assert!(matches!(lock.set_pid(0), Err(LockError::LockFailed { .. })));
    lock.set_pid(4242).expect("name another process");
    assert_eq!(fs::read_to_string(&path).expect("the file"), "4242\n");
    assert!(lock.i_am_locking(), "the lock stays with this process");
    lock.set_pid(7).expect("a shorter PID");
    assert_eq!(fs::read_to_string(&path).expect("the file"), "7\n");
}
