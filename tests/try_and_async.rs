//! `PidLockFile::try_acquire` and `PidLockFile::lock_async`, against a holder in another
//! process: a held lock is `None` (never an error, never a guard), a free one a guard, and any
//! other failure an error; the async wait leaves the executor free and gets the lock at the
//! release.

mod common;

use std::time::Duration;

use common::{PATIENCE, Proc, Scratch};
use pidlock::{LockError, PidLockFile};

#[test]
fn try_acquire_tells_held_from_free_from_broken() {
    let scratch = Scratch::new("try-acquire");
    let path = scratch.path("app.pid");

    let mut holder = Proc::holder(&path);
    assert!(
        PidLockFile::new(&path).try_acquire().unwrap().is_none(),
        "a lock held by another process must be None"
    );

    holder.send("release");
    assert!(holder.next_line().starts_with("released"));
    let guard = PidLockFile::new(&path)
        .try_acquire()
        .unwrap()
        .expect("a free lock must be taken");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", std::process::id())
    );
    // Held by this process now: another instance gets None too.
    assert!(PidLockFile::new(&path).try_acquire().unwrap().is_none());
    drop(guard);
    assert!(!path.exists());

    // A missing directory is an error, not "someone holds it".
    let err = PidLockFile::new(scratch.path("missing/app.pid"))
        .try_acquire()
        .unwrap_err();
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
