//! `PgLockGuard`: a held fleet lock, released when dropped.

use std::ops::Deref;
use std::sync::Arc;

use super::PgLock;
use crate::error::UnlockError;
use crate::loss::{LossSignal, LossWatch};

/// Holds a [`PgLock`] until dropped. Made by [`PgLock::lock`]; derefs to the lock for its
/// queries ([`fencing_token`](PgLock::fencing_token), [`is_lost`](PgLock::is_lost), ...).
///
/// ```no_run
/// let guard = pidlockfile::PgLock::lock("postgres://db.internal/app", "nightly-report", None)?;
/// let watch = guard.loss_watch();
/// assert!(!watch.is_lost());
/// guard.release()?; // or just drop it
/// # Ok::<(), pidlockfile::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct PgLockGuard {
    lock: PgLock,
    watch: LossWatch,
}

impl PgLockGuard {
    pub(crate) fn new(lock: PgLock) -> PgLockGuard {
        let signal = match &lock.held {
            Some(held) => Arc::clone(&held.signal),
            // Not reachable through `PgLock::lock`; a guard of nothing is as good as lost.
            None => {
                let signal = LossSignal::new(&lock.name, &lock.server(), Vec::new());
                signal.fire("not held");
                signal
            }
        };
        PgLockGuard {
            lock,
            watch: LossWatch::new(signal),
        }
    }

    /// A watch on the loss of this lock, to hand to other threads or to block on.
    pub fn loss_watch(&self) -> LossWatch {
        self.watch.clone()
    }

    /// Releases the lock now, and reports what dropping the guard would ignore.
    pub fn release(mut self) -> Result<(), UnlockError> {
        self.lock.release()
    }
}

impl Deref for PgLockGuard {
    type Target = PgLock;

    fn deref(&self) -> &PgLock {
        &self.lock
    }
}
