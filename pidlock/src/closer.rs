//! Closing descriptors off the handoff path.
//!
//! Some closes are slow: the final close of an unlinked inode frees it, and closing an inotify
//! instance that has held a watch waits for an RCU grace period in the kernel, often
//! milliseconds. A waiter that has just been handed the lock has such descriptors to drop (the
//! stale inode it locked on the way, its unused spare file, the inotify instance it slept on),
//! and must neither make its caller wait for them nor keep them open while it holds the lock.
//! So they go to one background thread per process, which closes them and exits once idle.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::owner::Process;

/// Anything whose `Drop` closes a descriptor.
type Closing = Box<dyn Send>;

/// How long the thread waits for more work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(2);

/// The running closer thread: the process it runs in (a forked child has no such thread, only a
/// copy of this record), a number that tells one thread's channel from the next, and its queue.
struct Closer {
    owner: Process,
    generation: u64,
    queue: Sender<Closing>,
}

static CLOSER: Mutex<(u64, Option<Closer>)> = Mutex::new((0, None));

/// Starts the closer thread now if it is not running, so that starting it costs nothing later
/// on the handoff path. Called by a waiter before it sleeps.
pub(crate) fn prepare(me: Process) {
    with_queue(me, |_| {});
}

/// Closes `item` on the closer thread; if no thread can be started, closes it here. `me` is the
/// calling process, which the caller has at hand.
pub(crate) fn close_later(me: Process, item: impl Send + 'static) {
    let mut item = Some(Box::new(item) as Closing);
    with_queue(me, |queue| {
        if let Some(queued) = item.take()
            && let Err(mpsc::SendError(back)) = queue.send(queued)
        {
            item = Some(back);
        }
    });
    drop(item);
}

/// Runs `f` with the queue of a closer thread of this process, starting one if needed.
fn with_queue(me: Process, f: impl FnOnce(&Sender<Closing>)) {
    let mut state = CLOSER.lock().unwrap_or_else(PoisonError::into_inner);
    let (generations, closer) = &mut *state;
    if let Some(running) = closer
        && running.owner == me
    {
        f(&running.queue);
        return;
    }
    *generations += 1;
    let generation = *generations;
    let (queue, work) = mpsc::channel();
    let started = thread::Builder::new()
        .name("pidlock-close".to_owned())
        .spawn(move || run(generation, &work));
    if started.is_ok() {
        f(&queue);
        *closer = Some(Closer {
            owner: me,
            generation,
            queue,
        });
    } else {
        // No thread: the caller closes its descriptors itself (`close_later` drops the item
        // when the send did not happen), which is slow but correct.
        *closer = None;
    }
}

fn run(generation: u64, work: &Receiver<Closing>) {
    loop {
        match work.recv_timeout(IDLE_EXIT) {
            Ok(item) => drop(item),
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                // Senders hold the lock while they send, so an empty queue seen under the lock
                // stays empty: unregister and exit, unless work arrived meanwhile.
                let mut state = CLOSER.lock().unwrap_or_else(PoisonError::into_inner);
                if let Ok(item) = work.try_recv() {
                    drop(state);
                    drop(item);
                    continue;
                }
                if state.1.as_ref().is_some_and(|c| c.generation == generation) {
                    state.1 = None;
                }
                return;
            }
        }
    }
}
