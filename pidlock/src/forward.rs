//! A second launch hands its arguments to the running instance, instead of only being refused.
//!
//! The holder of a lock listens on an endpoint tied to the lock: on Unix a Unix domain socket
//! beside the PID file (`app.pid` -> `app.pid.sock`, mode 0600), on Windows a named pipe named
//! from the lock file's volume and file index, open to the current user only. A refused
//! acquirer connects, sends one small frame (`frame.rs`: its arguments, working directory and
//! PID) and waits, within a bound, for the holder's answer, so it always learns whether its
//! message was taken.
//!
//! The holder's side is one thread of the library's, blocked in `accept` while idle (no timer,
//! no polling): each connection is read on a short-lived reader thread (a few at most, so that
//! silent peers cannot hold a real sender back), which checks the peer's user, reads the frame
//! within a deadline, answers, and calls the handler, one message at a time. A peer of another
//! user, garbage, a truncated, oversized or slow frame is answered (where it still listens),
//! logged on stderr and dropped; the listener goes on serving. A handler that panics is
//! logged, and the listener goes on too. Once the release begins nothing is accepted any more
//! (a sender then gets no answer, and tries the lock again), and the release waits until every
//! message accepted before has been handed to the handler: "accepted" never loses a message.
//!
//! The sender talks only to its own user: the socket file must be its user's socket (not a
//! symlink, not another user's, which in a sticky directory like `/tmp` anyone may create
//! first), and the process that accepted must run as its user; otherwise it sends nothing.
//!
//! The endpoint is created and removed only while its creator holds the lock, the way the PID
//! file is: so a stale socket left by a crashed holder is recognised (the lock is free, the
//! connection is refused), never trusted, and removed by the next holder before it binds. What
//! is not such a socket (another program's live socket, a file, another user's socket) is left
//! alone: the holder then does not listen, and says why on stderr, once.

mod frame;
mod instance;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as transport;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as transport;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use frame::{ANSWER_LEN, HEADER_LEN, Status};

pub(crate) use frame::MAX_MESSAGE;
pub use instance::{Forward, Pump, ServeWhile, forward, forward_async, forwarding};

/// How long a sender waits for the holder's answer, all told, by default (connect, send,
/// answer): past it, the sender behaves as if nobody listened.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the holder waits for one connection's frame to arrive whole. A slow or stalled
/// peer costs the listener at most this much before it moves on.
const READ_DEADLINE: Duration = Duration::from_secs(1);

/// What a second instance hands to the running one: its command-line arguments, working
/// directory and process ID.
///
/// ```
/// let me = pidlockfile::SecondInstance::current();
/// assert_eq!(me.pid, std::process::id());
/// assert_eq!(me.args, std::env::args_os().skip(1).collect::<Vec<_>>());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondInstance {
    /// The arguments after the program name, as the OS gave them (non-UTF-8 kept on Unix,
    /// unpaired surrogates on Windows).
    pub args: Vec<OsString>,
    /// The sender's working directory, to resolve relative paths among `args` against.
    /// Empty if the sender could not tell.
    pub cwd: PathBuf,
    /// The sender's process ID, as the sender gives it in its message: in its own PID
    /// namespace, which may not be the holder's (a sandbox, a container sharing the lock's
    /// directory). Only its user is checked by the kernel, never this number.
    pub pid: u32,
}

impl SecondInstance {
    /// This process's own message: `std::env::args_os()` after the program name, the current
    /// directory, and `std::process::id()`.
    pub fn current() -> SecondInstance {
        SecondInstance {
            args: std::env::args_os().skip(1).collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
            pid: std::process::id(),
        }
    }
}

/// The holder took the message: its handler is being called with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forwarded {
    /// The holder's process ID, as it gave it.
    pub pid: u32,
}

/// Why a message was not handed to the running instance. Whatever the variant, the holder's
/// handler was not called with it, except for the one case named in [`ForwardError::TimedOut`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Nobody listens for the lock at `path`: no holder, a holder that does not call
    /// [`PidLockFile::on_second_instance`](crate::PidLockFile::on_second_instance), one built
    /// before this feature, or the socket of a holder that crashed.
    #[error("nobody listens for second instances of lock file {}", path.display())]
    NotListening {
        /// The lock file.
        path: PathBuf,
    },
    /// The holder closed the connection without answering: it exited, or began releasing the
    /// lock, while we were connecting. The lock may be free now.
    #[error("the holder of lock file {} went away before answering", path.display())]
    HolderGone {
        /// The lock file.
        path: PathBuf,
    },
    /// No answer within `timeout`: the holder is busy with another message (its handler
    /// blocks), or stopped. The message is withdrawn; the holder drops it when it sees that
    /// the sender has gone. (Only an answer crossing the withdrawal at the very deadline can
    /// still reach the handler.)
    #[error("the holder of lock file {} did not answer within {timeout:?}", path.display())]
    TimedOut {
        /// The lock file.
        path: PathBuf,
        /// The bound that passed.
        timeout: Duration,
    },
    /// The message is larger than a holder accepts (1 MiB); nothing was sent.
    #[error("the message is {size} bytes, over the {limit}-byte limit for second instances (lock file {})", path.display())]
    TooLarge {
        /// The lock file.
        path: PathBuf,
        /// The encoded message's size.
        size: usize,
        /// The limit, [`SecondInstance`]s of at most 1 MiB.
        limit: usize,
    },
    /// What listens at the lock's endpoint is not this user's: on Unix `<path>.sock` is not
    /// a socket file of ours (another user's, a symlink, a regular file), or the process that
    /// accepted the connection runs as another user; on Windows the process serving the
    /// lock's named pipe runs as another user (pipe names are global: anyone may create one
    /// first), or its user cannot be read. Nothing was sent: the message would go to whoever
    /// planted it. The real holder, if any, cannot listen there.
    #[error("the endpoint of lock file {} is not the holder's: {reason}; nothing was sent", path.display())]
    Untrusted {
        /// The lock file.
        path: PathBuf,
        /// What was found there.
        reason: String,
    },
    /// The holder answered, and refused the message.
    #[error("process {pid}, holder of lock file {}, refused the message: {reason}", path.display())]
    Refused {
        /// The lock file.
        path: PathBuf,
        /// The holder's PID.
        pid: u32,
        /// Why, in the holder's words.
        reason: String,
    },
    /// Any other failure talking to the holder.
    #[error("cannot hand the message to the holder of lock file {}: {source}", path.display())]
    Failed {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Why the sender would not talk to what listens at the lock's endpoint: the transport's
/// `connect` fails with it, and nothing is sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Untrusted(String);

/// The reason, if `e` says the endpoint is not our user's.
fn untrusted(e: &io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Untrusted>())
        .map(|u| u.0.clone())
}

/// The error a transport's `connect` returns for an endpoint that is not our user's.
fn untrusted_error(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Untrusted(why))
}

/// Sends `message` to whoever holds the lock at `lock_path` and listens, and waits up to
/// `timeout` for its answer.
pub(crate) fn send(
    lock_path: &Path,
    message: &SecondInstance,
    timeout: Duration,
) -> Result<Forwarded, ForwardError> {
    let path = lock_path.to_owned();
    let frame = frame::encode(message).map_err(|size| ForwardError::TooLarge {
        path: path.clone(),
        size,
        limit: MAX_MESSAGE,
    })?;
    let deadline = Instant::now() + timeout;
    let timed_out = |path: PathBuf| ForwardError::TimedOut { path, timeout };
    let mut conn = match transport::connect(lock_path, deadline) {
        Ok(conn) => conn,
        Err(e) if is_nobody(&e) => return Err(ForwardError::NotListening { path }),
        Err(e) if untrusted(&e).is_some() => {
            let reason = untrusted(&e).unwrap_or_default();
            return Err(ForwardError::Untrusted { path, reason });
        }
        Err(e) if is_timeout(&e) => return Err(timed_out(path)),
        Err(source) => return Err(ForwardError::Failed { path, source }),
    };
    if let Err(e) = conn.write_all_by(&frame, deadline) {
        return Err(match e {
            e if is_timeout(&e) => timed_out(path),
            // The holder hung up while we wrote: it may have refused early (too large,
            // another user); its answer, if any, says why.
            e => match read_answer(&mut conn, deadline) {
                Ok(Some((status, pid))) if status != Status::Accepted => ForwardError::Refused {
                    path,
                    pid,
                    reason: status.to_string(),
                },
                _ if is_gone(&e) => ForwardError::HolderGone { path },
                _ => ForwardError::Failed { path, source: e },
            },
        });
    }
    match read_answer(&mut conn, deadline) {
        Ok(Some((Status::Accepted, pid))) => Ok(Forwarded { pid }),
        Ok(Some((status, pid))) => Err(ForwardError::Refused {
            path,
            pid,
            reason: status.to_string(),
        }),
        Ok(None) => Err(ForwardError::HolderGone { path }),
        Err(e) if is_timeout(&e) => Err(timed_out(path)),
        Err(e) if is_gone(&e) => Err(ForwardError::HolderGone { path }),
        Err(source) => Err(ForwardError::Failed { path, source }),
    }
}

/// The answer, `None` if the holder closed without one (or sent something else).
fn read_answer(conn: &mut transport::Conn, deadline: Instant) -> io::Result<Option<(Status, u32)>> {
    let mut answer = [0; ANSWER_LEN];
    match conn.read_exact_by(&mut answer, deadline) {
        Ok(()) => Ok(frame::decode_answer(&answer)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Nobody at the endpoint: no socket file, or a socket nobody accepts on (a crashed holder's).
fn is_nobody(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// The user's handler, called on the listener's threads one message at a time.
#[derive(Clone)]
pub(crate) struct Handler {
    call: Arc<Mutex<dyn FnMut(SecondInstance) + Send>>,
    /// For a handler that runs elsewhere (the async pump, which stops when the program's body
    /// returns): asked before each message is accepted.
    admission: Option<Arc<dyn Admission>>,
    /// [`Forwarding::listen`], reached only through a handler: a program that never makes one
    /// never links the listener (its socket, thread and frame code), which keeps a guarded
    /// binary without `forward` small and quick to start (issue 15).
    listen: fn(&mut Forwarding, &Path, Handler),
}

impl Handler {
    pub(crate) fn new(call: impl FnMut(SecondInstance) + Send + 'static) -> Handler {
        Handler {
            call: Arc::new(Mutex::new(call)),
            admission: None,
            listen: Forwarding::listen,
        }
    }

    pub(crate) fn with_admission(
        call: impl FnMut(SecondInstance) + Send + 'static,
        admission: Arc<dyn Admission>,
    ) -> Handler {
        Handler {
            call: Arc::new(Mutex::new(call)),
            admission: Some(admission),
            listen: Forwarding::listen,
        }
    }
}

/// Whether a handler can still take a message, asked before the message is accepted, so that
/// "accepted" never meets a handler that has stopped.
pub(crate) trait Admission: Send + Sync {
    /// Reserves the handling of one message; `false` once the handler runs no more.
    fn admit(&self) -> bool;
    /// The reserved message was not accepted after all (its sender left).
    fn withdraw(&self);
}

/// How many connections may be read at once, each on its own short-lived thread: a few silent
/// or slow peers then cannot hold a real sender back past its bound. Past this many, the
/// listener thread reads the next connection itself (at most [`READ_DEADLINE`] each).
const MAX_READERS: usize = 8;

/// What a `PidLockFile` knows about second instances: the handler it was given, and the
/// listener it runs while it holds the lock.
#[derive(Default)]
pub(crate) struct Forwarding {
    handler: Option<Handler>,
    listener: Option<Box<dyn Running>>,
    /// Listening was tried for the current hold (and failed, if `listener` is `None`): it is
    /// not tried, nor its failure logged, a second time until the lock is released.
    tried: bool,
    /// Messages refused because another user sent them, over this value's lifetime; made with
    /// the first listener.
    refused: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarding")
            .field("handler", &self.handler.is_some())
            .field("listening", &self.listener.is_some())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Forwarding {
    pub(crate) fn set_handler(&mut self, handler: Handler) {
        self.handler = Some(handler);
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused
            .as_ref()
            .map_or(0, |refused| refused.load(Ordering::Relaxed))
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Whether listening was tried for the current hold, successfully or not.
    pub(crate) fn was_tried(&self) -> bool {
        self.tried
    }

    /// Starts listening, if there is a handler and listening was not tried yet for this hold.
    /// Called right after the lock is taken, and only then: the endpoint is ours to replace
    /// only while we hold the lock. A failure is logged (once) and leaves the lock held
    /// without a listener: second instances then get the conflict as without forwarding.
    pub(crate) fn start(&mut self, lock_path: &Path) {
        let Some(handler) = &self.handler else { return };
        if self.tried {
            return;
        }
        self.tried = true;
        let handler = handler.clone();
        (handler.listen)(self, lock_path, handler);
    }

    /// [`start`](Self::start)'s work, once it is decided to listen.
    fn listen(&mut self, lock_path: &Path, handler: Handler) {
        let server = match transport::Server::bind(lock_path) {
            Ok(server) => server,
            Err(e) => {
                log(format_args!(
                    "not listening for second instances of lock file {}: {e}; second instances \
                     get the usual conflict",
                    lock_path.display()
                ));
                return;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let serving = Arc::new(Serving {
            server: Arc::new(server),
            handler,
            stop: Arc::clone(&stop),
            gate: Arc::clone(&gate),
            readers: AtomicUsize::new(0),
            refused: Arc::clone(self.refused.get_or_insert_with(Arc::default)),
            lock_path: lock_path.to_owned(),
        });
        let server = Arc::clone(&serving.server);
        match thread::Builder::new()
            .name("pidlock-second-instances".to_owned())
            .spawn(move || serving.run())
        {
            Ok(_) => self.listener = Some(Box::new(Listener { server, stop, gate })),
            Err(e) => {
                log(format_args!(
                    "not listening for second instances of lock file {}: cannot start its thread: {e}",
                    lock_path.display()
                ));
                server.remove(lock_path);
            }
        }
    }

    /// Stops listening and removes the endpoint. Called while the lock is still held, before
    /// the PID file goes, so the endpoint never outlives the holder's claim on it. From here
    /// on no sender is told "accepted" (it gets no answer and tries the lock again), and every
    /// message already accepted has been handed to the handler when this returns.
    pub(crate) fn stop(&mut self, lock_path: &Path) {
        self.tried = false;
        if let Some(listener) = self.listener.take() {
            listener.end(lock_path);
        }
    }
}

/// A running listener, as its `PidLockFile` sees it: behind a trait object, so that only a
/// program that listens links its ending (see [`Handler`]'s `listen`).
trait Running: Send + Sync {
    /// Stops listening and removes the endpoint (see [`Forwarding::stop`]).
    fn end(self: Box<Self>, lock_path: &Path);
}

impl Running for Listener {
    fn end(self: Box<Self>, lock_path: &Path) {
        self.stop.store(true, Ordering::Release);
        self.gate.close();
        // The thread wakes from `accept` and exits; it is not joined, because it may be
        // inside a handler that blocks (then it exits when the handler returns).
        self.server.wake(lock_path);
        self.server.remove(lock_path);
        self.gate.wait_handed_over();
    }
}

/// What stops a running listener: its endpoint, its thread's flag, and the gate.
struct Listener {
    server: Arc<transport::Server>,
    stop: Arc<AtomicBool>,
    gate: Arc<Gate>,
}

/// Where "accepted" answers meet the release: once the gate closes no message is accepted,
/// and the release waits until every message accepted before has been handed to the handler,
/// so that "accepted" always means "the handler is called with it".
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    handed_over: Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    /// Messages answered "accepted" (or being answered) whose handler call has not begun.
    pending: usize,
}

impl Gate {
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the right to accept one message: `false` once the release has begun.
    fn enter(&self) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.pending += 1;
        true
    }

    /// The reserved message was handed to the handler, or dropped.
    fn leave(&self) {
        let mut state = self.state();
        state.pending -= 1;
        self.handed_over.notify_all();
    }

    fn close(&self) {
        self.state().closed = true;
    }

    /// Waits until no accepted message is still on its way to the handler. Never long: the
    /// handler's lock is taken before a message is accepted, so only the answer's write (at
    /// most 100 ms) lies between the two.
    fn wait_handed_over(&self) {
        let mut state = self.state();
        while state.pending > 0 {
            state = self
                .handed_over
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The listener's state, shared by its thread and its readers.
struct Serving {
    server: Arc<transport::Server>,
    handler: Handler,
    stop: Arc<AtomicBool>,
    gate: Arc<Gate>,
    /// Reader threads running now.
    readers: AtomicUsize,
    refused: Arc<AtomicU64>,
    lock_path: PathBuf,
}

impl Serving {
    fn run(self: Arc<Self>) {
        // How long to back off after a failed accept (out of descriptors): never spin.
        let mut pause = Duration::from_millis(1);
        loop {
            let accepted = self.server.accept();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            match accepted {
                Ok(conn) => {
                    pause = Duration::from_millis(1);
                    self.dispatch(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log(format_args!(
                        "listening for second instances of lock file {}: accept failed: {e}",
                        self.lock_path.display()
                    ));
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Serves `conn` on a reader thread of its own while fewer than [`MAX_READERS`] run, else
    /// on this thread.
    fn dispatch(self: &Arc<Self>, conn: transport::Conn) {
        if self.readers.fetch_add(1, Ordering::AcqRel) < MAX_READERS {
            let serving = Arc::clone(self);
            let conn = Arc::new(Mutex::new(Some(conn)));
            let theirs = Arc::clone(&conn);
            let spawned = thread::Builder::new()
                .name("pidlock-second-instance-reader".to_owned())
                .spawn(move || {
                    if let Some(conn) = theirs.lock().unwrap_or_else(PoisonError::into_inner).take()
                    {
                        serving.serve(conn);
                    }
                    serving.readers.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_ok() {
                return;
            }
            self.readers.fetch_sub(1, Ordering::AcqRel);
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(conn) = conn {
                self.serve(conn);
            }
        } else {
            self.readers.fetch_sub(1, Ordering::AcqRel);
            self.serve(conn);
        }
    }

    /// One connection: check, read, answer, then call the handler.
    fn serve(&self, mut conn: transport::Conn) {
        let me = std::process::id();
        let from = conn.describe_peer();
        match conn.same_user() {
            Ok(true) => {}
            Ok(false) => {
                let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                self.drop_message(&from, "it comes from another user", n);
                let _ =
                    conn.write_all_by(&frame::encode_answer(Status::OtherUser, me), answer_by());
                return;
            }
            Err(e) => {
                self.drop_message(
                    &from,
                    &format!("its sender's user cannot be checked: {e}"),
                    0,
                );
                let _ =
                    conn.write_all_by(&frame::encode_answer(Status::OtherUser, me), answer_by());
                return;
            }
        }
        let deadline = Instant::now() + READ_DEADLINE;
        let message = match read_message(&mut conn, deadline) {
            Ok(message) => message,
            Err((status, why)) => {
                self.drop_message(&from, &why, 0);
                let _ = conn.write_all_by(&frame::encode_answer(status, me), answer_by());
                return;
            }
        };
        // One message at a time: the handler's turn is taken before the answer, so a sender
        // behind a handler that blocks gets no answer within its bound, and falls back.
        let mut handler = self
            .handler
            .call
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.gate.enter() {
            // The release has begun: no answer, so the sender tries the lock again.
            self.drop_message(&from, "the holder is releasing the lock", 0);
            return;
        }
        let admission = self.handler.admission.as_deref();
        if admission.is_some_and(|a| !a.admit()) {
            self.gate.leave();
            self.drop_message(&from, "the program is finishing", 0);
            return;
        }
        // Answer before calling the handler: a sender that gave up (its bound passed while
        // an earlier message kept the handler busy) has closed its end, the answer fails,
        // and its message is dropped rather than handled behind its back.
        if let Err(e) = conn.write_all_by(&frame::encode_answer(Status::Accepted, me), answer_by())
        {
            if let Some(admission) = admission {
                admission.withdraw();
            }
            self.gate.leave();
            self.drop_message(
                &from,
                &format!("its sender left before it was accepted ({e})"),
                0,
            );
            return;
        }
        drop(conn);
        self.gate.leave();
        if catch_unwind(AssertUnwindSafe(|| handler(message))).is_err() {
            log(format_args!(
                "the second-instance handler of lock file {} panicked; still listening",
                self.lock_path.display()
            ));
        }
    }

    fn drop_message(&self, from: &str, why: &str, refused: u64) {
        let count = if refused > 0 {
            format!(" ({refused} refused so far)")
        } else {
            String::new()
        };
        log(format_args!(
            "dropped a second instance's message to lock file {} from {from}: {why}{count}",
            self.lock_path.display()
        ));
    }
}

/// When an answer must have been written: an answer is ten bytes into an empty socket
/// buffer, so this bounds only a peer that has stopped reading, and starts afresh after a
/// read deadline that passed.
fn answer_by() -> Instant {
    Instant::now() + Duration::from_millis(100)
}

/// Reads one frame by `deadline`, or says which answer to give and why.
fn read_message(
    conn: &mut transport::Conn,
    deadline: Instant,
) -> Result<SecondInstance, (Status, String)> {
    let read_error = |e: io::Error, what: &str| {
        if is_timeout(&e) {
            (
                Status::TooSlow,
                format!("{what} did not arrive within {READ_DEADLINE:?}"),
            )
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            (
                Status::Malformed,
                format!("it is truncated: the sender closed during {what}"),
            )
        } else {
            (Status::Malformed, format!("reading {what} failed: {e}"))
        }
    };
    let mut header = [0; HEADER_LEN];
    conn.read_exact_by(&mut header, deadline)
        .map_err(|e| read_error(e, "the header"))?;
    let len = frame::decode_header(&header).map_err(|e| (e.status(), e.to_string()))?;
    let mut body = vec![0; len];
    conn.read_exact_by(&mut body, deadline)
        .map_err(|e| read_error(e, "the body"))?;
    frame::decode_body(&body).map_err(|e| (e.status(), e.to_string()))
}

/// One line on stderr, the holder's only way to say that it dropped something.
fn log(what: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "pidlockfile: {what}");
}

impl crate::PidLockFile {
    /// Calls `handler` with every message a second instance sends (see
    /// [`forward`](Self::forward)) for as long as this instance holds the lock.
    ///
    /// From each successful [`acquire`](Self::acquire) until the release, a thread of the
    /// library's listens on an endpoint tied to the lock: on Unix the socket `<path>.sock`
    /// beside the PID file (mode 0600; its directory must not be writable by other users
    /// unless it is sticky), on Windows a named pipe open to the current user only. It sleeps
    /// in `accept` while nobody connects, and calls `handler` on that thread, one message at a
    /// time, never from a signal handler. Only the same user may deliver: messages from others
    /// are refused, logged and counted ([`refused_second_instances`](Self::refused_second_instances)),
    /// never handed to `handler`. Malformed, truncated, oversized (over 1 MiB) or slow (over
    /// 1 s) messages are dropped with a line on stderr, and the listener goes on. A `handler`
    /// that panics is logged, and the listener goes on.
    ///
    /// Several connections are read at once (up to 8), so a few silent peers cannot hold a
    /// real sender back; messages are handed to `handler` one at a time all the same. Once the
    /// release begins no message is accepted any more (its sender gets no answer and tries
    /// the lock again), and the release returns only after every message accepted before it
    /// has been handed to `handler`; it does not wait for `handler` to return.
    ///
    /// The endpoint is created and removed only while the lock is held; a socket file left by
    /// a holder that crashed (a socket of this user nobody accepts on) is replaced by the next
    /// holder. Anything else at that name is left alone: a live socket of another program, a
    /// file that is not a socket, a symlink, another user's socket. If the endpoint cannot be
    /// created (those, a path over the socket-name limit of about 100 bytes, a directory
    /// others may write into unless it is sticky, even the user's own), the lock is still
    /// taken, one line on stderr says why, and second instances get the usual conflict.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use pidlockfile::{PidLockFile, SecondInstance};
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-on-second-{}.pid", std::process::id()));
    /// let (tx, rx) = mpsc::channel();
    /// let mut holder = PidLockFile::new(&path).on_second_instance(move |msg: SecondInstance| {
    ///     let _ = tx.send(msg.args);
    /// });
    /// holder.acquire(Some(Duration::ZERO))?;
    ///
    /// // What a second copy of the program does (in another process, normally):
    /// let message = SecondInstance { args: vec!["a.txt".into()], ..SecondInstance::current() };
    /// let taken = PidLockFile::new(&path).forward(&message)?;
    /// assert_eq!(taken.pid, std::process::id());
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), vec!["a.txt"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn on_second_instance<F>(mut self, handler: F) -> Self
    where
        F: FnMut(SecondInstance) + Send + 'static,
    {
        self.forward.set_handler(Handler::new(handler));
        self
    }

    /// Hands `message` to the process that holds this lock and listens
    /// ([`on_second_instance`](Self::on_second_instance)), waiting up to
    /// [`DEFAULT_FORWARD_TIMEOUT`] (2 s) for its answer. `Ok` means the holder took it and
    /// calls its handler with it; any error means it did not (see [`ForwardError`]).
    ///
    /// Only a holder of this user is talked to: if the endpoint is not this user's (on Unix,
    /// `<path>.sock` is not a socket of this user, or the process behind it runs as another
    /// user; on Windows, the process serving the lock's named pipe runs as another user or
    /// cannot be asked), nothing is sent and the result is [`ForwardError::Untrusted`].
    ///
    /// Call it after [`acquire`](Self::acquire) failed with
    /// [`LockError::AlreadyLocked`](crate::LockError::AlreadyLocked). On
    /// [`ForwardError::NotListening`] or [`ForwardError::HolderGone`] the holder may just have
    /// exited (or be releasing the lock): try the lock once more before giving up, as
    /// `#[single_instance(forward = ...)]` does.
    ///
    /// ```
    /// use pidlockfile::{ForwardError, PidLockFile, SecondInstance};
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-forward-{}.pid", std::process::id()));
    /// let err = PidLockFile::new(&path).forward(&SecondInstance::current()).unwrap_err();
    /// assert!(matches!(err, ForwardError::NotListening { .. }));
    /// ```
    pub fn forward(&self, message: &SecondInstance) -> Result<Forwarded, ForwardError> {
        self.forward_within(message, DEFAULT_FORWARD_TIMEOUT)
    }

    /// [`forward`](Self::forward), waiting up to `timeout` instead of 2 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pidlockfile::{PidLockFile, SecondInstance};
    ///
    /// let path = std::env::temp_dir().join(format!("pidlock-doc-forward-within-{}.pid", std::process::id()));
    /// let lock = PidLockFile::new(&path);
    /// assert!(lock.forward_within(&SecondInstance::current(), Duration::from_millis(100)).is_err());
    /// ```
    pub fn forward_within(
        &self,
        message: &SecondInstance,
        timeout: Duration,
    ) -> Result<Forwarded, ForwardError> {
        send(self.path(), message, timeout)
    }

    /// How many messages from other users this instance's listener has refused.
    ///
    /// ```
    /// let lock = pidlockfile::PidLockFile::new("/run/user/1000/myapp.pid");
    /// assert_eq!(lock.refused_second_instances(), 0);
    /// ```
    pub fn refused_second_instances(&self) -> u64 {
        self.forward.refused()
    }

    /// Whether this instance listens for second instances now: it holds the lock, has a
    /// handler, and its endpoint could be created.
    ///
    /// ```
    /// let lock = pidlockfile::PidLockFile::new("/run/user/1000/myapp.pid").on_second_instance(|_| {});
    /// assert!(!lock.listens_for_second_instances());
    /// ```
    pub fn listens_for_second_instances(&self) -> bool {
        self.forward.is_listening()
    }

    /// Whether listening was tried for the current hold (it may have failed, and said so).
    pub(crate) fn tried_second_instances(&self) -> bool {
        self.forward.was_tried()
    }

    /// Sets `handler` on a lock already held, and starts listening.
    pub(crate) fn serve_second_instances(&mut self, handler: Handler) {
        self.forward.set_handler(handler);
        if self.i_am_locking() {
            let path = self.path().to_owned();
            self.forward.start(&path);
        }
    }
}
