//! How an acquirer waits: a blocking `flock` without a deadline, the release watch with one,
//! and the non-blocking try that rides out readers' shared-lock probes.

use std::fs::{File, TryLockError};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use std::path::Path;

use super::PidLockFile;
use super::file::parent_dir;
use super::leftovers::Leftovers;
use crate::closer;
use crate::step_aside::Request;
use crate::sys::{self, ReleaseWatch};

impl PidLockFile {
    /// Waits for the holder of `file` to let go (until `deadline`, or without a limit) and locks
    /// it: `Ok(false)` at the deadline or once `cancelled`. While it waits, it gets ready for
    /// the handoff: a successor file for `at`, and the thread that will close what the waiter
    /// leaves behind (`left`, see `closer.rs`).
    pub(super) fn wait_for_release(
        &self,
        file: &File,
        at: &Path,
        deadline: Option<Instant>,
        cancelled: Option<&AtomicBool>,
        left: &mut Leftovers,
    ) -> io::Result<bool> {
        // Get ready for the handoff while there is time: a successor file, and the
        // thread that will close what we leave behind (see `closer.rs`).
        // A kept file is never unlinked, so there is no name for a successor to take.
        if left.spare.is_none() {
            left.spare = Some(if self.keep_file {
                None
            } else {
                sys::prepare_spare(parent_dir(at), left.me.pid())
            });
        }
        if !left.expected {
            closer::expect(left.me);
            left.expected = true;
        }
        match (deadline, cancelled) {
            (None, None) => lock_blocking(file),
            // A blocking flock cannot be interrupted: a cancellable wait watches.
            (None, Some(cancelled)) => lock_before(file, None, left, Some(cancelled)),
            (Some(deadline), _) => lock_before(file, Some(deadline), left, cancelled),
        }
    }
}

/// Waits as long as it takes for the lock.
fn lock_blocking(file: &File) -> io::Result<bool> {
    loop {
        match sys::lock_exclusive(file) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Tries for the lock until `deadline` (`None`: without a limit) or until `cancelled`,
/// sleeping between tries until the file is closed by someone (the holder's release), not for
/// fixed intervals. The caller has tried once already. The watch, and when readers were first
/// asked to step aside, are kept in `left`.
fn lock_before(
    file: &File,
    deadline: Option<Instant>,
    left: &mut Leftovers,
    cancelled: Option<&AtomicBool>,
) -> io::Result<bool> {
    /// How far ahead a wait without a deadline looks; the safety re-check comes first anyway.
    const FAR: Duration = Duration::from_secs(3600);
    // Where the kernel queues waiters itself (Windows), it wakes us with the lock.
    if let Some(locked) = sys::wait_in_kernel(file, deadline, cancelled) {
        return locked;
    }
    let me = left.me;
    let watch = left.watch.get_or_insert_with(|| ReleaseWatch::new(me));
    // Arm, then try again: a release between the caller's try and the watch would otherwise go
    // unnoticed until the safety re-check.
    watch.arm(file);
    loop {
        if cancelled.is_some_and(|c| c.load(Ordering::Acquire)) {
            return Ok(false);
        }
        // Shared locks that stay are waited out like a holder, within the deadline.
        let patience = deadline.map_or(SHARED_PATIENCE, |d| {
            d.saturating_duration_since(Instant::now())
                .min(SHARED_PATIENCE)
        });
        if try_lock(file, patience, 0, &mut left.asked)? == Try::Locked {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        // A caller that may go away is looked at every `CANCEL_CHECK`: it sets a flag, which
        // makes no event the kernel could wake us with.
        let wake = deadline.unwrap_or(now + FAR);
        let wake = match cancelled {
            Some(_) => wake.min(now + CANCEL_CHECK),
            None => wake,
        };
        watch.wait(wake);
    }
}

/// How often a cancellable wait (an `async fn`'s helper thread) looks at its flag.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// How long [`try_lock`] rides out shared locks at least, even for a zero timeout. A reader's
/// probe holds its shared lock for microseconds, so readers probing back to back leave a gap
/// well within this; shared locks that stay in the way this long belong to some other program
/// (`flock -s`).
pub(super) const SHARED_PATIENCE: Duration = Duration::from_millis(200);

/// How many tries in a row must find only shared locks in the way before [`try_lock`] gives up
/// on a short timeout's patience, besides [`SHARED_PATIENCE`] of wall time. A probe's shared
/// lock comes and goes, and one try in a gap is enough; another program's `flock -s` stays, and
/// is in the way at every try. Counting tries stretches the patience with the scheduler: on a
/// loaded machine the waiter runs a few times in 200 ms, and still gets its hundred looks.
/// Unloaded, the tries take about 200 ms anyway.
///
/// Neither count is what keeps busy readers out of the way (measured for issue 15, portable
/// build, a machine at load 7): a reader is mostly preempted on its way back from the `flock`
/// that took its shared lock, and holds the lock for all the time it waits to run again, so with
/// 8 readers in tight loops some reader's lock was in the way at every try. Readers step aside
/// when asked (see `step_aside.rs`). Where the lock table answers (Linux outside containers) or
/// `F_GETLK` does (macOS, FreeBSD), readers take no lock at all.
pub(super) const SHARED_TRIES: u32 = 100;

/// What one attempt at the exclusive lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Try {
    /// We hold it now.
    Locked,
    /// Someone holds it exclusively: a holder.
    Held,
    /// Only shared locks were in the way, for all of the patience given.
    SharedOnly,
}

/// One non-blocking attempt at the exclusive lock, riding out readers' probes for up to
/// `patience`.
///
/// A holder's lock is exclusive; a reader's probe (see `probe.rs`) is a shared lock held for an
/// instant. If a shared lock of our own goes through, nobody holds the exclusive one and only
/// shared locks are in the way: we ask readers to step aside (see `step_aside.rs`) and try
/// again, so a lock that nobody holds is never reported as held, however busy its readers are.
/// Between tries we yield, then sleep a little longer each time. It gives up once `patience`
/// has passed and at least `min_tries` tries in a row found only shared locks (0 where a
/// deadline bounds the wait: then the clock decides). The request is withdrawn on return.
/// `asked` is when this acquisition first asked since it last saw a holder (see
/// `step_aside.rs`).
pub(super) fn try_lock(
    file: &File,
    patience: Duration,
    min_tries: u32,
    asked: &mut Option<Instant>,
) -> io::Result<Try> {
    let mut pause = Duration::ZERO;
    let mut shared_since = None;
    let mut tries: u32 = 0;
    // Not asked yet, or asked (`None` inside where the file's times could not be set).
    let mut request: Option<Option<Request>> = None;
    loop {
        match sys::try_lock_exclusive(file) {
            Ok(()) => return Ok(Try::Locked),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e),
        }
        match sys::try_lock_shared(file) {
            Ok(()) => sys::unlock(file)?,
            Err(TryLockError::WouldBlock) => {
                // A holder: shared locks seen after it are new ones, worth asking about again.
                *asked = None;
                return Ok(Try::Held);
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        match &mut request {
            None => request = Some(Request::make(file, asked)),
            Some(made) => made.iter_mut().for_each(Request::renew),
        }
        tries = tries.saturating_add(1);
        if shared_since.get_or_insert_with(Instant::now).elapsed() > patience && tries >= min_tries
        {
            return Ok(Try::SharedOnly);
        }
        if pause.is_zero() {
            thread::yield_now();
        } else {
            thread::sleep(pause);
        }
        pause = (pause * 2).clamp(Duration::from_micros(20), Duration::from_millis(2));
    }
}

/// The error for a lock that nobody holds but shared locks kept from us for the whole timeout
/// (or [`SHARED_PATIENCE`]): not a holder, so not `AlreadyLocked` or `LockTimeout`.
pub(super) fn shared_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "nobody holds the lock, but shared locks kept it from being taken: another program \
         holds the file with `flock -s`",
    )
}
