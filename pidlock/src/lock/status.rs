//! Looking at a lock without taking it: is it held, by this process, and by whom; and the
//! records that let a caller that holds it be refused at once instead of waiting for itself.

use std::fs::File;
use std::path::Path;
use std::task::Waker;

use super::PidLockFile;
use super::file::names;
use crate::owner;
use crate::{probe, sys};

impl PidLockFile {
    /// Whether a live process holds the lock, through any instance.
    ///
    /// Unlike the seed's "the file exists" rule, a file left behind by a dead holder does not
    /// count: only a held kernel lock does. On Linux this reads the kernel's lock table where it
    /// is complete, and on macOS and FreeBSD asks `fcntl(F_GETLK)`, without touching the lock;
    /// elsewhere it takes a shared lock for an instant, which concurrent `acquire` calls ride
    /// out. Such an `acquire` asks readers to step aside (in the file's access time), and then
    /// this waits for it, up to 250 ms, before it looks. A file this process may not open
    /// counts as held.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-is-locked-{}.pid", std::process::id()));
    /// std::fs::write(&path, "4242\n")?; // a leftover from a crashed holder
    /// let lock = PidLockFile::new(&path);
    /// assert!(!lock.is_locked());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.holds_path() || probe::lock_is_held(self.at())
    }

    /// Whether the current process holds the lock, through this instance or any other.
    ///
    /// This is answered from the locks this process has taken, never from the PID in the file:
    /// two containers sharing a volume may both run their program as PID 1, and a PID file
    /// saying "1" names neither for sure.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-i-am-locking-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// assert!(!lock.i_am_locking());
    /// lock.acquire(None)?;
    /// assert!(PidLockFile::new(&path).i_am_locking());
    /// # Ok::<(), pidlockfile::LockError>(())
    /// ```
    pub fn i_am_locking(&self) -> bool {
        self.holds_path()
            || sys::path_identity(self.at())
                .is_ok_and(|id| id.is_some_and(|(dev, ino)| owner::holds(dev, ino)))
    }

    /// The PID written in the lock file, read the way FHS asks readers to (whitespace, leading
    /// zeros, a missing newline and extra lines are fine). `None` if there is no file or it does
    /// not hold a valid PID. If the lock is held and the file is still empty, the holder is just
    /// starting, and this re-reads for a few milliseconds.
    ///
    /// The file of a dead holder still names it; use [`is_locked`](Self::is_locked) to know
    /// whether the PID belongs to a live holder.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-read-pid-{}.pid", std::process::id()));
    /// std::fs::write(&path, " 0042 \n")?;
    /// assert_eq!(PidLockFile::new(&path).read_pid(), Some(42));
    /// std::fs::write(&path, "0x42\n")?;
    /// assert_eq!(PidLockFile::new(&path).read_pid(), None);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_pid(&self) -> Option<u32> {
        probe::holder_pid(self.at())
    }

    /// Where the lock file is for this instance's status calls: where it was found at
    /// acquisition while this instance holds the lock (a relative path is not looked up again
    /// after a `chdir`, see `place.rs`), else the path as given.
    pub(super) fn at(&self) -> &Path {
        self.held
            .as_ref()
            .map_or(self.path.as_path(), |held| held.place.path())
    }

    /// Whether this instance holds the lock in this process (not a copy inherited by fork) on
    /// the file that `path` still names: if someone removed or replaced the file, the lock at
    /// `path` is no longer the one we hold.
    pub(super) fn holds_path(&self) -> bool {
        self.held.as_ref().is_some_and(|held| {
            held.owner.is_current()
                && names(held.place.path(), (held.dev, held.ino)).unwrap_or(false)
        })
    }

    /// Whether the thread calling holds the lock on the inode `file` has open, through any
    /// instance.
    pub(super) fn held_by_this_thread(&self, file: &File) -> bool {
        file.metadata()
            .and_then(|meta| sys::identity(file, &meta))
            .is_ok_and(|(dev, ino)| owner::held_by_thread(dev, ino))
    }

    /// Whether the caller (this thread, or the async task `task` wakes) holds the lock at
    /// `path`, through any instance: then waiting for it would never end.
    pub(crate) fn held_by_caller(path: &Path, task: Option<&Waker>) -> bool {
        sys::path_identity(path)
            .is_ok_and(|id| id.is_some_and(|(dev, ino)| owner::held_by_caller(dev, ino, task)))
    }

    /// Records that the calling thread holds this lock until it is released: for a
    /// `#[single_instance]` function, whose guard never leaves the frame that runs its body, so
    /// that a nested call on this thread is refused at once instead of waiting for itself.
    pub(crate) fn pin_to_thread(&self) {
        if let Some(held) = &self.held {
            owner::pin_to_thread(held.owner, held.dev, held.ino);
        }
    }

    /// Records that the async task `task` wakes now holds this lock (see `owner.rs`).
    pub(crate) fn hand_to_task(&self, task: &Waker) {
        if let Some(held) = &self.held {
            owner::hand_to_task(held.owner, held.dev, held.ino, task);
        }
    }
}
