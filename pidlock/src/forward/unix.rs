//! Unix: a Unix domain socket beside the PID file (`app.pid` -> `app.pid.sock`).
//!
//! The socket has mode 0600 and lives in a directory that other users cannot write into (or
//! that is sticky, like `/tmp`), so they can neither reach it nor replace it; and every peer's
//! user is checked all the same (`SO_PEERCRED` on Linux, `getpeereid` on macOS and the BSDs),
//! because the mode is set just after `bind`, not atomically with it.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The socket's mode: the user's alone.
const SOCKET_MODE: u32 = 0o600;

/// The socket for the lock file at `lock`: its path with `.sock` appended.
pub(crate) fn socket_path(lock: &Path) -> PathBuf {
    let mut path = lock.as_os_str().to_owned();
    path.push(".sock");
    PathBuf::from(path)
}

/// The holder's listening socket.
pub(crate) struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file we bound, so that we remove only that one.
    id: (u64, u64),
}

impl Server {
    /// Binds the socket for the lock at `lock`, replacing whatever a crashed holder left
    /// there. The caller holds the lock: nobody else may be listening on this path.
    pub(crate) fn bind(lock: &Path) -> io::Result<Server> {
        let path = socket_path(lock);
        check_directory(&path)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a directory", path.display()),
                ));
            }
            // A stale socket (or anything else planted there): unlink the name only, never
            // following a symlink.
            Ok(_) => fs::remove_file(&path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove the stale {}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
        })?;
        let meta = fs::symlink_metadata(&path)?;
        let id = (meta.dev(), meta.ino());
        let server = Server { listener, path, id };
        if let Err(e) = fs::set_permissions(&server.path, fs::Permissions::from_mode(SOCKET_MODE)) {
            server.remove(lock);
            return Err(e);
        }
        Ok(server)
    }

    /// Blocks until a peer connects.
    pub(crate) fn accept(&self) -> io::Result<Conn> {
        let (stream, _) = self.listener.accept()?;
        Conn::new(stream)
    }

    /// Unlinks the socket file, if it is still the one we bound.
    pub(crate) fn remove(&self, _lock: &Path) {
        if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = fs::remove_file(&self.path);
        }
    }

    /// Wakes the listener thread from `accept` (it then sees that it must stop).
    pub(crate) fn wake(&self, _lock: &Path) {
        let _ = connect_to(&self.path, Instant::now() + Duration::from_millis(100));
    }
}

/// Refuses a directory where another user could replace our socket: one that others may
/// write into, unless it is sticky (`/tmp`), where they cannot remove what is ours.
fn check_directory(socket: &Path) -> io::Result<()> {
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let meta = fs::metadata(dir)?;
    let mode = meta.mode();
    let writable_by_others = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if meta.uid() != rustix::process::geteuid().as_raw() && writable_by_others && !sticky {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by other users and not sticky, so they could replace the socket",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Connects to the holder of the lock at `lock`.
pub(crate) fn connect(lock: &Path, deadline: Instant) -> io::Result<Conn> {
    connect_to(&socket_path(lock), deadline)
}

/// On Linux a blocking `connect` to a listener whose backlog is full waits: bound it with the
/// send timeout, which Linux applies to `connect` on Unix sockets.
#[cfg(target_os = "linux")]
fn connect_to(path: &Path, deadline: Instant) -> io::Result<Conn> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType, sockopt};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(left(deadline)?))?;
    let addr = SocketAddrUnix::new(path)?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        // EAGAIN here is the send timeout passing while the backlog was full.
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INPROGRESS) => {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Err(e) => return Err(e.into()),
    }
    Conn::new(UnixStream::from(fd))
}

/// Elsewhere a full backlog refuses the connection at once.
#[cfg(not(target_os = "linux"))]
fn connect_to(path: &Path, deadline: Instant) -> io::Result<Conn> {
    left(deadline)?;
    Conn::new(UnixStream::connect(path)?)
}

/// The time left until `deadline`, or a timeout if none is.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// One connection, either side.
pub(crate) struct Conn {
    stream: UnixStream,
}

impl Conn {
    fn new(stream: UnixStream) -> io::Result<Conn> {
        // A peer that has gone must make our write fail, not kill us with SIGPIPE (on Linux
        // `send` says so per call instead).
        #[cfg(not(target_os = "linux"))]
        rustix::net::sockopt::set_socket_nosigpipe(&stream, true)?;
        Ok(Conn { stream })
    }

    /// Fills `buf`, or fails with `TimedOut` at `deadline` and `UnexpectedEof` if the peer
    /// closes first.
    pub(crate) fn read_exact_by(
        &mut self,
        mut buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<()> {
        while !buf.is_empty() {
            self.stream.set_read_timeout(Some(left(deadline)?))?;
            match self.stream.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` by `deadline`.
    pub(crate) fn write_all_by(&mut self, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            self.stream.set_write_timeout(Some(left(deadline)?))?;
            match self.send(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(
            &self.stream,
            buf,
            rustix::net::SendFlags::NOSIGNAL,
        )?)
    }

    #[cfg(not(target_os = "linux"))]
    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut self.stream, buf)
    }

    /// Whether the peer runs as our effective user.
    pub(crate) fn same_user(&self) -> io::Result<bool> {
        Ok(self.peer()?.0 == rustix::process::geteuid().as_raw())
    }

    /// "process 42 of user 1000", as far as the kernel tells.
    pub(crate) fn describe_peer(&self) -> String {
        match self.peer() {
            Ok((uid, Some(pid))) => format!("process {pid} of user {uid}"),
            Ok((uid, None)) => format!("a process of user {uid}"),
            Err(_) => "an unknown process".to_owned(),
        }
    }

    /// The peer's user, and its PID where the kernel says.
    #[cfg(target_os = "linux")]
    fn peer(&self) -> io::Result<(u32, Option<u32>)> {
        let cred = rustix::net::sockopt::socket_peercred(&self.stream)?;
        Ok((
            cred.uid.as_raw(),
            u32::try_from(cred.pid.as_raw_nonzero().get()).ok(),
        ))
    }

    #[cfg(not(target_os = "linux"))]
    fn peer(&self) -> io::Result<(u32, Option<u32>)> {
        let (uid, _gid) = nix::unistd::getpeereid(&self.stream)?;
        Ok((uid.as_raw(), None))
    }
}
