//! Who this process is, and which lock files it holds.
//!
//! A PID alone does not name a process: a holder that is PID 1 in a container can fork a child
//! into a new PID namespace where the child is PID 1 as well, and two containers sharing a
//! volume can both run their program as PID 1. So a process is its PID together with its PID
//! namespace, and "do I hold this lock?" is answered from a record this process keeps of the
//! inodes it has locked, never from the PID written in the file.

use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
        let parent =
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get().unsigned_abs());
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
/// parent's value and makes a fresh one, without ever touching the parent's: the parent's
/// locks, which some thread of the parent (such as the closer) may have held at the fork,
/// stay locked forever in the child.
pub(crate) struct PerProcess<T> {
    slot: Mutex<Option<(Process, Arc<T>)>>,
}

impl<T> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess {
            slot: Mutex::new(None),
        }
    }

    /// This process's value, made by `make` if it has none yet. `me` is the calling process.
    pub(crate) fn get(&self, me: Process, make: impl FnOnce() -> T) -> Arc<T> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((owner, value)) if *owner == me => Arc::clone(value),
            _ => {
                let value = Arc::new(make());
                // The parent's value, if any, is forgotten rather than dropped here: its
                // destructor is the parent's business.
                if let Some(inherited) = slot.replace((me, Arc::clone(&value))) {
                    std::mem::forget(inherited);
                }
                value
            }
        }
    }
}

/// One lock file this process holds: the locked inode, and the thread that took it.
#[derive(Debug)]
struct Entry {
    dev: u64,
    ino: u64,
    owner: Process,
    thread: ThreadId,
}

/// Every lock this process holds, through any `PidLockFile`. A forked child inherits a copy of
/// the parent's entries; they name the parent and are ignored, then dropped, by the child.
///
/// The mutex is held for a few instructions at a time and never across a system call, so a
/// `fork` from another thread cannot leave it locked for the child in practice.
static HELD: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn with_entries<T>(f: impl FnOnce(&mut Vec<Entry>) -> T) -> T {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut held)
}

/// Records that `owner` (the calling process) now holds the inode `dev`/`ino`.
pub(crate) fn record(owner: Process, dev: u64, ino: u64) {
    let thread = thread::current().id();
    with_entries(|held| {
        held.retain(|e| e.owner == owner);
        held.push(Entry {
            dev,
            ino,
            owner,
            thread,
        });
    });
}

/// Forgets the lock on `dev`/`ino` that `owner` recorded.
pub(crate) fn forget(owner: Process, dev: u64, ino: u64) {
    with_entries(|held| {
        if let Some(at) = held
            .iter()
            .position(|e| e.owner == owner && e.dev == dev && e.ino == ino)
        {
            held.swap_remove(at);
        }
    });
}

/// The thread of this process that holds the inode `dev`/`ino`, if this process holds it.
pub(crate) fn holding_thread(dev: u64, ino: u64) -> Option<ThreadId> {
    let me = Process::current();
    with_entries(|held| {
        held.iter()
            .find(|e| e.owner == me && e.dev == dev && e.ino == ino)
            .map(|e| e.thread)
    })
}
