//! The one small tokio runtime that drives this process's PostgreSQL connections, and the
//! bridges that let blocking code (and code already inside someone else's runtime) wait for it.
//!
//! A connection must be driven all the time, not only while a call is running, so that a
//! session closed by the server is noticed at once (see `session.rs`). A background thread
//! drives every session of the process whenever no caller does: the runtime is a
//! current-thread one, whose driving can pass from thread to thread.
//!
//! A call that only sends a statement and reads its answer runs on that thread ([`block_on`]):
//! the statement leaves as soon as that thread runs. A release, which the next holder waits
//! for, writes its statement from the releasing thread instead, and waits there for the answer
//! that the runtime reads ([`poll_here`], see `connection.rs`). A wait for a lock runs on the
//! waiting thread itself ([`wait_here`]), which then drives every session until the wait ends:
//! the server's grant wakes that thread from its own `epoll_wait`, not the background one,
//! which would have to wake the waiter in turn (one cross-thread wake-up, 30 to 50 µs on the
//! 2-core VM of issue 15's figures, on the handoff's path).

use std::future::Future;
use std::io;
use std::process;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Notify;

/// The runtime, the process that built it, and who drives it.
struct Driven {
    pid: u32,
    runtime: Runtime,
    /// Which thread drives the runtime.
    turn: Mutex<Turn>,
    /// Signalled when `turn` changes.
    turn_changed: Condvar,
    /// Tells the background thread to let go of the runtime, for a caller that wants it.
    wanted: Notify,
    /// Set for a runtime that another thread's, built at the same time, replaced: its
    /// background thread ends.
    unused: AtomicBool,
}

/// The runtime of this process: its threads do not exist in a forked child, which builds one of
/// its own. Lock-free, so that a child forked while another thread was building one finds no
/// lock held.
static RUNTIME: ArcSwapOption<Driven> = ArcSwapOption::const_empty();

fn runtime() -> io::Result<Arc<Driven>> {
    let me = process::id();
    let mut ours: Option<Arc<Driven>> = None;
    loop {
        let current = RUNTIME.load_full();
        if let Some(current) = &current
            && current.pid == me
        {
            if let Some(ours) = ours {
                ours.unused.store(true, Ordering::Release);
                ours.wanted.notify_one();
                // Its thread may let go first, and dropping a runtime panics inside another
                // one, where the caller may be: a race at the first use leaks one idle runtime.
                std::mem::forget(ours);
            }
            return Ok(Arc::clone(current));
        }
        let built = match &ours {
            Some(built) => Arc::clone(built),
            None => {
                let built = Arc::new(Driven {
                    pid: me,
                    runtime: Builder::new_current_thread()
                        .thread_name("pidlock-postgres")
                        .enable_io()
                        .enable_time()
                        .build()
                        .map_err(|e| not_started(&e))?,
                    turn: Mutex::new(Turn::Background),
                    turn_changed: Condvar::new(),
                    wanted: Notify::new(),
                    unused: AtomicBool::new(false),
                });
                // Its thread before anyone can find it: a runtime that nobody drives would
                // leave a held lock unwatched.
                let driver = Arc::clone(&built);
                let spawned = thread::Builder::new()
                    .name("pidlock-postgres".to_owned())
                    .spawn(move || drive(&driver));
                if let Err(e) = spawned {
                    // Dropping a runtime panics inside another one, where the caller may be.
                    std::mem::forget(built);
                    return Err(not_started(&e));
                }
                ours = Some(Arc::clone(&built));
                built
            }
        };
        let previous = RUNTIME.compare_and_swap(&current, Some(Arc::clone(&built)));
        let swapped = match (&*previous, &current) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if swapped {
            // Never dropped: its tasks drive the sessions of held locks for as long as the
            // process lives, and a parent's runtime, inherited across fork, has no threads here
            // to shut down (dropping it would wait for them forever).
            std::mem::forget(Arc::clone(&built));
            if let Some(parents) = current {
                std::mem::forget(parents);
            }
            return Ok(built);
        }
        // Another thread stored one first: look again.
    }
}

fn not_started(e: &io::Error) -> io::Error {
    io::Error::other(format!("cannot start the PostgreSQL client's thread: {e}"))
}

/// Who drives the runtime: the background thread, or a caller of [`wait_here`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Background,
    /// A caller has asked the background thread to let go, and waits until it has.
    Wanted,
    Caller,
}

/// The background thread: drives the runtime until a caller of [`wait_here`] wants it, lets go
/// (so that the caller finds the runtime free), and takes it back when the caller is done.
fn drive(driven: &Driven) {
    loop {
        // One turn of the scheduler first (tasks, I/O, timers): `block_on` polls its own future
        // before anything else, and a caller that wanted the runtime back at once would
        // otherwise leave the sessions undriven through back-to-back handovers.
        driven.runtime.block_on(async {
            tokio::task::yield_now().await;
            driven.wanted.notified().await;
        });
        if driven.unused.load(Ordering::Acquire) {
            return;
        }
        let mut turn = driven.turn.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Also while waiting here: the next caller may ask before this thread has seen
            // the last one go, and this thread does not hold the runtime while it waits.
            if *turn == Turn::Wanted {
                *turn = Turn::Caller;
                driven.turn_changed.notify_all();
            }
            if *turn == Turn::Background {
                break;
            }
            turn = driven
                .turn_changed
                .wait(turn)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Runs `future` on the runtime's background thread and blocks the calling thread until it is
/// done. Works from any thread, including a worker of another async runtime (which it blocks,
/// like any blocking call).
pub(crate) fn block_on<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    runtime()?.runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("the PostgreSQL client's thread stopped"))
}

/// Runs `future`, which waits on the process's only session, on the calling thread, which
/// drives the runtime until it is done: so that what ends the wait wakes this thread directly.
///
/// It is [`block_on`] where another session is alive in the process (that session's work would
/// run on this thread's stack, and with the release sent from the releasing thread, a wait
/// driven here measured no faster for a holder in the same process: 1.22x to 1.25x the bare
/// client against 1.19x to 1.20x), while another thread's wait drives it, and inside another
/// tokio runtime, where a thread cannot drive a second one.
///
/// While it waits, the calling thread runs every task of the runtime on its own stack: a
/// reconnect, another thread's statement: measured, a debug build's needed up to 512 KiB of
/// stack there (a Rust thread has 2 MiB unless told otherwise).
pub(crate) fn wait_here<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Only where tokio says plainly that no runtime is here: in a thread-local destructor it
    // cannot tell, and driving one there would abort the process.
    let outside_tokio = match tokio::runtime::Handle::try_current() {
        Ok(_) => false,
        Err(e) => e.is_missing_context(),
    };
    if SESSIONS.load(Ordering::Relaxed) > 1 || !outside_tokio {
        return block_on(future);
    }
    let driven = runtime()?;
    let Some(_caller) = Caller::enter(&driven) else {
        return block_on(future);
    };
    // The background thread has let go: this thread takes the runtime as its own, which keeps
    // tokio from parking it on a thread-local that may be gone (in a thread-local destructor)
    // as it would while another thread drove it. Boxed: on the stack, the wait's state would
    // add to what the caller's thread needs (a 64 KiB thread's acquire needed 96).
    Ok(driven.runtime.block_on(Box::pin(future)))
}

/// The one thread in [`wait_here`] that drives the runtime, until it drops this, even if its
/// future panics.
struct Caller<'a>(&'a Driven);

impl<'a> Caller<'a> {
    /// Waits until the background thread has let go of the runtime; `None` if another caller
    /// drives it.
    fn enter(driven: &'a Driven) -> Option<Caller<'a>> {
        let mut turn = driven.turn.lock().unwrap_or_else(PoisonError::into_inner);
        if *turn != Turn::Background {
            return None;
        }
        *turn = Turn::Wanted;
        driven.wanted.notify_one();
        while *turn != Turn::Caller {
            turn = driven
                .turn_changed
                .wait(turn)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Some(Caller(driven))
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        *self.0.turn.lock().unwrap_or_else(PoisonError::into_inner) = Turn::Background;
        self.0.turn_changed.notify_all();
    }
}

/// Polls `future` on the calling thread, without a runtime, until it is done or `limit` has
/// passed (`None`). Its first poll is the one `start` runs (see `connection::Driver::send_here`,
/// which writes the statement that this poll queues); what wakes it later is the runtime's
/// thread, which reads the answer.
///
/// Needs nothing of tokio's on this thread, nor any thread-local: it works in a thread-local
/// destructor, in another runtime's worker (which it blocks, like any blocking call) and on a
/// thread that drives nothing.
pub(crate) fn poll_here<F: Future>(
    future: F,
    limit: Duration,
    start: impl FnOnce(&mut dyn FnMut()),
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let woken = Arc::new(Woken::default());
    let waker = Waker::from(Arc::clone(&woken));
    let mut cx = Context::from_waker(&waker);
    let mut polled = Poll::Pending;
    start(&mut || polled = future.as_mut().poll(&mut cx));
    let deadline = Instant::now().checked_add(limit);
    loop {
        if let Poll::Ready(output) = polled {
            return Some(output);
        }
        if !woken.wait(deadline) {
            return None;
        }
        polled = future.as_mut().poll(&mut cx);
    }
}

/// A waker for [`poll_here`]: a flag and a condvar, not the thread's own parker, which a
/// thread-local destructor may find gone.
#[derive(Default)]
struct Woken {
    flag: Mutex<bool>,
    changed: Condvar,
}

impl Woken {
    /// Waits until woken (and takes the wake-up), or until `deadline` (`false`).
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut flag = self.flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*flag {
            match deadline {
                None => {
                    flag = self
                        .changed
                        .wait(flag)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    flag = self
                        .changed
                        .wait_timeout(flag, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        *flag = false;
        true
    }
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        *self.flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_one();
    }
}

/// How many sessions this process has open (forked children count their parent's too, which
/// only ever sends their waits the slower way).
static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// One session, counted in [`SESSIONS`] for as long as it lives.
#[derive(Debug)]
pub(crate) struct Alive(());

impl Alive {
    pub(crate) fn new() -> Alive {
        SESSIONS.fetch_add(1, Ordering::Relaxed);
        Alive(())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        SESSIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::wait_here;

    /// Callers one after another and side by side, faster than the background thread takes the
    /// runtime back in between: each one is driven, and none waits for ever for its turn.
    #[test]
    fn callers_in_quick_succession_each_get_their_turn() {
        let (done, finished) = mpsc::channel();
        for _ in 0..2 {
            let done = done.clone();
            thread::spawn(move || {
                for i in 0..2000_u32 {
                    assert_eq!(wait_here(async move { i }).ok(), Some(i));
                }
                let _ = done.send(());
            });
        }
        for _ in 0..2 {
            finished
                .recv_timeout(Duration::from_secs(120))
                .expect("a caller waited for its turn for 2 minutes");
        }
    }
}
