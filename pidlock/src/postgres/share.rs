//! Handing a held fleet lock's session on to child processes, as a `flock` is passed on to a
//! job: the lock then lasts as long as any of them keeps the socket open.

#[cfg(unix)]
use std::io;

use super::PgLock;

impl PgLock {
    /// A duplicate of the held session's socket, for child processes to inherit, so that the
    /// lock lasts as long as any of them runs, as a `flock` passed on to a job does: the server
    /// ends a session only when its connection closes, and a connection closes only when the
    /// last process that has the socket open exits (or closes it).
    ///
    /// The descriptor is close-on-exec; duplicate it without that flag for the child (as
    /// `rustix::io::dup` does), or clear the flag in the child. The children need not, and must
    /// not, read or write it: the session is spoken to by this process only, and the kernel
    /// answers the server's keepalive probes by itself, also under TLS, which the children
    /// cannot speak.
    ///
    /// From this call on, [`release`](Self::release) and the drop close this process's copy of
    /// the connection and never unlock: an unlock would free the lock under the feet of the
    /// children that still run. If none is left, closing the last copy ends the session, and
    /// frees the lock, as at once as an unlock would.
    ///
    /// What the children give up once this process is gone: nobody notices a loss any more (a
    /// terminated session, a server restart or failover, a partition longer than twice
    /// [`lost_after`](Self::lost_after), after which the server's keepalives end the session),
    /// so nobody stops them when the lock goes; and nobody can read the fencing token.
    ///
    /// **Every copy counts, this process's too.** The returned descriptor, and any duplicate of
    /// it this process keeps, hold the session (and the lock) as a child's copy does:
    /// [`release`](Self::release) returns `Ok` but the lock stays held until this process has
    /// closed them all. Drop them before the release, as below. On Linux, an
    /// [`acquire`](Self::acquire) on this object while a copy of the last shared socket is still
    /// open here is refused at once ([`LockError::AlreadyLocked`](crate::LockError::AlreadyLocked) naming this process) rather
    /// than waiting for itself; another `PgLock` object, or another platform, would wait.
    ///
    /// Unix only. An error if this instance holds no lock, or has lost it.
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let mut lock = pidlockfile::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// lock.acquire(None)?;
    /// let socket = lock.share_session()?;
    /// // Inherited by the child (and by every process it starts) under its own number.
    /// let inherited = rustix::io::dup(&socket)?;
    /// drop(socket);
    /// let status = Command::new("./report.sh").status()?;
    /// drop(inherited);
    /// // Closes this process's last copy: the lock goes once report.sh and the children it
    /// // left running have all exited.
    /// lock.release()?;
    /// # let _ = status;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(unix)]
    pub fn share_session(&mut self) -> io::Result<std::os::fd::OwnedFd> {
        let not_held = io::Error::new(
            io::ErrorKind::NotConnected,
            format!(
                "the fleet lock {} on {} is not held by this instance",
                self.name,
                self.server()
            ),
        );
        let Some(held) = self.held.as_mut() else {
            return Err(not_held);
        };
        if !held.owner.is_current() || held.signal.lost().is_some() {
            return Err(not_held);
        }
        let socket = held.session.share()?;
        held.shared = true;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = format!("/proc/self/fd/{}", socket.as_raw_fd());
            self.shared_socket = std::fs::read_link(fd).ok();
        }
        Ok(socket)
    }
}

/// Whether this process has a descriptor open on what `link` names (`socket:[inode]`, as
/// `/proc/self/fd` shows it). `false` where `/proc` cannot tell.
pub(super) fn still_open_here(link: &std::path::Path) -> bool {
    std::fs::read_dir("/proc/self/fd").is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == link))
    })
}
