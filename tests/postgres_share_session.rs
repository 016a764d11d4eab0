//! Review of issue 14: `PgLock::share_session` as a library user meets it.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use pidlock_test_support::pg as pg_support;

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use pidlock::{LockError, PgLock};

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The doc example of `share_session`, as written: `socket` is still in scope at
/// `lock.release()`. The release returns Ok and says it "closes this process's copy; the lock
/// goes once report.sh's children have [exited]", yet the child has exited and the lock stays
/// held, by this very process, through a session nobody drives; the same object then waits
/// for itself.
#[test]
fn the_doc_example_keeps_the_lock_after_release_and_the_childs_exit() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("review14f-doc-example");
    let mut lock = PgLock::new(pg.url(), &name);
    lock.acquire(None).unwrap();
    let socket = lock.share_session().unwrap();
    let inherited = rustix::io::dup(&socket).unwrap();
    let status = Command::new("true").status().unwrap();
    drop(inherited);
    lock.release().unwrap();
    let _ = status;
    // The job is over: another process's acquire should get it.
    let mut other = PgLock::new(pg.url(), &name);
    let other_got_it = other.acquire(Some(Duration::ZERO)).is_ok();
    // The same object again, as a loop that runs the job every so often would.
    let again = lock.acquire(Some(Duration::from_millis(500)));
    let waited_for_itself = matches!(again, Err(LockError::LockTimeout { .. }));
    drop(socket);
    assert!(
        other_got_it && !waited_for_itself,
        "after release() and the child's exit the lock was still held by this process \
         (other acquire ok: {other_got_it}; same object waited for itself: {waited_for_itself}: \
         {again:?})"
    );
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
    let me = std::process::id();
    pg.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'pidlock {me}@%'"
    ));
    let noticed = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(noticed, "on_lost fired");
}
