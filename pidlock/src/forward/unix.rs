//! Unix: a Unix domain socket beside the PID file (`app.pid` -> `app.pid.sock`).
//!
//! The socket has mode 0600 and lives in a directory that other users cannot write into (or
//! that is sticky, like `/tmp`), so they can neither reach it nor replace it; and every peer's
//! user is checked all the same (`SO_PEERCRED` on Linux, `getpeereid` on macOS and the BSDs),
//! because the mode is set just after `bind`, not atomically with it. The check goes both
//! ways: in a sticky directory another user may create the name before the holder, so the
//! sender checks the socket file's owner and the listening process's user before it sends.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::untrusted_error;

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
        clear_stale(&path)?;
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

/// Removes what a crashed holder of ours left at `path`: a socket file of our user that
/// refuses connections. Anything else is left alone, and listening is given up, saying why:
/// another user's socket (in a sticky directory we cannot remove it, and must not trust it),
/// a live socket (another program's own service, or another holder), a file that is not a
/// socket (someone's data), a symlink.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let leave = |kind: io::ErrorKind, what: String| {
        Err(io::Error::new(
            kind,
            format!("{} {what}; it is left alone", path.display()),
        ))
    };
    if !meta.file_type().is_socket() {
        return leave(
            io::ErrorKind::AlreadyExists,
            format!("exists and is not a socket ({})", kind_of(&meta)),
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return leave(
            io::ErrorKind::PermissionDenied,
            format!(
                "is a socket of user {}, not ours (user {me}): another user may be squatting \
                 the name, and second instances refuse to talk to it",
                meta.uid()
            ),
        );
    }
    match connect_to(path, Instant::now() + Duration::from_millis(100)) {
        // Nobody accepts on it: a crashed holder's. Unlink the name (never a symlink's target).
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove the stale {}: {e}", path.display()),
                )
            })
        }
        Ok(_) => leave(
            io::ErrorKind::AddrInUse,
            "is a live socket another process listens on".to_owned(),
        ),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => leave(
            io::ErrorKind::AddrInUse,
            "is a live socket another process listens on (its backlog is full)".to_owned(),
        ),
        Err(e) => leave(e.kind(), format!("is a socket that cannot be probed ({e})")),
    }
}

/// "a regular file", "a symlink", ... for messages.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO"
    } else {
        "a device"
    }
}

/// Refuses a directory where another user could replace our socket: one that others may
/// write into, unless it is sticky (`/tmp`), where they cannot remove what is ours. Whose the
/// directory is does not matter: our own mode-0777 directory lets anyone swap the socket.
fn check_directory(socket: &Path) -> io::Result<()> {
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let meta = fs::metadata(dir)?;
    let mode = meta.mode();
    let writable_by_others = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if writable_by_others && !sticky {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} (mode {:o}) is writable by other users and not sticky, so they could \
                 replace the socket",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Connects to the holder of the lock at `lock`, and only to one of our own user: the socket
/// file must be a socket of ours (not a symlink, not another user's: in a sticky directory
/// another user may have created the name first), and the process that accepted the
/// connection must run as our user.
pub(crate) fn connect(lock: &Path, deadline: Instant) -> io::Result<Conn> {
    let path = socket_path(lock);
    let meta = fs::symlink_metadata(&path)?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.file_type().is_socket() {
        return Err(untrusted_error(format!(
            "{} is {}, not a socket",
            path.display(),
            kind_of(&meta)
        )));
    }
    if meta.uid() != me {
        return Err(untrusted_error(format!(
            "{} belongs to user {}, not to us (user {me})",
            path.display(),
            meta.uid()
        )));
    }
    let conn = connect_to(&path, deadline)?;
    let (uid, _) = conn.peer()?;
    if uid != me {
        return Err(untrusted_error(format!(
            "the process listening on {} runs as user {uid}, not as us (user {me})",
            path.display()
        )));
    }
    Ok(conn)
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

    /// The peer's user, and its PID where the kernel says: none for a peer in another PID
    /// namespace, which `SO_PEERCRED` reports as PID 0 (its user is still known).
    #[cfg(target_os = "linux")]
    fn peer(&self) -> io::Result<(u32, Option<u32>)> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let cred = getsockopt(&self.stream, PeerCredentials)?;
        Ok((
            cred.uid(),
            u32::try_from(cred.pid()).ok().filter(|&pid| pid != 0),
        ))
    }

    #[cfg(not(target_os = "linux"))]
    fn peer(&self) -> io::Result<(u32, Option<u32>)> {
        let (uid, _gid) = nix::unistd::getpeereid(&self.stream)?;
        Ok((uid.as_raw(), None))
    }
}
