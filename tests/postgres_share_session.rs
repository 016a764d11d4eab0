//! `PgLock::share_session` as a library user meets it (from the review of issue 14).
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use pidlock_test_support::pg as pg_support;

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use pidlockfile::{LockError, PgLock};

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The doc example of `share_session`: every copy of the socket in this process is closed
/// before `release()`, so once the child has exited the lock is free, for another object and
/// for the same one again. (As the review found it, the example kept `socket` open across the
/// release: the lock stayed held by this very process and the same object waited for itself.)
#[test]
fn the_doc_example_lets_go_at_the_release_once_the_child_has_exited() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("share-doc-example");
    let mut lock = PgLock::new(pg.url(), &name);
    lock.acquire(None).unwrap();
    let socket = lock.share_session().unwrap();
    let inherited = rustix::io::dup(&socket).unwrap();
    drop(socket);
    let status = Command::new("true").status().unwrap();
    assert!(status.success());
    drop(inherited);
    lock.release().unwrap();
    let mut other = PgLock::new(pg.url(), &name);
    other.acquire(Some(Duration::ZERO)).unwrap();
    other.release().unwrap();
    // The same object again, as a loop that runs the job every so often would.
    lock.acquire(Some(Duration::ZERO)).unwrap();
    lock.release().unwrap();
}

/// A copy of the shared socket still open in this process keeps the session, and the lock,
/// after `release()`: the same object's next `acquire` is refused at once as held by this
/// process, instead of waiting (here up to 30 s) for itself; once the copy is closed, it takes
/// the lock.
#[test]
fn a_copy_kept_in_this_process_is_refused_rather_than_waited_for() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("share-kept-copy");
    let mut lock = PgLock::new(pg.url(), &name);
    lock.acquire(None).unwrap();
    let socket = lock.share_session().unwrap();
    lock.release().unwrap();
    let again = lock.acquire(Some(Duration::from_secs(30)));
    let me = std::process::id();
    assert!(
        matches!(again, Err(LockError::AlreadyLocked { pid: Some(pid), .. }) if pid == me),
        "refused at once as held by this process: {again:?}"
    );
    drop(socket);
    lock.acquire(Some(Duration::from_secs(30))).unwrap();
    lock.release().unwrap();
}

/// Loss detection goes on after sharing while the holder lives: a terminated session fires
/// on_lost (holds up if it passes).
#[test]
fn a_loss_after_sharing_is_still_noticed() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("review14f-loss");
    let mut lock = PgLock::new(pg.url(), &name);
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    lock.on_lost(move |_| {
        let _ = tx.lock().unwrap().send(());
    });
    lock.acquire(None).unwrap();
    let socket = lock.share_session().unwrap();
    let inherited = rustix::io::dup(&socket).unwrap();
    let mut child = Command::new("sleep").arg("300").spawn().unwrap();
    drop((inherited, socket));
    // This lock's session alone: the other tests of this process hold theirs meanwhile.
    let backend = pg.holding_backend(lock.key()).unwrap();
    pg.psql(&format!("SELECT pg_terminate_backend({backend})"));
    let noticed = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(noticed, "on_lost fired");
}
