//! The session's socket, made here rather than inside tokio-postgres, so that its descriptor
//! can be handed to child processes (see `PgLock::share_session`), and with the kernel's
//! keepalive and user timeout set on it, so that the connection needs no process to drive it
//! once it is shared.
//!
//! tokio-postgres keeps the socket it makes to itself; `Config::connect_raw` speaks the
//! protocol over a stream the caller made. This module makes that stream the way
//! tokio-postgres (and libpq) would: each host of the connection string in turn (`hostaddr`
//! before `host` for the address, `host` for TLS), each address a name resolves to, a Unix
//! socket's `.s.PGSQL.<port>` in a directory.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;
use tokio_postgres::config::Host;

/// A connected socket to the server: TCP, or a Unix socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

/// Where one attempt connects, and the name TLS checks the server's certificate against.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: Host,
    pub(crate) port: u16,
    /// `None` for a Unix socket, and for a `hostaddr` given without a `host`.
    pub(crate) hostname: Option<String>,
}

/// The kernel's side of noticing a silent peer (see `session.rs` for the values).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub(crate) idle: Duration,
    pub(crate) interval: Duration,
    pub(crate) retries: u32,
    /// `TCP_USER_TIMEOUT`, which only Linux has: elsewhere the keepalive probes alone notice a
    /// silent server.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    pub(crate) user_timeout: Duration,
}

/// The places to try, in the connection string's order, as tokio-postgres tries them.
///
/// Refused, as libpq and tokio-postgres refuse it, when `host` and `hostaddr` both list
/// places but not as many of each: they are meant pairwise, and pairing them up any other way
/// would connect somewhere the string does not say. The message names only the counts.
pub(crate) fn targets(config: &tokio_postgres::Config) -> Result<Vec<Target>, String> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let ports = config.get_ports();
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(format!(
            "could not match {} host names to {} hostaddr values",
            hosts.len(),
            addrs.len()
        ));
    }
    Ok((0..hosts.len().max(addrs.len()))
        .filter_map(|i| {
            let host = hosts.get(i);
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            let hostname = match host {
                Some(Host::Tcp(name)) => Some(name.clone()),
                _ => None,
            };
            let addr = match addrs.get(i) {
                Some(ip) => Host::Tcp(ip.to_string()),
                None => host?.clone(),
            };
            Some(Target {
                addr,
                port,
                hostname,
            })
        })
        .collect())
}

/// Connects to `target` (each address its name resolves to, in turn), with `keepalive` set on
/// a TCP socket. As libpq does, each address gets `limit` of its own (the connection string's
/// `connect_timeout`), and one that does not answer within it is given up for the next; the
/// name lookup gets `limit` too. Returns the stream and when its address's attempt began, for
/// the caller to bound the rest of the attempt (TLS, authentication) by the same `limit`. The
/// error reads as tokio-postgres's would: `error connecting to server: ...`.
pub(crate) async fn connect(
    target: &Target,
    keepalive: Keepalive,
    limit: Duration,
) -> Result<(Stream, Instant), String> {
    let failed = |e: io::Error| format!("error connecting to server: {e}");
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timeout expired");
    match &target.addr {
        Host::Tcp(host) => {
            let lookup = tokio::net::lookup_host((host.as_str(), target.port));
            let addrs: Vec<_> = tokio::time::timeout(limit, lookup)
                .await
                .map_err(|_| failed(timed_out()))?
                .map_err(failed)?
                .collect();
            let mut last = io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve any addresses",
            );
            for addr in addrs {
                let began = Instant::now();
                match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        set_options(&stream, keepalive).map_err(failed)?;
                        return Ok((Stream::Tcp(stream), began));
                    }
                    Ok(Err(e)) => last = e,
                    Err(_) => last = timed_out(),
                }
            }
            Err(failed(last))
        }
        #[cfg(unix)]
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{}", target.port));
            let began = Instant::now();
            match tokio::time::timeout(limit, UnixStream::connect(path)).await {
                Ok(connected) => connected
                    .map(|stream| (Stream::Unix(stream), began))
                    .map_err(failed),
                Err(_) => Err(failed(timed_out())),
            }
        }
    }
}

/// The place `stream` (connected to `target`) reached, to connect to again: the very address
/// for TCP, whatever `target` names (a name may resolve to another server by now, or to
/// several); `target` itself for a Unix socket. The name for TLS stays `target`'s.
pub(crate) fn reached(stream: &Stream, target: &Target) -> Target {
    match stream {
        Stream::Tcp(tcp) => match tcp.peer_addr() {
            Ok(peer) => Target {
                addr: Host::Tcp(peer.ip().to_string()),
                port: peer.port(),
                hostname: target.hostname.clone(),
            },
            Err(_) => target.clone(),
        },
        #[cfg(unix)]
        Stream::Unix(_) => target.clone(),
    }
}

/// No Nagle delay (every message is a whole request), and the kernel's keepalive and user
/// timeout: they close a connection to a silent server even when no process of the holder
/// drives it any more.
fn set_options(stream: &TcpStream, keepalive: Keepalive) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    let probes = TcpKeepalive::new()
        .with_time(keepalive.idle)
        .with_interval(keepalive.interval);
    #[cfg(not(any(target_os = "openbsd", target_os = "redox", target_os = "solaris")))]
    let probes = probes.with_retries(keepalive.retries);
    socket.set_tcp_keepalive(&probes)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(keepalive.user_timeout))?;
    Ok(())
}

#[cfg(unix)]
impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(stream) => stream.as_fd(),
            Stream::Unix(stream) => stream.as_fd(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(unix)]
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(unix)]
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            #[cfg(unix)]
            Stream::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(stream) => stream.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    /// `shutdown(2)`, which ends the connection for every process that shares the socket: only
    /// tokio-postgres's orderly close (after `Terminate`, at a release) comes here.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(unix)]
            Stream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
