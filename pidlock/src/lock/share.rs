//! Handing the lock on: a supervisor writing its child's PID into the file, and sharing the
//! locked descriptor with a job of child processes, as `flock(1)` does.

use std::io;

use super::PidLockFile;
use crate::error::LockError;
use crate::pidfile;

impl PidLockFile {
    /// Writes `pid` into the PID file of the lock this instance holds, in place of this
    /// process's own, for a supervisor that holds the lock on behalf of a child it started (as
    /// the `pidlock run` command does): `kill $(cat app.pid)` then reaches the child, not the
    /// supervisor. The lock stays with this process, and lasts until it is released or this
    /// process dies, whatever becomes of `pid`: the supervisor must not outlive the child's
    /// work for long, nor let the child outlive it.
    ///
    /// Like every write of the PID, the new one goes over the old, so readers never see an
    /// empty or torn file. Fails with [`LockError::LockFailed`] if this instance does not hold
    /// the lock in this process, if `pid` is not a PID (`1..=i32::MAX`), or if the write fails.
    ///
    /// ```
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-set-pid-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// lock.acquire(None)?;
    /// let mut child = std::process::Command::new("true").spawn()?;
    /// lock.set_pid(child.id())?;
    /// assert_eq!(lock.read_pid(), Some(child.id()));
    /// child.wait()?;
    /// lock.release()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_pid(&mut self, pid: u32) -> Result<(), LockError> {
        let file = match &self.held {
            Some(held) if held.owner.is_current() => &held.file,
            _ => {
                return Err(self.failed(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "this PidLockFile does not hold the lock, so it may not write the PID file",
                )));
            }
        };
        if pidfile::parse(pid.to_string().as_bytes()) != Some(pid) {
            return Err(self.failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{pid} is not a process ID"),
            )));
        }
        file.metadata()
            .and_then(|meta| pidfile::write(file, pid, meta.len()))
            .map_err(|e| self.failed(e))
    }
}

/// Sharing the lock with a job of child processes, as `flock(1)` does: the kernel keeps a
/// `flock` for as long as any descriptor of the locked open file is open, in any process.
#[cfg(unix)]
impl PidLockFile {
    /// The locked descriptor, while this process holds the lock; `None` otherwise.
    ///
    /// It is close-on-exec (pitfall 8). A program that wants a child to hold the lock too
    /// duplicates it without that flag for the child (`rustix::io::dup`) and passes it on; the
    /// lock then lasts until the last copy is closed, and must be let go with
    /// [`detach`](Self::detach), never [`release`](Self::release), which would unlock it under
    /// the child's feet.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-locked-fd-{}.pid", std::process::id()));
    /// let mut lock = pidlockfile::PidLockFile::new(&path);
    /// assert!(lock.locked_fd().is_none());
    /// lock.acquire(None)?;
    /// assert!(lock.locked_fd().is_some());
    /// lock.release()?;
    /// # Ok::<(), pidlockfile::Error>(())
    /// ```
    pub fn locked_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.held
            .as_ref()
            .filter(|held| held.owner.is_current())
            .map(|held| held.file.as_fd())
    }

    /// Stops holding the lock through this instance without unlocking it, and hands over the
    /// locked descriptor: the lock now lasts while that descriptor, or any copy of it that
    /// children inherited, is open. Nothing is unlinked or emptied, and release and drop do
    /// nothing from here on. `None` if this process does not hold the lock.
    ///
    /// The file is left with the last PID written to it. It cannot be removed safely while
    /// others may still hold the lock (a newcomer would create and lock a new file beside
    /// them, pitfall 4); once the last copy is closed it is an unlocked file, which the next
    /// holder takes over and readers count as free (pitfall 1). To tidy up, take the lock
    /// again with a fresh instance and release that: it succeeds only when nobody holds it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pidlockfile::PidLockFile;
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-detach-{}.pid", std::process::id()));
    /// let mut lock = PidLockFile::new(&path);
    /// lock.acquire(None)?;
    /// let fd = lock.detach().expect("held");
    /// assert!(lock.is_locked() && !lock.i_am_locking());
    /// drop(fd);
    /// assert!(!lock.is_locked());
    /// let mut tidy = PidLockFile::new(&path);
    /// tidy.acquire(Some(Duration::ZERO))?;
    /// tidy.release()?;
    /// assert!(!path.exists());
    /// # Ok::<(), pidlockfile::Error>(())
    /// ```
    pub fn detach(&mut self) -> Option<std::os::fd::OwnedFd> {
        let held = self.held.take()?;
        if !held.owner.is_current() {
            // Inherited across fork: this process's copy is closed, as on drop.
            return None;
        }
        crate::owner::forget(held.owner, held.dev, held.ino);
        Some(held.file.into())
    }
}
