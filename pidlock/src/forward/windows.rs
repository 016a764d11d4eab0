//! Windows: a named pipe named from the lock file's volume serial number and file index
//! (`\\.\pipe\pidlock-<volume>-<index>`), open to the current user alone (see
//! `sys/windows/pipe.rs`). I/O on a connection is non-blocking (`PIPE_NOWAIT`) and retried with
//! a short backoff until its deadline, since synchronous pipe I/O cannot time out; an idle
//! listener still sleeps in `ConnectNamedPipe`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::windows::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_BUSY, ERROR_PIPE_NOT_CONNECTED,
};
use windows_sys::Win32::Storage::FileSystem::SECURITY_IDENTIFICATION;

use super::untrusted_error;
use crate::sys::{self, Backoff, pipe};

/// The pipe for the lock file `id`.
fn pipe_name((volume, index): sys::FileId) -> String {
    format!(r"\\.\pipe\pidlock-{volume:016x}-{index:016x}")
}

/// The pipe for the lock file at `lock`; `NotFound` without a file.
fn name_for(lock: &Path) -> io::Result<String> {
    match sys::path_identity(lock)? {
        Some(id) => Ok(pipe_name(id)),
        None => Err(io::ErrorKind::NotFound.into()),
    }
}

/// The holder's pipe: one instance always waits for the next client, so the name stays ours
/// from the first instance on.
pub(crate) struct Server {
    name: String,
    waiting: Mutex<Option<std::os::windows::io::OwnedHandle>>,
}

impl Server {
    /// Claims the pipe for the lock at `lock`. Pipes go with their last handle, so nothing
    /// stale can be in the way; an instance that exists belongs to someone else, and is
    /// refused.
    pub(crate) fn bind(lock: &Path) -> io::Result<Server> {
        let name = name_for(lock)?;
        let first = pipe::create_pipe(&name, true)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create the pipe {name}: {e}")))?;
        Ok(Server {
            name,
            waiting: Mutex::new(Some(first)),
        })
    }

    /// Blocks until a client connects.
    pub(crate) fn accept(&self) -> io::Result<Conn> {
        let taken = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let instance = match taken {
            Some(instance) => instance,
            None => pipe::create_pipe(&self.name, false)?,
        };
        pipe::connect_pipe(&instance)?;
        // The next instance before serving this one: the name never lapses.
        let next = pipe::create_pipe(&self.name, false)?;
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = Some(next);
        Conn::new(File::from(instance))
    }

    /// Nothing to remove: the pipe's name goes with its last handle.
    pub(crate) fn remove(&self, _lock: &Path) {}

    /// Wakes the listener thread from `ConnectNamedPipe`.
    pub(crate) fn wake(&self, _lock: &Path) {
        let _ = connect_to(&self.name, Instant::now() + Duration::from_millis(100));
    }
}

/// Connects to the holder of the lock at `lock`, and only to one of our own user: pipe names
/// are global, so another user may have created the lock's pipe first (with a DACL that lets
/// us in) to receive every second launch's arguments. The process serving the pipe must run
/// as our user; when that cannot be read (the process is gone, or will not let us query it),
/// it is not trusted either.
pub(crate) fn connect(lock: &Path, deadline: Instant) -> io::Result<Conn> {
    let name = name_for(lock)?;
    let conn = connect_to(&name, deadline)?;
    // On an error `conn` closes unwritten: nothing is sent.
    trust(&name, pipe::server_user(&conn.file))?;
    Ok(conn)
}

/// Whether the server of the pipe `name`, as `server_user` read it (its user and PID, or why
/// they could not be read), may receive our message: only if it runs as our user.
fn trust(name: &str, server: io::Result<(pipe::Sid, u32)>) -> io::Result<()> {
    let (sid, pid) = server.map_err(|e| {
        untrusted_error(format!(
            "cannot tell which user serves the pipe {name}: {e}"
        ))
    })?;
    match pipe::is_current_user(&sid) {
        Ok(true) => Ok(()),
        Ok(false) => Err(untrusted_error(format!(
            "process {pid}, serving the pipe {name}, runs as {}, not as us",
            sid.to_sddl().unwrap_or_else(|_| "another user".to_owned())
        ))),
        Err(e) => Err(untrusted_error(format!(
            "cannot read our own user to compare with the pipe {name}'s server: {e}"
        ))),
    }
}

fn connect_to(name: &str, deadline: Instant) -> io::Result<Conn> {
    loop {
        // Identification only: the holder may learn who we are, not act as us.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .security_qos_flags(SECURITY_IDENTIFICATION)
            .open(name)
        {
            Ok(file) => return Conn::new(file),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                pipe::wait_pipe(name, left);
            }
            Err(e) => return Err(e),
        }
    }
}

/// One connection, either end.
pub(crate) struct Conn {
    file: File,
}

impl Conn {
    fn new(file: File) -> io::Result<Conn> {
        pipe::set_nowait(&file)?;
        Ok(Conn { file })
    }

    /// Fills `buf`, or fails with `TimedOut` at `deadline` and `UnexpectedEof` if the peer
    /// closes first.
    pub(crate) fn read_exact_by(
        &mut self,
        mut buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<()> {
        let mut backoff = Backoff::new();
        let closed = |e: &io::Error| {
            e.raw_os_error().is_some_and(|code| {
                [ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED].contains(&(code as u32))
            })
        };
        while !buf.is_empty() {
            // Only what is there: an empty pipe must not read as a closed one (see
            // `pipe::available`).
            match pipe::available(&self.file) {
                Ok(0) => {
                    wait(&mut backoff, deadline)?;
                    continue;
                }
                Ok(_) => {}
                Err(e) if closed(&e) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) => return Err(e),
            }
            match self.file.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                    wait(&mut backoff, deadline)?;
                }
                Err(e) if closed(&e) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` by `deadline`.
    pub(crate) fn write_all_by(&mut self, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
        let mut backoff = Backoff::new();
        while !buf.is_empty() {
            match self.file.write(buf) {
                // The pipe's buffer is full: the reader has not caught up.
                Ok(0) => wait(&mut backoff, deadline)?,
                Ok(n) => buf = &buf[n..],
                Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether the client runs as our user (the pipe's DACL already lets no one else open it).
    pub(crate) fn same_user(&self) -> io::Result<bool> {
        Ok(pipe::client_is_current_user(&self.file)?.0)
    }

    /// "process 42".
    pub(crate) fn describe_peer(&self) -> String {
        match pipe::client_is_current_user(&self.file) {
            Ok((_, pid)) => format!("process {pid}"),
            Err(_) => "an unknown process".to_owned(),
        }
    }
}

/// Sleeps a little, or fails with `TimedOut` if `deadline` has passed.
fn wait(backoff: &mut Backoff, deadline: Instant) -> io::Result<()> {
    if Instant::now() >= deadline {
        return Err(io::ErrorKind::TimedOut.into());
    }
    backoff.wait(deadline);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;

    use windows_sys::Win32::Security::WinLocalSystemSid;

    use super::trust;
    use crate::forward::untrusted;
    use crate::sys::pipe::{self, Sid};

    const NAME: &str = r"\\.\pipe\pidlock-test";

    #[test]
    fn a_pipe_served_by_our_own_user_is_trusted() {
        let me = pipe::current_user().unwrap();
        trust(NAME, Ok((me, 42))).unwrap();
    }

    /// Wine runs every process as one user, so no real pipe can be served by another: the
    /// decision is fed LocalSystem's SID, as `server_user` would read it from a squatter
    /// running as LocalSystem.
    #[test]
    fn a_pipe_served_by_another_user_is_untrusted() {
        let system = Sid::well_known(WinLocalSystemSid).unwrap();
        let e = trust(NAME, Ok((system, 42))).unwrap_err();
        let reason = untrusted(&e).expect("an Untrusted error");
        assert!(
            reason.contains("process 42") && reason.contains("runs as S-1-5-18, not as us"),
            "{reason}"
        );
    }

    /// A server whose user cannot be read (gone, or not ours to query) is not trusted either.
    #[test]
    fn a_pipe_whose_server_cannot_be_read_is_untrusted() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let e = trust(NAME, Err(denied)).unwrap_err();
        let reason = untrusted(&e).expect("an Untrusted error");
        assert!(
            reason.contains("cannot tell which user serves the pipe"),
            "{reason}"
        );
    }
}
