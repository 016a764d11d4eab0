//! When `#[single_instance]` takes and releases its lock, in one process: on every way out of
//! the body, after every value the body produced, and never visible to the body.
#![deny(warnings)]
#![warn(clippy::pedantic)]

use std::panic;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use pidlockfile::PidLockFile;

fn path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pidlock-scopes-{name}-{}.pid", std::process::id()))
}

fn held(name: &str) -> bool {
    PidLockFile::new(path(name)).is_locked()
}

#[pidlockfile::single_instance(path = path("early"))]
fn early_return(early: bool) -> u32 {
    assert!(held("early"));
    if early {
        return 1;
    }
    2
}

#[test]
fn released_after_normal_and_early_returns() {
    assert_eq!(early_return(true), 1);
    assert!(!held("early"));
    assert_eq!(early_return(false), 2);
    assert!(!held("early"));
}

#[pidlockfile::single_instance(path = path("question"))]
fn question_mark(input: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let n: u32 = input.parse()?;
    Ok(n)
}

#[test]
fn released_after_question_mark() {
    assert!(question_mark("x").is_err());
    assert!(!held("question"));
    assert_eq!(question_mark("7").unwrap(), 7);
}

#[pidlockfile::single_instance(path = path("panic"))]
fn panics() -> u32 {
    panic!("on purpose")
}

#[test]
fn released_while_unwinding() {
    assert!(panic::catch_unwind(panics).is_err());
    assert!(!held("panic"));
    assert!(!path("panic").exists(), "the guard's release ran");
}

/// Records, when dropped, whether the lock was still held.
struct Witness(&'static AtomicBool);

impl Witness {
    #[allow(clippy::unused_self)]
    fn len(&self) -> usize {
        3
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.0.store(held("order"), Ordering::SeqCst);
    }
}

static TEMPORARY_SAW_LOCK: AtomicBool = AtomicBool::new(false);
static LOCAL_SAW_LOCK: AtomicBool = AtomicBool::new(false);

#[pidlockfile::single_instance(path = path("order"))]
fn tail_temporary() -> usize {
    let _local = Witness(&LOCAL_SAW_LOCK);
    // A temporary in the tail expression: dropped at the end of the body in edition 2024, and
    // after the function's locals in 2021. The guard must outlive it either way.
    Witness(&TEMPORARY_SAW_LOCK).len()
}

#[test]
fn the_guard_outlives_every_value_of_the_body() {
    assert_eq!(tail_temporary(), 3);
    assert!(
        TEMPORARY_SAW_LOCK.load(Ordering::SeqCst),
        "a tail temporary outlived the lock"
    );
    assert!(
        LOCAL_SAW_LOCK.load(Ordering::SeqCst),
        "a local outlived the lock"
    );
    assert!(!held("order"));
}

thread_local! {
    /// What was dropped, in order, and whether the lock was held then.
    static DROPS: std::cell::RefCell<Vec<(&'static str, bool)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Logs its drop in `DROPS`.
struct Logged(&'static str);

impl Logged {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let held = held("edition");
        DROPS.with(|d| d.borrow_mut().push((self.0, held)));
    }
}

fn unguarded_tail() -> usize {
    let _local = Logged("local");
    Logged("temporary").len()
}

#[pidlockfile::single_instance(path = path("edition"))]
fn guarded_tail() -> usize {
    let _local = Logged("local");
    Logged("temporary").len()
}

#[test]
fn tail_temporaries_drop_in_the_editions_order_as_without_the_attribute() {
    let drops = || DROPS.with(|d| d.borrow_mut().drain(..).collect::<Vec<_>>());
    assert_eq!(unguarded_tail(), 9);
    // Edition 2024's order; `tests/edition2021` checks that a 2021 crate keeps 2021's.
    assert_eq!(drops(), [("temporary", false), ("local", false)]);
    assert_eq!(guarded_tail(), 9);
    assert_eq!(drops(), [("temporary", true), ("local", true)]);
    assert!(!held("edition"));
}

#[pidlockfile::single_instance(path = path("nested"))]
fn reenters(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        reenters(depth - 1) + 1
    }
}

#[test]
fn a_conflict_in_a_plain_function_panics_with_the_message() {
    let payload = panic::catch_unwind(|| reenters(1)).unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    // The program is named after the test binary, which cargo gives a hash suffix.
    assert!(
        message.starts_with("`reenters` cannot run: single_instance_scopes"),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            " is already running (pid {}, lock file {})",
            std::process::id(),
            path("nested").display()
        )),
        "{message}"
    );
    assert!(!held("nested"));
}

#[pidlockfile::single_instance(path = path("result-conflict"))]
fn conflict_as_error(again: bool) -> Result<u32, pidlockfile::Error> {
    if again {
        return conflict_as_error(false).map(|n| n + 1);
    }
    Ok(0)
}

#[test]
fn a_conflict_in_a_result_function_is_returned() {
    match conflict_as_error(true) {
        Err(pidlockfile::Error::Lock(pidlockfile::LockError::AlreadyLocked { pid, .. })) => {
            assert_eq!(pid, Some(std::process::id()));
        }
        other => panic!("{other:?}"),
    }
}

#[pidlockfile::single_instance(path = path("async"), timeout = "forever")]
async fn async_work(n: u32) -> u32 {
    tokio::task::yield_now().await;
    assert!(held("async"));
    n + 1
}

#[test]
fn async_functions_hold_the_lock_across_awaits() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(async_work(1)), 2);
    assert!(!held("async"));
}

/// The function shapes the attribute must keep working for, here so that this file's
/// `#![deny(warnings)]` and clippy's pedantic lints (CI runs clippy on tests) see their
/// generated code too.
mod shapes {
    use super::path;
    use std::fmt::Display;

    #[pidlockfile::single_instance(path = path("shape-generic"))]
    pub fn generic<T: Display>(value: &T) -> String {
        value.to_string()
    }

    #[pidlockfile::single_instance(path = path("shape-impl-trait"))]
    pub fn evens(limit: u32) -> impl Iterator<Item = u32> {
        (0..limit).filter(|n| n % 2 == 0)
    }

    #[pidlockfile::single_instance(path = path("shape-never"))]
    pub fn never() -> ! {
        #![allow(clippy::panic)]
        panic!("never returns")
    }

    pub struct Counter(pub u32);

    impl Counter {
        #[pidlockfile::single_instance(path = path("shape-ref-self"))]
        pub fn bump(&mut self) -> u32 {
            self.0 += 1;
            self.0
        }

        #[must_use]
        #[pidlockfile::single_instance(path = path("shape-self"))]
        pub fn into_inner(self) -> u32 {
            self.0
        }
    }
}

#[test]
fn every_function_shape_runs_under_the_lock() {
    assert_eq!(shapes::generic(&5), "5");
    assert_eq!(shapes::evens(5).collect::<Vec<_>>(), [0, 2, 4]);
    assert!(panic::catch_unwind(|| shapes::never()).is_err());
    assert!(!held("shape-never"));
    let mut counter = shapes::Counter(0);
    assert_eq!(counter.bump(), 1);
    assert_eq!(counter.into_inner(), 1);
}
