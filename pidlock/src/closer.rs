//! Closing descriptors off the handoff path.
//!
//! Some closes are slow: the final close of an unlinked inode frees it, and closing an inotify
//! instance that has held a watch waits for an RCU grace period in the kernel, often
//! milliseconds. A waiter that has just been handed the lock has such descriptors to drop (the
//! stale inode it locked on the way, its unused spare file, the inotify instance it slept on),
//! and must neither make its caller wait for them nor keep them open while it holds the lock.
//! So they go to one background thread per process, which closes them and exits once idle.

use std::mem;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::owner::Process;

/// Anything whose `Drop` closes a descriptor.
type Closing = Box<dyn Send>;

/// How long the thread waits for more work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(2);

/// The work queue and whether a thread serves it. A forked child inherits a copy of this whose
/// thread does not exist in the child: it takes the queue over (closing what the parent had not
/// closed yet, which is the child's own copy) and starts a thread of its own.
struct Queue {
    owner: Option<Process>,
    running: bool,
    items: Vec<Closing>,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    owner: None,
    running: false,
    items: Vec::new(),
});

static WORK: Condvar = Condvar::new();

fn queue() -> MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the closer thread now if it is not running, so that starting it costs nothing later
/// on the handoff path. Called by a waiter before it sleeps. `me` is the calling process.
pub(crate) fn prepare(me: Process) {
    let mut queue = queue();
    ensure_thread(&mut queue, me);
}

/// Closes `item` on the closer thread, or here if no thread can be started. `me` is the calling
/// process, which the caller has at hand.
pub(crate) fn close_later(me: Process, item: impl Send + 'static) {
    let mut queue = queue();
    if ensure_thread(&mut queue, me) {
        queue.items.push(Box::new(item));
        WORK.notify_one();
    } else {
        drop(queue);
        drop(item);
    }
}

/// Makes sure a thread of this process serves the queue; false if none can be started.
fn ensure_thread(queue: &mut Queue, me: Process) -> bool {
    if queue.owner != Some(me) {
        queue.owner = Some(me);
        queue.running = false;
    }
    if !queue.running {
        queue.running = thread::Builder::new()
            .name("pidlock-close".to_owned())
            .spawn(serve)
            .is_ok();
    }
    queue.running
}

fn serve() {
    let mut queue = queue();
    loop {
        if queue.items.is_empty() {
            let (next, idle) = WORK
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
        queue = self::queue();
    }
}
