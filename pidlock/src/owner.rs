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
//! Each process makes, on first use, an identity: its PID, a generation number, a mark that
//! only it carries (on Linux a record lock on a private memfd, see `sys/marker.rs`), and the
//! inode of its PID namespace (`/proc/self/ns/pid`), read then, before any fork. A lock records
//! the identity that took it, and the identity of the caller is checked with three syscalls:
//! `getpid()`, which tells an ordinary forked child at once (its PID differs), then an `fstat`
//! that the mark's descriptor still names the memfd and one `fcntl(F_OFD_GETLK)` on it, which
//! tells the maker from a child in a nested PID namespace that has the maker's very PID, at any
//! depth. A process that is not its identity's maker makes its own, with a higher generation
//! than anything in the memory it inherited.
//!
//! # When the mark cannot answer
//!
//! The mark can be lost by its very maker: a descriptor sweep closes it, reopening the memfd
//! through `/proc/self/fd` and closing that descriptor ends the record lock, a thread with a
//! descriptor table of its own (`unshare(CLONE_FILES)`) made it where other threads cannot see
//! it, the kernel has no `F_OFD_GETLK` (then `F_GETLK` serves, which cannot show the caller its
//! own lock), or no mark could be made (no memfds; the descriptor limit at first use, in which
//! case it is made again at a later check). The holder must never lose itself, so then the
//! recorded PID namespace decides, read again (1.8 µs): the same PID in the same PID namespace
//! is the same process. The identity is kept (its generation, and so every lock recorded under
//! it), and a mark that lost its lock takes it again, so that the next check is cheap again.
//! The mark is never closed through a descriptor number that may belong to another table.
//!
//! Without `/proc` (the namespace reads as 0 when the identity is made) that fallback cannot
//! tell the maker from a nested child with its PID, and the answer errs on the safe side where
//! it can: a mark whose descriptor is gone means "another process" (what a daemonising child
//! that closed everything sees), so a holder without `/proc` whose mark a sweep closed no
//! longer counts as the holder (its `release` says `NotMyLock`; the kernel lock still ends when
//! its file is closed). The one case where a child in a nested PID namespace with its parent's
//! PID is taken for the parent: **no mark could ever be made in the parent (no memfds, or every
//! check at the descriptor limit) and `/proc` is not mounted**; then the PID alone decides.
//!
//! Why not something cheaper:
//! - A fork detector read without a syscall (a page marked `MADV_WIPEONFORK`, a counter bumped
//!   by a `pthread_atfork` handler) needs `mmap` or `pthread_atfork`, which are `unsafe`, and
//!   this crate has no `unsafe` outside the Windows module. std caches nothing of the kind
//!   (`std::process::id()` is a `getpid` each time).
//! - The PID and parent PID (the old key of this cache) are both copied by the scenario above.
//! - The PID namespace's inode is exact but costs a path walk in `/proc` (1.8 µs here) at every
//!   check; it is kept as the fallback where the mark cannot answer.
//! - The mark's descriptor number alone: a nested child can close it and put a file it locks
//!   itself there, which `F_OFD_GETLK` would report as held by the caller's PID; hence the
//!   `fstat` in every check.
//!
//! Measured on the development VM: a `getpid` costs 62 ns and the `fcntl` 143 ns, so a check
//! with its `fstat` is about 0.3 µs, against an acquire and release cycle of about 10 µs. The
//! first use costs a `memfd_create`, an `fcntl` and the `/proc` walk for the namespace (about
//! 3.4 µs, once per process). A process that is not Linux has no PID namespaces; there the PID
//! alone decides and the mark is empty.

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
    /// `None` where no mark could be made (see [`Identity::retry_mark`]).
    mark: Option<ProcessMark>,
    /// The PID namespace's inode, read when the identity was made, in the process that made
    /// it (read in a forked child it would be the child's own): what tells the maker from a
    /// nested child with its PID when the mark cannot. 0 where `/proc` is not mounted.
    pid_namespace: u64,
    /// Whether making the mark failed for want of descriptors or memory (a first use at the
    /// descriptor limit), so that it is worth trying again.
    retry_mark: bool,
}

impl Identity {
    fn new(pid: u32, generation: u64) -> Identity {
        let mark = ProcessMark::new();
        let retry_mark = mark.as_ref().is_err_and(ProcessMark::worth_retrying);
        Identity {
            pid,
            generation,
            mark: mark.ok(),
            pid_namespace: crate::sys::pid_namespace(),
            retry_mark,
        }
    }

    fn process(&self) -> Process {
        Process {
            pid: self.pid,
            generation: self.generation,
        }
    }

    /// Whether the caller, whose PID is this identity's, is the process that made it, given
    /// what the mark said (see the module documentation).
    fn is_maker(&self, sighting: Sighting) -> bool {
        match sighting {
            Sighting::Maker => return true,
            Sighting::Other => return false,
            Sighting::Unlocked | Sighting::Lost => {}
        }
        if self.pid_namespace != 0 {
            // Exact: the same PID in the same PID namespace is the same process.
            return crate::sys::pid_namespace() == self.pid_namespace;
        }
        // No `/proc` when the identity was made.
        match sighting {
            // A descriptor of the memfd that is gone is what a daemonising child that closed
            // everything sees as much as the maker after a sweep: the safe answer is "not me".
            Sighting::Lost if self.mark.is_some() => false,
            // No mark was ever made: the PID decides (documented as the one case where a child
            // in a nested PID namespace with its parent's PID is taken for it).
            Sighting::Lost => true,
            // The memfd is there and unlocked: the maker lost its lock (which takes `/proc` to
            // do), or it is dead and the caller took its PID. Either way the caller is the only
            // process left that can answer for the lock.
            Sighting::Unlocked | Sighting::Maker => true,
            Sighting::Other => false,
        }
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
    /// The calling process: a `getpid`, and on the mark an `fstat` and an `fcntl` (see the
    /// module documentation).
    pub(crate) fn current() -> Process {
        Self::identity().process()
    }

    fn identity() -> Arc<Identity> {
        let pid = crate::sys::current_pid();
        loop {
            let cached = IDENTITY.load_full();
            let replacement = match &cached {
                Some(identity) if identity.pid == pid => {
                    let sighting = identity
                        .mark
                        .as_ref()
                        .map_or(Sighting::Lost, |mark| mark.sighting(pid));
                    match sighting {
                        Sighting::Maker => return Arc::clone(identity),
                        _ if identity.is_maker(sighting) => {
                            // Ours, and it stays ours: the same generation, so everything this
                            // process recorded under it (the locks it holds) is still found.
                            if let Some(mark) = &identity.mark {
                                if sighting == Sighting::Unlocked {
                                    mark.relock();
                                }
                                return Arc::clone(identity);
                            }
                            if !identity.retry_mark {
                                return Arc::clone(identity);
                            }
                            let again = Identity::new(pid, identity.generation);
                            if again.mark.is_none() {
                                return Arc::clone(identity);
                            }
                            Arc::new(again)
                        }
                        _ => Self::fresh(pid),
                    }
                }
                _ => Self::fresh(pid),
            };
            let previous = IDENTITY.compare_and_swap(&cached, Some(Arc::clone(&replacement)));
            let swapped = match (&*previous, &cached) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if swapped {
                drop(previous);
                // The replaced identity's mark: a forked child's copy of its parent's, closed
                // if no other thread still looks at it and the number still names it here.
                if let Some(old) = cached.and_then(|old| Arc::try_unwrap(old).ok())
                    && old.pid != pid
                    && let Some(mark) = old.mark
                {
                    mark.close();
                }
                return replacement;
            }
            // Another thread of this process made one first: use it, and close the mark made
            // here (in this thread's descriptor table).
            drop(previous);
            if let Ok(ours) = Arc::try_unwrap(replacement)
                && let Some(mark) = ours.mark
            {
                mark.close();
            }
        }
    }

    /// A new identity for a process that is not the one that made the cached identity.
    fn fresh(pid: u32) -> Arc<Identity> {
        Arc::new(Identity::new(
            pid,
            GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1,
        ))
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
    Process::identity().pid_namespace
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
    /// it on (which counts only for guarded functions, see [`held_by_thread`]). `None` for a
    /// lock taken through the runtime API, whose `PidLockFile` or guard may have been moved to
    /// any thread since: then no thread is taken for its holder.
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
/// that `task` wakes, running on the calling thread (see [`held_by_thread`] for why the thread
/// counts only for `#[single_instance]` functions).
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
/// waiting for itself: for a `#[single_instance]` function, the calling thread, if `task` is
/// `None`; else the async task `task` wakes. Only holders that are known for sure count (see
/// [`Entry::thread`]): a lock taken through the runtime API is never taken for the caller's,
/// since its guard may have moved to another thread that will let go of it.
///
/// Across the two kinds of caller: a task waits for itself when a guarded plain function on
/// its thread holds the lock (`#[single_instance] fn main` that runs the runtime: it cannot let
/// go while the thread runs the task), and a guarded plain function when the task that got the
/// lock on its thread holds it (it is called from the task's body, or it blocks the thread the
/// task needs). Both go by the thread the task got the lock on, so a task that moved to
/// another worker thread since is not recognised there, and a guarded plain function on the
/// thread it left is refused. A waker names a task, not a future, so two guarded calls joined
/// within one task (`join!`) count as one caller.
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

/// Whether the calling thread holds the inode `dev`/`ino` through a `#[single_instance]`
/// function running on it, for a plain `acquire`: a lock that an async task holds does not
/// count, since the task may run on any worker thread by now (a multi-threaded runtime moves
/// it at any `.await`), and the thread it got the lock on must then wait its turn.
pub(crate) fn held_by_thread(dev: u64, ino: u64) -> bool {
    let thread = thread::current().id();
    with_entries(Process::current(), |held| {
        held.iter()
            .any(|e| e.is(dev, ino) && e.task.is_none() && e.thread == Some(thread))
    })
}
