//! Losing a lock while holding it: what a fleet lock adds to the contract.
//!
//! A file lock cannot be lost while its holder lives. A lock held by a server session can: the
//! server restarts or fails over, an administrator terminates the session, the network
//! partitions. The holder must then step down before anyone else can get in. Each acquisition
//! gets a [`LossSignal`], which the connection's watcher fires once; [`LossWatch`] is the
//! holder's read-only view of it, cheap to ask and possible to block on, and callbacks
//! registered with the lock run when it fires.

// Without a network backend nothing can be lost; the types stay for the macro's options.
#![cfg_attr(not(feature = "postgres"), allow(dead_code))]

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How a held lock was lost: which lock, where, and why.
///
/// ```
/// # #[cfg(feature = "postgres")] {
/// use pidlockfile::PgLock;
///
/// let mut lock = PgLock::new("postgres://db.internal/app", "nightly-report");
/// lock.on_lost(|lost: &pidlockfile::Lost| eprintln!("error: {lost}; shutting down"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    name: String,
    server: String,
    reason: String,
}

impl Lost {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the lock lived, such as `PostgreSQL at db.internal:5432`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Why the session ended, such as `connection closed` or `no answer from the server for
    /// 10s`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Lost {
    /// `nightly-report lost its lock on PostgreSQL at db.internal:5432 (connection closed)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lost its lock on {} ({})",
            self.name, self.server, self.reason
        )
    }
}

impl std::error::Error for Lost {}

/// A callback for a lost lock. It runs on a thread of its own, so it may block or exit.
pub(crate) type OnLost = Arc<dyn Fn(&Lost) + Send + Sync + 'static>;

#[derive(Debug)]
enum State {
    /// The lock is held and nothing has gone wrong.
    Held,
    /// The session ended while the lock was held.
    Lost(Lost),
    /// The holder let go first: whatever happens to the session now is not a loss.
    Released,
}

/// Something to undo at once when the lock ends by a loss (close the session, forget the
/// process-wide record): run on the firing thread, before anyone hears of the loss.
pub(crate) type LetGo = Box<dyn FnOnce() + Send + 'static>;

/// One acquisition's loss: fired by the connection's watcher, at most once.
pub(crate) struct LossSignal {
    name: String,
    server: String,
    state: Mutex<State>,
    changed: Condvar,
    /// Threads blocked in [`wait`](Self::wait), counted under `state`'s lock: a change wakes
    /// them only if there are any, since a wake-up is a system call on the release's path.
    waiting: AtomicUsize,
    callbacks: Vec<OnLost>,
    /// Run once, on the loss, before the callbacks and before `lost()` reports it.
    let_go: Mutex<Vec<LetGo>>,
}

impl fmt::Debug for LossSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossSignal")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

impl LossSignal {
    pub(crate) fn new(name: &str, server: &str, callbacks: Vec<OnLost>) -> Arc<LossSignal> {
        Arc::new(LossSignal {
            name: name.to_owned(),
            server: server.to_owned(),
            state: Mutex::new(State::Held),
            changed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            callbacks,
            let_go: Mutex::new(Vec::new()),
        })
    }

    /// Runs `undo` when the lock is lost, or at once if it already is. A loss lets go of
    /// everything at the moment it is decided, whether or not the holder's object is dropped
    /// (pitfall 17).
    pub(crate) fn on_loss_let_go(&self, undo: LetGo) {
        // Under the state's lock, which `fire` holds while it runs them: never pushed too late.
        let state = self.state();
        match *state {
            State::Lost(_) => {
                drop(state);
                undo();
                return;
            }
            // Released first: there will be no loss to let go at.
            State::Released => return,
            State::Held => {}
        }
        self.let_go
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(undo);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock is gone for `reason`. Only the first call of a held lock counts; the
    /// callbacks run on a thread of their own, so that the watcher is never blocked by them.
    pub(crate) fn fire(&self, reason: &str) {
        let lost = {
            let mut state = self.state();
            if !matches!(*state, State::Held) {
                return;
            }
            // Let go first, under the state's lock: whoever sees the loss finds the session
            // closed and the process free to take the lock again.
            let undo =
                std::mem::take(&mut *self.let_go.lock().unwrap_or_else(PoisonError::into_inner));
            for undo in undo {
                undo();
            }
            let lost = Lost {
                name: self.name.clone(),
                server: self.server.clone(),
                reason: reason.to_owned(),
            };
            *state = State::Lost(lost.clone());
            self.wake_waiting(state);
            lost
        };
        if self.callbacks.is_empty() {
            return;
        }
        let callbacks = self.callbacks.clone();
        let run = move || {
            for callback in &callbacks {
                callback(&lost);
            }
        };
        // If no thread can be made, run them here: late is better than never.
        let spawned = thread::Builder::new()
            .name("pidlock-lost".to_owned())
            .spawn(run.clone());
        if spawned.is_err() {
            run();
        }
    }

    /// The holder let go: a session ending from now on is not a loss. Returns the loss if it
    /// came first.
    pub(crate) fn release(&self) -> Option<Lost> {
        let mut state = self.state();
        match &*state {
            State::Lost(lost) => Some(lost.clone()),
            State::Held | State::Released => {
                *state = State::Released;
                // What a loss would have let go of is not needed any more, and it refers back
                // to this signal (the session's watch does): dropped, or neither would be.
                let let_go = std::mem::take(
                    &mut *self.let_go.lock().unwrap_or_else(PoisonError::into_inner),
                );
                // Threads blocked in `LossWatch::wait` return `None` now.
                self.wake_waiting(state);
                drop(let_go);
                None
            }
        }
    }

    pub(crate) fn lost(&self) -> Option<Lost> {
        match &*self.state() {
            State::Lost(lost) => Some(lost.clone()),
            State::Held | State::Released => None,
        }
    }

    /// Wakes the threads blocked in [`wait`](Self::wait), if any, once `state` has changed.
    fn wake_waiting(&self, state: MutexGuard<'_, State>) {
        let any = self.waiting.load(Ordering::Relaxed) > 0;
        drop(state);
        if any {
            self.changed.notify_all();
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> Option<Lost> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let state = self.state();
        // Counted while the state's lock is held, and uncounted on every way out.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let (state, outcome) = self.wait_counted(state, deadline);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        drop(state);
        outcome
    }

    fn wait_counted<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State>, Option<Lost>) {
        loop {
            match &*state {
                State::Lost(lost) => {
                    let lost = lost.clone();
                    return (state, Some(lost));
                }
                State::Released => return (state, None),
                State::Held => {}
            }
            state = match deadline {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return (state, None);
                    };
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// A view of one acquisition's loss that can be handed to other threads: ask it
/// ([`is_lost`](Self::is_lost), no I/O) or block on it ([`wait`](Self::wait)).
///
/// ```no_run
/// # #[cfg(feature = "postgres")] {
/// use std::time::Duration;
/// use pidlockfile::PgLock;
///
/// let guard = PgLock::lock("postgres://db.internal/app", "nightly-report", Some(Duration::from_secs(5)))?;
/// let watch = guard.loss_watch();
/// std::thread::spawn(move || {
///     if let Some(lost) = watch.wait(None) {
///         eprintln!("error: {lost}; exiting");
///         std::process::exit(75);
///     }
/// });
/// // ... work, checking `guard.is_lost()` before each step that must not run twice ...
/// # }
/// # Ok::<(), pidlockfile::LockError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LossWatch {
    signal: Arc<LossSignal>,
}

impl LossWatch {
    pub(crate) fn new(signal: Arc<LossSignal>) -> LossWatch {
        LossWatch { signal }
    }

    /// Whether the lock was lost. A lock released by its holder is not lost.
    pub fn is_lost(&self) -> bool {
        self.signal.lost().is_some()
    }

    /// How the lock was lost, if it was.
    pub fn lost(&self) -> Option<Lost> {
        self.signal.lost()
    }

    /// Blocks until the lock is lost (`Some`), released by its holder (`None`), or `timeout`
    /// passes (`None`). `None` as the timeout waits without a limit.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Lost> {
        self.signal.wait(timeout)
    }
}

/// The name of a loss, for messages: `UnlockError::Lost`'s fields.
pub(crate) fn unlock_error(lost: Lost) -> crate::UnlockError {
    crate::UnlockError::Lost {
        path: PathBuf::from(lost.name),
        server: lost.server,
        reason: lost.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn the_first_loss_counts_and_runs_the_callbacks_once() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let callback: OnLost = Arc::new(move |lost: &Lost| {
            let _ = tx.lock().unwrap().send(lost.to_string());
        });
        let signal = LossSignal::new("job", "PostgreSQL at db:5432", vec![callback]);
        let watch = LossWatch::new(Arc::clone(&signal));
        assert!(!watch.is_lost());
        assert_eq!(watch.wait(Some(Duration::from_millis(1))), None);
        signal.fire("connection closed");
        signal.fire("something later");
        assert!(watch.is_lost());
        let message = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            message,
            "job lost its lock on PostgreSQL at db:5432 (connection closed)"
        );
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        assert_eq!(
            watch.wait(None).map(|l| l.reason().to_owned()),
            Some("connection closed".to_owned())
        );
        assert!(signal.release().is_some());
    }

    #[test]
    fn a_release_is_not_a_loss_and_ends_a_wait() {
        let signal = LossSignal::new("job", "PostgreSQL at db:5432", Vec::new());
        let watch = LossWatch::new(Arc::clone(&signal));
        let (started, waiting) = std::sync::mpsc::channel();
        let waiter = thread::spawn(move || {
            started.send(()).unwrap();
            watch.wait(None)
        });
        waiting.recv().unwrap();
        // Let the waiter reach the condition variable (a missed wake-up would hang here).
        thread::sleep(Duration::from_millis(50));
        signal.release();
        signal.fire("connection closed");
        assert_eq!(waiter.join().unwrap(), None);
        assert!(signal.lost().is_none());
    }

    /// What a loss would let go of refers back to the signal (a session's watch holds it): a
    /// release drops it, and one registered after the release is dropped at once, or the two
    /// would keep each other, and the session's socket, alive.
    #[test]
    fn a_release_drops_what_a_loss_would_have_let_go_of() {
        struct Dropped(mpsc::Sender<()>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let signal = LossSignal::new("job", "PostgreSQL at db:5432", Vec::new());
        let (tx, dropped) = mpsc::channel();
        let (before, after) = (Dropped(tx.clone()), Dropped(tx));
        signal.on_loss_let_go(Box::new(move || drop(before)));
        assert!(dropped.try_recv().is_err());
        assert!(signal.release().is_none());
        assert!(dropped.try_recv().is_ok());
        signal.on_loss_let_go(Box::new(move || drop(after)));
        assert!(dropped.try_recv().is_ok());
        assert_eq!(Arc::strong_count(&signal), 1);
    }
}
