//! Closing descriptors off the handoff path.
//!
//! Some closes are slow: the final close of an unlinked inode frees it, and closing an inotify
//! instance that has held a watch waits for an RCU grace period in the kernel, often
//! milliseconds. A waiter that has just been handed the lock has such descriptors to drop (the
//! stale inode it locked on the way, its unused spare file, the inotify instance it slept on),
//! and must neither make its caller wait for them nor keep them open while it holds the lock.
//! So they go to one background thread per process, which closes them and exits once idle.

use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::owner::{PerProcess, Process};

/// Anything whose `Drop` closes a descriptor.
type Closing = Box<dyn Send>;

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
    items: Vec<Closing>,
}

static CLOSER: PerProcess<Closer> = PerProcess::new();

impl Closer {
    fn new() -> Self {
        Closer {
            queue: Mutex::new(Queue {
                running: false,
                items: Vec::new(),
            }),
            work: Condvar::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the closer thread now if it is not running, so that starting it costs nothing later
/// on the handoff path. Called by a waiter before it sleeps. `me` is the calling process.
pub(crate) fn prepare(me: Process) {
    let closer = CLOSER.get(me, Closer::new);
    ensure_thread(&closer, &mut closer.queue());
}

/// Closes `item` on the closer thread, or here if no thread can be started. `me` is the calling
/// process, which the caller has at hand.
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
    let mut queue = closer.queue();
    loop {
        if queue.items.is_empty() {
            let (next, idle) = closer
                .work
                .wait_timeout(queue, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            queue = next;
            if idle.timed_out() && queue.items.is_empty() {
                queue.running = false;
                return;
            }
            continue;
        }
        let items = mem::take(&mut queue.items);
        drop(queue);
        drop(items);
        queue = closer.queue();
    }
}
