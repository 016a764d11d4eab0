//! Closing descriptors off the handoff path.
//!
//! Some closes are slow: the final close of an unlinked inode frees it, and closing an inotify
//! instance that has held a watch waits for an RCU grace period in the kernel, often
//! milliseconds. A waiter that has just been handed the lock has such descriptors to drop (the
//! stale inode it locked on the way, its unused spare file, the inotify instance it slept on),
//! and must neither make its caller wait for them nor keep them open while it holds the lock.
//! So they go to one background thread per process, which closes them and exits once idle.
//!
//! Even waking that thread is too slow for a handoff: a futex wake that has to bring another
//! CPU out of idle costs more than the rest of the handoff together on a virtual machine. So a
//! waiter says before it sleeps that it will hand something over ([`expect`]), and while anyone
//! is expected the thread looks at its queue by itself, every [`POLL`] at first and less often
//! the longer the wait (up to [`POLL_MAX`]); the hand-over ([`hand_over`]) then only queues.

use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::owner::{PerProcess, Process};

/// Anything whose `Drop` closes a descriptor.
type Closing = Box<dyn Send>;

/// How often the thread first looks at its queue while a waiter is expected to hand something
/// over; each look that finds nothing doubles the next, up to [`POLL_MAX`]. What a waiter
/// leaves behind is closed within [`POLL_MAX`] of its handoff (within 100 ms of a handoff that
/// comes soon after the wait began). Measured for issue 15: a fixed 100 ms cost ten wake-ups a
/// second for as long as the process waited (50 in a 5 s wait); growing, about 9. The kernel
/// cannot wake this thread for free: a futex wake at the handoff is the very cost this
/// thread exists to keep off the handoff.
const POLL: Duration = Duration::from_millis(100);

/// The longest the look grows to.
const POLL_MAX: Duration = Duration::from_secs(1);

/// How long the thread waits for more work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(2);

/// One process's queue, and whether a thread serves it. The thread holds its own reference,
/// and touches nothing else: a fork in the middle of its work leaves the child with a locked
/// copy of this queue at most, which the child never uses (see [`PerProcess`]).
struct Closer {
    queue: Mutex<Queue>,
    work: Condvar,
}

struct Queue {
    running: bool,
    /// Waiters that have said they will hand something over, and have not yet.
    expected: usize,
    items: Vec<Closing>,
}

static CLOSER: PerProcess<Closer> = PerProcess::new();

impl Closer {
    fn new() -> Self {
        Closer {
            queue: Mutex::new(Queue {
                running: false,
                expected: 0,
                items: Vec::new(),
            }),
            work: Condvar::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Says that the caller, a waiter, will [`hand_over`] what it leaves behind when it stops
/// waiting, and starts the closer thread now if it is not running, while there is time.
/// `me` is the calling process.
pub(crate) fn expect(me: Process) {
    let closer = CLOSER.get(me, Closer::new);
    let mut queue = closer.queue();
    if ensure_thread(&closer, &mut queue) {
        queue.expected += 1;
        // From a long sleep to polling.
        closer.work.notify_one();
    }
}

/// What a waiter that called [`expect`] leaves behind, queued without waking anyone: the closer
/// thread finds it within [`POLL`]. If no thread could be started, closes it here.
pub(crate) fn hand_over(me: Process, item: impl Send + 'static) {
    let closer = CLOSER.get(me, Closer::new);
    let mut queue = closer.queue();
    queue.expected = queue.expected.saturating_sub(1);
    if queue.running {
        queue.items.push(Box::new(item));
    } else {
        drop(queue);
        drop(item);
    }
}

/// Closes `item` on the closer thread, waking it, or here if no thread can be started. For
/// what no [`expect`] announced. `me` is the calling process.
pub(crate) fn close_later(me: Process, item: impl Send + 'static) {
    let closer = CLOSER.get(me, Closer::new);
    let mut queue = closer.queue();
    if ensure_thread(&closer, &mut queue) {
        queue.items.push(Box::new(item));
        closer.work.notify_one();
    } else {
        drop(queue);
        drop(item);
    }
}

/// Makes sure a thread serves the queue; false if none can be started.
fn ensure_thread(closer: &Arc<Closer>, queue: &mut Queue) -> bool {
    if !queue.running {
        let closer = Arc::clone(closer);
        queue.running = thread::Builder::new()
            .name("pidlock-close".to_owned())
            .spawn(move || serve(&closer))
            .is_ok();
    }
    queue.running
}

fn serve(closer: &Closer) {
    // Closing is never urgent: let the threads that just took or let go of a lock run first.
    // (On Linux the nice value is per thread; elsewhere it would be the whole process's.)
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(None, 19);
    let mut queue = closer.queue();
    let mut poll = POLL;
    loop {
        if !queue.items.is_empty() {
            let items = mem::take(&mut queue.items);
            drop(queue);
            drop(items);
            queue = closer.queue();
            poll = POLL;
            continue;
        }
        let polling = queue.expected > 0;
        let (next, timeout) = closer
            .work
            .wait_timeout(queue, if polling { poll } else { IDLE_EXIT })
            .unwrap_or_else(PoisonError::into_inner);
        queue = next;
        if polling && timeout.timed_out() {
            poll = (poll * 2).min(POLL_MAX);
        } else if !polling {
            poll = POLL;
        }
        if !polling && timeout.timed_out() && queue.items.is_empty() && queue.expected == 0 {
            queue.running = false;
            return;
        }
    }
}
