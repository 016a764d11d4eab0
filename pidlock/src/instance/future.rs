//! Taking the lock from an `async fn` without blocking its executor, on any runtime.
//!
//! The first poll tries once, without waiting, on the executor's thread. If another holder has
//! the lock and the options allow waiting, a helper thread does the blocking wait
//! ([`PidLockFile::lock`]) and hands the guard over through a [`Waker`]: the executor's thread
//! is free meanwhile, so other tasks (among them the holder, when it is a task of the same
//! runtime) keep running. Nothing here depends on a particular runtime.
//!
//! A future dropped while its helper still waits (a `select!` that took another branch, a
//! timeout around the call) cancels the wait: the helper notices within its safety re-check
//! (100 ms), never takes the lock after that, and exits. A result the helper had already
//! taken is released.
//!
//! The lock is recorded as held by the task (its waker), not by the helper thread, so that a
//! guarded `async fn` that calls another on the same lock fails at once instead of waiting for
//! itself, while two tasks of one thread still take turns.

use std::future::Future;
use std::mem;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use super::{FirstTry, Guard, Options, first_try};
use crate::{Error, LockError, PidLockFile, PidLockGuard};

/// Takes the lock as [`acquire`](super::acquire) does, as a future that never blocks the
/// executor while it waits. See the module documentation for what dropping it early means.
pub fn acquire_async(options: &Options) -> Acquire<'_> {
    Acquire {
        options,
        stage: Stage::NotTried,
        fleet: None,
    }
}

/// A fleet lock's first try and wait, for [`Acquire`]. Function pointers, so that only the
/// fleet lock's entry point refers to its code (see `fleet.rs`).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct FleetJob {
    pub(crate) first_try: fn(&Options, Option<&Waker>) -> FirstTry,
    pub(crate) acquire: fn(&Options, Option<Arc<AtomicBool>>) -> Result<Guard, Error>,
}

impl std::fmt::Debug for FleetJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetJob")
    }
}

/// The future returned by [`acquire_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire<'a> {
    options: &'a Options,
    stage: Stage,
    /// Set for a fleet lock.
    fleet: Option<&'static FleetJob>,
}

impl<'a> Acquire<'a> {
    /// The future for a fleet lock.
    #[cfg(feature = "postgres")]
    pub(crate) fn with_fleet(options: &'a Options, job: &'static FleetJob) -> Acquire<'a> {
        Acquire {
            options,
            stage: Stage::NotTried,
            fleet: Some(job),
        }
    }
}

#[derive(Debug)]
enum Stage {
    NotTried,
    Waiting(Arc<Handoff>),
    Finished,
}

/// Shared by the future and its helper thread.
#[derive(Debug)]
struct Handoff {
    slot: Mutex<Slot>,
    /// Set when the future is dropped: the helper stops waiting.
    cancelled: Arc<AtomicBool>,
}

#[derive(Debug)]
enum Slot {
    /// The helper is waiting; wake this waker when it is done.
    Waiting(Waker),
    /// The helper is done; the future has not taken the result yet.
    Ready(Result<Guard, Error>),
    /// The future was dropped before the helper was done.
    Abandoned,
}

impl Handoff {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        // Neither side panics while holding the lock; if one did, the slot is still whole.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The helper thread: wait, then hand over the result, or let go of the lock if nobody
    /// wants it any more.
    fn wait(&self, job: Job) {
        let result = match job {
            Job::File { path, timeout } => {
                let mut lock = PidLockFile::new(path);
                lock.acquire_unless(timeout, Some(&*self.cancelled))
                    .map(|()| Guard::File(PidLockGuard::new(lock)))
                    .map_err(Error::from)
            }
            // A fleet lock's wait is on the server; a dropped future lets go of what it gets.
            Job::Fleet(options, acquire) => acquire(&options, Some(Arc::clone(&self.cancelled))),
        };
        let mut slot = self.slot();
        match mem::replace(&mut *slot, Slot::Abandoned) {
            Slot::Waiting(waker) => {
                *slot = Slot::Ready(result);
                drop(slot);
                waker.wake();
            }
            // Dropping `result` releases the lock, if it was taken.
            Slot::Abandoned | Slot::Ready(_) => {
                drop(slot);
                drop(result);
            }
        }
    }
}

/// What the helper thread waits for.
enum Job {
    File {
        path: PathBuf,
        timeout: Option<Duration>,
    },
    /// The whole fleet acquisition, notice included: even its first try is network I/O.
    Fleet(
        Options,
        fn(&Options, Option<Arc<AtomicBool>>) -> Result<Guard, Error>,
    ),
}

impl Future for Acquire<'_> {
    type Output = Result<Guard, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &this.stage {
            Stage::NotTried => {}
            Stage::Waiting(handoff) => {
                let mut slot = handoff.slot();
                return match mem::replace(&mut *slot, Slot::Abandoned) {
                    Slot::Ready(result) => {
                        drop(slot);
                        this.stage = Stage::Finished;
                        Poll::Ready(held_by(result, cx.waker()))
                    }
                    Slot::Waiting(_) | Slot::Abandoned => {
                        *slot = Slot::Waiting(cx.waker().clone());
                        Poll::Pending
                    }
                };
            }
            // Polled after it completed: it never completes again.
            Stage::Finished => return Poll::Pending,
        }
        let tried = match this.fleet {
            Some(fleet) => (fleet.first_try)(this.options, Some(cx.waker())),
            None => first_try(this.options, Some(cx.waker())),
        };
        let (path, timeout) = match tried {
            FirstTry::Done(result) => {
                this.stage = Stage::Finished;
                return Poll::Ready(held_by(result, cx.waker()));
            }
            FirstTry::Wait { path, timeout } => (path, timeout),
        };
        let handoff = Arc::new(Handoff {
            slot: Mutex::new(Slot::Waiting(cx.waker().clone())),
            cancelled: Arc::new(AtomicBool::new(false)),
        });
        let helper = Arc::clone(&handoff);
        let job = match this.fleet {
            Some(fleet) => Job::Fleet(this.options.clone(), fleet.acquire),
            None => Job::File {
                path: path.clone(),
                timeout,
            },
        };
        let spawned = thread::Builder::new()
            .name("pidlock-wait".to_owned())
            .spawn(move || helper.wait(job));
        match spawned {
            Ok(_) => {
                this.stage = Stage::Waiting(handoff);
                Poll::Pending
            }
            Err(source) => {
                this.stage = Stage::Finished;
                Poll::Ready(Err(Error::Lock(LockError::failed(&path, source))))
            }
        }
    }
}

/// Records that the task `task` wakes holds the lock it just got.
fn held_by(result: Result<Guard, Error>, task: &Waker) -> Result<Guard, Error> {
    if let Ok(guard) = &result {
        guard.hand_to_task(task);
    }
    result
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let Stage::Waiting(handoff) = &self.stage {
            handoff.cancelled.store(true, Ordering::Release);
            // A result not taken yet holds the lock: dropping it here releases it. A helper
            // still waiting sees `Abandoned` and releases what it gets.
            let unclaimed = mem::replace(&mut *handoff.slot(), Slot::Abandoned);
            drop(unclaimed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::task::Wake;

    /// A waker that reports on a channel.
    struct Signal(Mutex<mpsc::Sender<()>>);

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(());
        }
    }

    fn options(path: &std::path::Path, timeout: Option<Duration>) -> Options {
        Options {
            path: Some(path.to_owned()),
            timeout,
            quiet: true,
            program: Some("test"),
            fleet: None,
            forward: None,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pidlock-future-{name}-{}.pid", std::process::id()))
    }

    /// Holds the lock at `path` on a thread of its own until the returned sender is dropped
    /// (a holder on the polling thread would be that thread waiting for itself).
    fn held_elsewhere(path: &std::path::Path) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let path = path.to_owned();
        let holder = thread::spawn(move || {
            let guard = PidLockFile::lock(&path, None).unwrap();
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(guard);
        });
        held_rx.recv().unwrap();
        (release_tx, holder)
    }

    #[test]
    fn a_busy_lock_leaves_the_polling_thread_free_and_wakes_it_at_the_release() {
        let path = scratch("wake");
        let holder = held_elsewhere(&path);
        let options = options(&path, None);
        let mut future = acquire_async(&options);
        let (tx, rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(Signal(Mutex::new(tx))));
        let mut cx = Context::from_waker(&waker);
        // The first poll returns at once although the lock is held without a time limit.
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        drop(holder.0);
        holder.1.join().unwrap();
        rx.recv_timeout(Duration::from_secs(60))
            .expect("woken after the release");
        let guard = match Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => panic!("woken but not ready"),
        };
        // Irrefutable without the `postgres` feature.
        #[allow(irrefutable_let_patterns)]
        let Guard::File(guard) = guard else {
            panic!("a lock file's guard expected")
        };
        assert!(guard.lock_file().i_am_locking());
    }

    #[test]
    fn a_dropped_future_lets_go_of_what_its_helper_takes() {
        let path = scratch("abandon");
        let holder = held_elsewhere(&path);
        let options = options(&path, Some(Duration::from_secs(60)));
        let mut future = acquire_async(&options);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        drop(future);
        drop(holder.0);
        holder.1.join().unwrap();
        // The helper takes the lock and lets go of it; a blocking acquire then gets it.
        let again = PidLockFile::lock(&path, Some(Duration::from_secs(60))).unwrap();
        drop(again);
    }

    #[test]
    fn a_free_lock_is_taken_on_the_first_poll() {
        let path = scratch("free");
        let options = options(&path, None);
        let mut future = acquire_async(&options);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready(result) => drop(result.unwrap()),
            Poll::Pending => panic!("a free lock made the future wait"),
        }
    }
}
