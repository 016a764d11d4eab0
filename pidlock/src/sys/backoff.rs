//! The last-resort way to wait for a release: sleep a little, then try again.

use std::thread;
use std::time::{Duration, Instant};

/// Sleeps that start short, so a quick release is noticed quickly, and grow to a cap, so a long
/// wait costs a few dozen wake-ups a second at most.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(1);
    const LONGEST: Duration = Duration::from_millis(25);

    pub(crate) fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// Sleeps for the next interval, but never past `deadline`.
    pub(crate) fn wait(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        thread::sleep(self.next.min(left));
        self.next = (self.next * 2).min(Self::LONGEST);
    }
}
