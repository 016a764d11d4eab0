//! Who this process is, and which lock files it holds.
//!
//! A PID alone does not name a process: a holder that is PID 2 of a container (under `tini` or
//! `docker run --init`) can call `unshare(CLONE_NEWPID)` and fork, and a grandchild in the new
//! namespace is PID 2 with parent PID 1 again, with a copy of the holder's memory, its
//! `PidLockFile` included. Two containers sharing a volume can both run their program as PID 1.
//! So "do I hold this lock?" is answered from a record this process keeps of the inodes it has
//! locked, never from the PID in the file, and "is this copy of a `PidLockFile` mine, or my
//! parent's?" from a process identity that no fork can copy.
//!
//! # How a process knows itself
//!
//! Each process makes, on first use, an identity: its PID, a generation number, and a mark that
//! only it carries (on Linux a record lock on a private memfd, see `sys/marker.rs`). A lock
//! records the identity that took it, and the identity of the caller is checked with two
//! syscalls: `getpid()`, which tells an ordinary forked child at once (its PID differs), then one
//! `fcntl(F_OFD_GETLK)` on the mark, which tells the maker from a child in a nested PID
//! namespace that has the maker's very PID, at any depth. A process that is not its identity's
//! maker makes its own, with a higher generation than anything in the memory it inherited.
//!
//! Why not something cheaper:
//! - A fork detector read without a syscall (a page marked `MADV_WIPEONFORK`, a counter bumped
//!   by a `pthread_atfork` handler) needs `mmap` or `pthread_atfork`, which are `unsafe`, and
//!   this crate has no `unsafe` outside the Windows module. std caches nothing of the kind
//!   (`std::process::id()` is a `getpid` each time).
//! - The PID and parent PID (the old key of this cache) are both copied by the scenario above.
//! - The PID namespace's inode (`/proc/self/ns/pid`) is exact but costs a path walk in `/proc`
//!   (1.8 µs here) at every check; it is kept as the fallback where no mark can be made.
//!
//! Measured on the development VM: a `getpid` costs 62 ns and the `fcntl` 143 ns, so a check
//! is about 0.2 µs, where the old one (a `getpid` and a `getppid`, with one more `getpid` on
//! release) was 0.13 to 0.19 µs: an acquire and release cycle (about 10 µs) pays about 0.1 µs
//! more, which the cycle benchmark cannot tell from noise. The first use costs a `memfd_create`
//! and an `fcntl` (1.6 µs) instead of the `/proc` walk (1.8 µs). A process that is not Linux
//! has no PID namespaces; there the PID alone decides and the mark is empty.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::thread::{self, ThreadId};

use arc_swap::ArcSwapOption;

use crate::sys::{ProcessMark, Sighting};

/// A process: its PID as it sees itself, and the generation of its identity, which no other
/// process whose memory holds this value can have (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Process {
    pid: u32,
    generation: u64,
}

/// The identity of the process that made it (see the module documentation).
#[derive(Debug)]
struct Identity {
    pid: u32,
    generation: u64,
    /// `None` where no mark can be made: then the PID namespace decides, read each time.
    mark: Option<ProcessMark>,
    /// The PID namespace's inode, read when first needed (`u64::MAX` until then): a process
    /// never changes PID namespace.
    pid_namespace: AtomicU64,
}

/// Not yet read.
const UNREAD: u64 = u64::MAX;

impl Identity {
    fn process(&self) -> Process {
        Process {
            pid: self.pid,
            generation: self.generation,
        }
    }

    fn pid_namespace(&self) -> u64 {
        let known = self.pid_namespace.load(Ordering::Relaxed);
        if known != UNREAD {
            return known;
        }
        let read = crate::sys::pid_namespace();
        self.pid_namespace.store(read, Ordering::Relaxed);
        read
    }
}

/// This process's identity. Swapped without a lock, so that a child forked while another thread
/// was making one finds nothing held. A forked child finds its parent's here, sees that it is
/// not its own, and makes its own.
static IDENTITY: ArcSwapOption<Identity> = ArcSwapOption::const_empty();

/// The last generation handed out. A child inherits the count, so its identity's generation is
/// higher than any generation in the memory it inherited.
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

impl Process {
    /// The calling process: a `getpid`, and on the mark an `fcntl` (see the module
    /// documentation).
    pub(crate) fn current() -> Process {
        Self::identity().process()
    }

    fn identity() -> Arc<Identity> {
        let pid = crate::sys::current_pid();
        loop {
            let cached = IDENTITY.load_full();
            let mut generation = None;
            if let Some(identity) = &cached
                && identity.pid == pid
            {
                let sighting = identity
                    .mark
                    .as_ref()
                    .map_or(Sighting::Unknown, |mark| mark.sighting(pid));
                match sighting {
                    Sighting::Maker => return Arc::clone(identity),
                    Sighting::Other => {}
                    // No mark, or ours was closed by code that closes what it does not own: the
                    // PID namespace, read when the identity was made (before any fork: read in
                    // a child, it would be the child's own), still tells the maker from a child
                    // in a nested namespace. Without `/proc` both read 0, and the PID decides.
                    // A mark that was closed leaves the namespace unread: a new identity then.
                    Sighting::Unknown => {
                        let recorded = identity.pid_namespace.load(Ordering::Relaxed);
                        if recorded != UNREAD && crate::sys::pid_namespace() == recorded {
                            if identity.mark.is_none() {
                                return Arc::clone(identity);
                            }
                            // Ours after all: the same identity, with a new mark.
                            generation = Some(identity.generation);
                        }
                    }
                }
            }
            let mark = ProcessMark::new();
            // Without a mark the namespace is what tells this process from its children later,
            // so it is read now, before any fork.
            let pid_namespace = if mark.is_some() {
                UNREAD
            } else {
                crate::sys::pid_namespace()
            };
            let fresh = Arc::new(Identity {
                pid,
                generation: generation
                    .unwrap_or_else(|| GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1),
                mark,
                pid_namespace: AtomicU64::new(pid_namespace),
            });
            let previous = IDENTITY.compare_and_swap(&cached, Some(Arc::clone(&fresh)));
            let swapped = match (&*previous, &cached) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if swapped {
                return fresh;
            }
            // Another thread of this process made one first: use it (ours is dropped, and
            // closing its memfd touches no lock of the other's).
        }
    }

    /// Whether this is the calling process (and not, say, the parent it was forked from, in
    /// this PID namespace or an ancestor of it).
    pub(crate) fn is_current(self) -> bool {
        self == Process::current()
    }

    pub(crate) fn pid(self) -> u32 {
        self.pid
    }
}

/// The PID namespace of the calling process, read once per process (see `sys::pid_namespace`).
#[cfg_attr(any(not(target_os = "linux"), pidlock_portable), allow(dead_code))]
pub(crate) fn pid_namespace() -> u64 {
    Process::identity().pid_namespace()
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
    /// The thread that holds it, where that is known for sure: a `#[single_instance]` function
    /// running on it (its guard never leaves the body's frame), or the thread an async task got
    /// it on. `None` for a lock taken through the runtime API, whose `PidLockFile` or guard may
    /// have been moved to any thread since: then no thread is taken for its holder.
    thread: Option<ThreadId>,
    /// The async task that holds it, if a guarded `async fn` took it: tasks of one thread take
    /// turns, so the thread alone does not say who holds it.
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

/// Records that `owner` (the calling process) now holds the inode `dev`/`ino`, through a value
/// that may move to any thread: no thread counts as its holder until [`pin_to_thread`] says so.
pub(crate) fn record_movable(owner: Process, dev: u64, ino: u64) {
    with_entries(owner, |held| {
        held.push(Entry {
            dev,
            ino,
            thread: None,
            task: None,
        });
    });
}

/// Records that the lock on `dev`/`ino`, which `owner` holds, is held by the calling thread
/// until it is released: a `#[single_instance]` function's guard, which never leaves the frame
/// that runs the body.
pub(crate) fn pin_to_thread(owner: Process, dev: u64, ino: u64) {
    let thread = thread::current().id();
    with_entries(owner, |held| {
        if let Some(entry) = held.iter_mut().find(|e| e.is(dev, ino)) {
            entry.thread = Some(thread);
            entry.task = None;
        }
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
            entry.thread = Some(thread);
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
/// wakes. Only holders whose thread is known count (see [`Entry::thread`]): a lock taken
/// through the runtime API is never taken for the caller's, since its guard may have moved to
/// another thread that will let go of it.
///
/// Across the two kinds of caller: a task waits for itself when a guarded plain function on
/// its thread holds the lock (`#[single_instance] fn main` that runs the runtime: it cannot let
/// go while the thread runs the task), and a plain function when the task that got the lock on
/// its thread holds it (it blocks the thread the task needs). Both go by the thread, so a task
/// that moved to another worker thread since it got the lock is not recognised; a waker names a
/// task, not a future, so two guarded calls joined within one task (`join!`) count as one
/// caller.
pub(crate) fn held_by_caller(dev: u64, ino: u64, task: Option<&Waker>) -> bool {
    held_by(dev, ino, &Caller::here(task))
}

/// Who asks whether it holds a lock already: a thread, and the async task running on it, if
/// any. Taken where the question arises and carried to where it can be answered: a fleet
/// lock's check must wait until its session has told which server it reached, and an async
/// task's acquisition connects on a helper thread, whose own identity would never match the
/// task's record.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    thread: ThreadId,
    task: Option<Waker>,
}

impl Caller {
    /// The calling thread, and the async task `task` wakes if the caller is one.
    pub(crate) fn here(task: Option<&Waker>) -> Caller {
        Caller {
            thread: thread::current().id(),
            task: task.cloned(),
        }
    }
}

/// [`held_by_caller`] for a caller taken elsewhere (see [`Caller`]).
pub(crate) fn held_by(dev: u64, ino: u64, caller: &Caller) -> bool {
    with_entries(Process::current(), |held| {
        held.iter()
            .filter(|e| e.is(dev, ino))
            .any(|e| match (&caller.task, &e.task) {
                (Some(caller), Some(holder)) => caller.will_wake(holder),
                _ => e.thread == Some(caller.thread),
            })
    })
}
