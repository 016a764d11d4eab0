//! `PidLockFile::try_acquire`, `PidLockFile::try_lock` and `PidLockFile::lock_async`, against a
//! holder in another process: a held lock is `false` or `None` (never an error, never a guard),
//! a free one `true` or a guard, and any other failure an error; the async wait leaves the executor free and gets the lock at the
//! release.

mod common;

use std::time::Duration;

use common::{PATIENCE, Proc, Scratch};
use pidlockfile::{LockError, PidLockFile};

#[test]
fn try_acquire_tells_held_from_free_from_broken() {
    let scratch = Scratch::new("try-acquire");
    let path = scratch.path("app.pid");

    let mut holder = Proc::holder(&path);
    let mut lock = PidLockFile::new(&path);
    assert!(
        !lock.try_acquire().unwrap(),
        "a lock held by another process must be false"
    );
    assert!(!lock.i_am_locking());

    holder.send("release");
    assert!(holder.next_line().starts_with("released"));
    assert!(lock.try_acquire().unwrap(), "a free lock must be taken");
    assert!(lock.i_am_locking());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", std::process::id())
    );
    // Held by this process now: another instance gets false too.
    assert!(!PidLockFile::new(&path).try_acquire().unwrap());
    // The same instance again: the caller's mistake, an error naming this process.
    let err = lock.try_acquire().unwrap_err();
    assert!(
        matches!(err, LockError::AlreadyLocked { pid: Some(pid), .. } if pid == std::process::id()),
        "{err:?}"
    );
    assert!(lock.i_am_locking());
    lock.release().unwrap();
    assert!(!path.exists());

    // A missing directory is an error, not "someone holds it".
    let err = PidLockFile::new(scratch.path("missing/app.pid"))
        .try_acquire()
        .unwrap_err();
    assert!(matches!(err, LockError::LockFailed { .. }), "{err:?}");
}

#[test]
fn try_lock_is_a_guard_or_none() {
    let scratch = Scratch::new("try-lock");
    let path = scratch.path("app.pid");

    let mut holder = Proc::holder(&path);
    assert!(PidLockFile::try_lock(&path).unwrap().is_none());
    holder.send("release");
    assert!(holder.next_line().starts_with("released"));
    let guard = PidLockFile::try_lock(&path)
        .unwrap()
        .expect("a free lock must be taken");
    assert!(PidLockFile::try_lock(&path).unwrap().is_none());
    drop(guard);
    assert!(!path.exists());
    let err = PidLockFile::try_lock(scratch.path("missing/app.pid")).unwrap_err();
    assert!(matches!(err, LockError::LockFailed { .. }), "{err:?}");
}

#[test]
fn lock_async_waits_without_blocking_the_executor() {
    let scratch = Scratch::new("lock-async");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A zero timeout on a held lock: refused at once.
        let err = PidLockFile::lock_async(&path, Some(Duration::ZERO))
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::AlreadyLocked { .. }), "{err:?}");

        let waiter = tokio::spawn({
            let path = path.clone();
            async move { PidLockFile::lock_async(path, Some(PATIENCE)).await }
        });
        // The single executor thread is free while the waiter waits: this task runs, and tells
        // the holder to let go only then.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        holder.send("release");
        let guard = tokio::time::timeout(PATIENCE, waiter)
            .await
            .expect("the waiter never got the lock")
            .unwrap()
            .unwrap();
        assert!(guard.lock_file().i_am_locking());
    });
    assert!(holder.next_line().starts_with("released"));
}
