//! Who this process is, and which lock files it holds.
//!
//! A PID alone does not name a process: a holder that is PID 1 in a container can fork a child
//! into a new PID namespace where the child is PID 1 as well, and two containers sharing a
//! volume can both run their program as PID 1. So a process is its PID together with its PID
//! namespace, and "do I hold this lock?" is answered from a record this process keeps of the
//! inodes it has locked, never from the PID written in the file.

use std::process;
use std::sync::{Mutex, PoisonError};
use std::thread::{self, ThreadId};

/// A process: its PID as it sees itself, and the PID namespace that PID is valid in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Process {
    pid: u32,
    pid_namespace: u64,
}

impl Process {
    /// The calling process.
    pub(crate) fn current() -> Process {
        Process {
            pid: process::id(),
            pid_namespace: crate::sys::pid_namespace(),
        }
    }

    /// Whether this is the calling process (and not, say, the parent it was forked from).
    pub(crate) fn is_current(self) -> bool {
        // The PID differs after an ordinary fork; the namespace is only worth a `stat` when the
        // PIDs match.
        self.pid == process::id() && self == Process::current()
    }

    pub(crate) fn pid(self) -> u32 {
        self.pid
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
