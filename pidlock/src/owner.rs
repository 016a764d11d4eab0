//! Who this process is, and which lock files it holds.
//!
//! A PID alone does not name a process: a holder that is PID 1 in a container can fork a child
//! into a new PID namespace where the child is PID 1 as well, and two containers sharing a
//! volume can both run their program as PID 1. So a process is its PID together with its PID
//! namespace, and "do I hold this lock?" is answered from a record this process keeps of the
//! inodes it has locked, never from the PID written in the file.

use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::thread::{self, ThreadId};

/// A process: its PID as it sees itself, and the PID namespace that PID is valid in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Process {
    pid: u32,
    pid_namespace: u64,
}

/// The last answer of [`Process::current`]: the PID and parent PID it was found under (high and
/// low half), and the namespace. Atomics rather than a lock, so that a child forked while another
/// thread was updating them finds no lock held: it finds a PID that is not its own, and looks
/// again. `NAMESPACE` is written before `KEY`, so a `KEY` of this process's always comes with a
/// namespace of this process's (a process never changes PID namespace).
static KEY: AtomicU64 = AtomicU64::new(0);
static NAMESPACE: AtomicU64 = AtomicU64::new(0);

impl Process {
    /// The calling process.
    ///
    /// Reading the namespace costs a `stat` in `/proc` (about 5 µs), so the answer is kept for
    /// as long as the PID and the parent PID stay the same. That is safe: a forked child has
    /// another PID in its parent's namespace, and a child that has the parent's PID in another
    /// namespace cannot see its parent there, so its parent PID is 0. A process whose parent
    /// PID is 0 (a container's init, a process `nsenter` started) always looks again.
    pub(crate) fn current() -> Process {
        let pid = process::id();
        let parent = crate::sys::parent_pid();
        let key = (u64::from(pid) << 32) | u64::from(parent);
        if parent != 0 && KEY.load(Ordering::Acquire) == key {
            return Process {
                pid,
                pid_namespace: NAMESPACE.load(Ordering::Relaxed),
            };
        }
        let pid_namespace = crate::sys::pid_namespace();
        NAMESPACE.store(pid_namespace, Ordering::Relaxed);
        KEY.store(key, Ordering::Release);
        Process { pid, pid_namespace }
    }

    /// Whether this is the calling process (and not, say, the parent it was forked from).
    pub(crate) fn is_current(self) -> bool {
        // The PID alone differs after an ordinary fork.
        self.pid == process::id() && self == Process::current()
    }

    pub(crate) fn pid(self) -> u32 {
        self.pid
    }
}

/// A value of which each process has its own, made on first use. A forked child finds its
/// parent's value and makes a fresh one, without ever locking anything of the parent's: a lock
/// that some thread of the parent (such as the closer) held at the fork stays held forever in
/// the child. The slot itself is swapped without a lock.
pub(crate) struct PerProcess<T> {
    slot: ArcSwapOption<Owned<T>>,
}

struct Owned<T> {
    owner: Process,
    value: Arc<T>,
}

impl<T> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess {
            slot: ArcSwapOption::const_empty(),
        }
    }

    /// This process's value, made by `make` if it has none yet. `me` is the calling process.
    pub(crate) fn get(&self, me: Process, make: impl Fn() -> T) -> Arc<T> {
        loop {
            let current = self.slot.load_full();
            if let Some(owned) = &current
                && owned.owner == me
            {
                return Arc::clone(&owned.value);
            }
            let value = Arc::new(make());
            let fresh = Arc::new(Owned {
                owner: me,
                value: Arc::clone(&value),
            });
            let previous = self.slot.compare_and_swap(&current, Some(fresh));
            let swapped = match (&*previous, &current) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if swapped {
                // The parent's value, if any, is forgotten rather than dropped: its destructor
                // could wait for a lock the parent held.
                std::mem::forget(current);
                return value;
            }
        }
    }
}

/// One lock file this process holds: the locked inode, and who in the process holds it.
#[derive(Debug)]
struct Entry {
    dev: u64,
    ino: u64,
    /// The thread that took it, or that the lock was last handed to.
    thread: ThreadId,
    /// The async task that holds it, if an `async fn` took it: tasks of one thread take turns,
    /// so the thread alone does not say who holds it.
    task: Option<Waker>,
}

impl Entry {
    fn is(&self, dev: u64, ino: u64) -> bool {
        self.dev == dev && self.ino == ino
    }
}

/// Every lock this process holds, through any `PidLockFile`. Each process has its own (see
/// [`PerProcess`]): a forked child starts with none.
static HELD: PerProcess<Mutex<Vec<Entry>>> = PerProcess::new();

fn with_entries<T>(me: Process, f: impl FnOnce(&mut Vec<Entry>) -> T) -> T {
    let held = HELD.get(me, || Mutex::new(Vec::new()));
    let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut held)
}

/// Records that `owner` (the calling process) now holds the inode `dev`/`ino`.
pub(crate) fn record(owner: Process, dev: u64, ino: u64) {
    let thread = thread::current().id();
    with_entries(owner, |held| {
        held.push(Entry {
            dev,
            ino,
            thread,
            task: None,
        });
    });
}

/// Forgets the lock on `dev`/`ino` that `owner` recorded.
pub(crate) fn forget(owner: Process, dev: u64, ino: u64) {
    with_entries(owner, |held| {
        if let Some(at) = held.iter().position(|e| e.is(dev, ino)) {
            held.swap_remove(at);
        }
    });
}

/// Records that the lock on `dev`/`ino`, which `owner` holds, now belongs to the async task
/// that `task` wakes, running on the calling thread.
pub(crate) fn hand_to_task(owner: Process, dev: u64, ino: u64, task: &Waker) {
    let thread = thread::current().id();
    with_entries(owner, |held| {
        if let Some(entry) = held.iter_mut().find(|e| e.is(dev, ino)) {
            entry.thread = thread;
            entry.task = Some(task.clone());
        }
    });
}

/// Whether this process holds the inode `dev`/`ino`.
pub(crate) fn holds(dev: u64, ino: u64) -> bool {
    with_entries(Process::current(), |held| {
        held.iter().any(|e| e.is(dev, ino))
    })
}

/// Whether the caller itself holds the inode `dev`/`ino`, so that waiting for it would be
/// waiting for itself: the calling thread, if `task` is `None`; else the async task `task`
/// wakes. Across the two: a task waits for itself when a plain function on its thread holds
/// the lock (`#[single_instance] fn main` that runs the runtime: it cannot let go while the
/// thread runs the task), and a plain function when the task that got the lock on its thread
/// holds it (it blocks the thread the task needs). Both go by the thread, so a task that moved
/// to another worker thread since it got the lock is not recognised, and a guard kept across
/// an `.await` by plain `PidLockFile` calls counts as its thread's; a waker names a task, not a
/// future, so two guarded calls joined within one task (`join!`) count as one caller.
pub(crate) fn held_by_caller(dev: u64, ino: u64, task: Option<&Waker>) -> bool {
    let thread = thread::current().id();
    with_entries(Process::current(), |held| {
        held.iter()
            .filter(|e| e.is(dev, ino))
            .any(|e| match (task, &e.task) {
                (Some(caller), Some(holder)) => caller.will_wake(holder),
                _ => e.thread == thread,
            })
    })
}
