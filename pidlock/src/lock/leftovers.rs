//! What a waiter lets go of once it holds the lock, or gives up, closed off its caller's path.

use std::fs::{File, Metadata};
use std::time::Instant;

use crate::closer;
use crate::owner::Process;
use crate::sys::ReleaseWatch;

/// What a waiter gathers on its way to the lock and lets go of once it holds the lock, or gives
/// up: the watch it slept on, its spare successor file if unused, and the stale inodes it locked
/// on the way (and its spare's unnamed descriptor, once the spare has a name). They are closed at once, so that the lock is seen on the PID file alone, but not
/// by the caller: final closes are slow (see `closer.rs`).
pub(super) struct Leftovers {
    pub(super) me: Process,
    /// Whether the closer thread was told to expect these (see `closer.rs`).
    pub(super) expected: bool,
    pub(super) watch: Option<ReleaseWatch>,
    pub(super) spare: Option<Option<(File, Metadata)>>,
    pub(super) stale: Vec<File>,
    /// When this acquisition first asked readers to step aside since it last saw a holder (see
    /// `step_aside.rs`): it asks for a bounded time in all, over all its tries.
    pub(super) asked: Option<Instant>,
}

impl Leftovers {
    /// Nothing gathered yet, for the process `me`.
    pub(super) fn new(me: Process) -> Self {
        Leftovers {
            me,
            expected: false,
            watch: None,
            spare: None,
            stale: Vec::new(),
            asked: None,
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let watch = self.watch.take();
        let unused = self.spare.take().flatten().map(|(unused, _)| unused);
        let stale = std::mem::take(&mut self.stale);
        let nothing = watch.is_none() && unused.is_none() && stale.is_empty();
        let items = (watch, unused, stale);
        if self.expected {
            closer::hand_over(self.me, items);
        } else if !nothing {
            // A file replaced under us between the lock and the check; no wait came first.
            closer::close_later(self.me, items);
        }
    }
}
