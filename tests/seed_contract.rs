//! The cases of the seed's `caterpillar.locking.PIDLockFile` contract, with pidlockfile's fixes.

mod common;

use std::error::Error as _;
use std::process;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{PATIENCE, Proc, Scratch};
use pidlockfile::{Error, LockError, PidLockFile, PidLockGuard, UnlockError};

#[test]
fn a_fresh_lock_is_not_locked() {
    let scratch = Scratch::new("fresh");
    let path = scratch.path("app.pid");
    let lock = PidLockFile::new(&path);
    assert_eq!(lock.path(), path);
    assert!(!lock.is_locked());
    assert!(!lock.i_am_locking());
    assert_eq!(lock.read_pid(), None);
    assert!(!path.exists(), "new() must not touch the file system");
}

#[test]
fn acquire_writes_a_classic_pid_file() {
    let scratch = Scratch::new("acquire");
    let path = scratch.path("app.pid");
    let mut lock = PidLockFile::new(&path);
    lock.acquire(None).unwrap();

    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", process::id())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o022,
            0,
            "the PID file must not be group or world writable"
        );
        assert_eq!(mode & 0o644, mode, "mode {mode:o} exceeds 0644");
    }
    assert!(lock.is_locked());
    assert!(lock.i_am_locking());
    assert_eq!(lock.read_pid(), Some(process::id()));

    lock.release().unwrap();
    assert!(!path.exists());
    assert!(!lock.is_locked());
    assert!(!lock.i_am_locking());
}

#[test]
fn a_second_process_gets_already_locked_with_our_pid() {
    let scratch = Scratch::new("second");
    let path = scratch.path("app.pid");
    let mut lock = PidLockFile::new(&path);
    lock.acquire(Some(Duration::ZERO)).unwrap();

    let mut other = Proc::helper(&["try", path.to_str().unwrap(), "0"]);
    let report = other.next_report();
    assert!(
        report.starts_with(&format!("already-locked {} ", process::id())),
        "{report}"
    );
    assert_eq!(other.wait().code(), Some(1));
    assert_eq!(
        lock.read_pid(),
        Some(process::id()),
        "the loser changed the file"
    );
}

#[test]
fn already_locked_names_the_path_and_the_holder() {
    let scratch = Scratch::new("display");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);

    let err = PidLockFile::new(&path)
        .acquire(Some(Duration::ZERO))
        .unwrap_err();
    let LockError::AlreadyLocked { path: p, pid, .. } = &err else {
        panic!("expected AlreadyLocked, got {err:?}")
    };
    assert_eq!(p, &path);
    assert_eq!(*pid, Some(holder.id()));
    assert_eq!(err.pid(), Some(holder.id()));
    assert_eq!(err.path(), path);
    assert_eq!(
        err.to_string(),
        format!("{} is locked by process {}", path.display(), holder.id())
    );
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
}

#[test]
fn two_instances_in_one_process_exclude_each_other_across_threads() {
    let scratch = Scratch::new("threads");
    let path = scratch.path("app.pid");
    let mut first = PidLockFile::new(&path);
    first.acquire(None).unwrap();

    let (tx, rx) = mpsc::channel();
    let waiter_path = path.clone();
    let waiter = thread::spawn(move || {
        let mut second = PidLockFile::new(&waiter_path);
        let zero = second.acquire(Some(Duration::ZERO));
        tx.send(matches!(zero, Err(LockError::AlreadyLocked { .. })))
            .unwrap();
        second.acquire(None).unwrap();
        tx.send(second.i_am_locking()).unwrap();
        second.release().unwrap();
    });
    assert!(rx.recv_timeout(PATIENCE).unwrap(), "second instance got in");
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    first.release().unwrap();
    assert!(rx.recv_timeout(PATIENCE).unwrap());
    waiter.join().unwrap();
}

#[test]
fn acquire_on_a_holding_instance_is_already_locked_not_a_deadlock() {
    let scratch = Scratch::new("reentrant");
    let path = scratch.path("app.pid");
    let mut lock = PidLockFile::new(&path);
    lock.acquire(None).unwrap();
    for timeout in [None, Some(Duration::ZERO), Some(Duration::from_secs(30))] {
        let err = lock.acquire(timeout).unwrap_err();
        assert!(
            matches!(err, LockError::AlreadyLocked { pid: Some(pid), .. } if pid == process::id()),
            "{err:?}"
        );
    }
    assert!(
        lock.i_am_locking(),
        "a refused re-acquire must not drop the lock"
    );
}

#[test]
fn release_without_a_lock_is_not_locked() {
    let scratch = Scratch::new("notlocked");
    let path = scratch.path("app.pid");
    let err = PidLockFile::new(&path).release().unwrap_err();
    assert!(
        matches!(&err, UnlockError::NotLocked { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("{} is not locked", path.display()));

    // A leftover file from a dead holder is not a lock either.
    std::fs::write(&path, "4242\n").unwrap();
    assert!(matches!(
        PidLockFile::new(&path).release(),
        Err(UnlockError::NotLocked { .. })
    ));
    assert!(
        path.exists(),
        "release must not remove a file it does not hold"
    );
}

#[test]
fn release_of_another_process_lock_is_not_my_lock() {
    let scratch = Scratch::new("notmine");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let err = PidLockFile::new(&path).release().unwrap_err();
    assert!(
        matches!(err, UnlockError::NotMyLock { pid: Some(pid), .. } if pid == holder.id()),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("locked by process {}", holder.id()))
    );
    assert!(path.exists());
    holder.send("status");
    assert_eq!(
        holder.next_report(),
        format!("status true true {}", holder.id())
    );
}

#[test]
fn release_of_another_instance_in_this_process_is_not_my_lock() {
    let scratch = Scratch::new("notmine-local");
    let path = scratch.path("app.pid");
    let mut mine = PidLockFile::new(&path);
    mine.acquire(None).unwrap();
    let mut other = PidLockFile::new(&path);
    assert!(
        other.i_am_locking(),
        "this process holds it, through another instance"
    );
    assert!(matches!(
        other.release(),
        Err(UnlockError::NotMyLock { .. })
    ));
    assert!(mine.i_am_locking());
}

#[test]
fn read_pid_tolerates_what_fhs_allows_and_rejects_garbage() {
    let scratch = Scratch::new("readpid");
    let path = scratch.path("app.pid");
    let lock = PidLockFile::new(&path);
    for (contents, expected) in [
        ("4242\n", Some(4242)),
        ("4242", Some(4242)),
        ("  4242 \n", Some(4242)),
        ("0004242\n", Some(4242)),
        ("4242\nsecond line\n", Some(4242)),
        ("", None),
        ("\n", None),
        ("0x42\n", None),
        ("1e17\n", None),
        ("+4\n", None),
        ("-4\n", None),
        ("0\n", None),
        ("abc\n", None),
        ("99999999999999999999\n", None),
        ("4294967296\n", None),
    ] {
        std::fs::write(&path, contents).unwrap();
        assert_eq!(lock.read_pid(), expected, "{contents:?}");
    }
}

#[test]
fn lock_failed_in_a_missing_directory_names_the_path_and_the_cause() {
    let scratch = Scratch::new("missingdir");
    let path = scratch.path("no/such/dir/app.pid");
    let err = PidLockFile::new(&path).acquire(None).unwrap_err();
    let LockError::LockFailed {
        path: p, source, ..
    } = &err
    else {
        panic!("expected LockFailed, got {err:?}")
    };
    assert_eq!(p, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("directory does not exist"), "{message}");
    assert!(err.source().is_some());
}

#[test]
fn dropping_a_holding_instance_releases() {
    let scratch = Scratch::new("drop");
    let path = scratch.path("app.pid");
    let mut lock = PidLockFile::new(&path);
    lock.acquire(None).unwrap();
    drop(lock);
    assert!(!path.exists());
    PidLockFile::new(&path)
        .acquire(Some(Duration::ZERO))
        .unwrap();
}

#[test]
fn the_guard_holds_until_dropped_and_errors_convert_for_question_mark() {
    fn both(path: &std::path::Path) -> Result<PidLockGuard, Error> {
        let guard = PidLockFile::lock(path, Some(Duration::ZERO))?;
        let mut other = PidLockFile::new(path);
        match other.release() {
            Err(UnlockError::NotMyLock { .. }) => {}
            other => panic!("{other:?}"),
        }
        Ok(guard)
    }
    let scratch = Scratch::new("guard");
    let path = scratch.path("app.pid");
    let guard = both(&path).unwrap();
    assert_eq!(guard.path(), path);
    assert!(guard.lock_file().i_am_locking());
    let err = both(&path).unwrap_err();
    assert!(
        matches!(err, Error::Lock(LockError::AlreadyLocked { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{} is locked by process {}", path.display(), process::id())
    );
    drop(guard);
    assert!(!PidLockFile::new(&path).is_locked());

    let guard = PidLockFile::lock(&path, None).unwrap();
    guard.release().unwrap();
    assert!(!path.exists());
}

#[test]
fn the_public_types_are_send_sync_and_debug() {
    fn assert_traits<T: Send + Sync + std::fmt::Debug>() {}
    assert_traits::<PidLockFile>();
    assert_traits::<PidLockGuard>();
    assert_traits::<LockError>();
    assert_traits::<UnlockError>();
    assert_traits::<Error>();
    fn assert_error<T: std::error::Error + 'static>() {}
    assert_error::<LockError>();
    assert_error::<UnlockError>();
    assert_error::<Error>();
}
