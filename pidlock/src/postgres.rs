//! `PgLock`: one holder per fleet, on a PostgreSQL session advisory lock.
//!
//! The server drops a session's advisory locks when the session ends, however it ends, as the
//! kernel drops a `flock` when its process dies: a crashed holder never wedges the lock. Unlike
//! a file lock, a session can end while its holder runs, so a held `PgLock` watches its
//! connection and reports the loss (see [`PgLock::is_lost`] and [`LossWatch`]).

mod conninfo;
mod key;
mod pgpass;
mod runtime;
mod service;
mod session;
mod socket;
mod tls;
mod token;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::PathBuf;
use std::process;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::conninfo::{ConnInfo, UNPARSED_SERVER};
use self::session::{Refused, Session};
use self::token::Token;
use crate::error::{LockError, UnlockError};
use crate::loss::{self, LossSignal, LossWatch, Lost, OnLost};
use crate::owner::{self, Caller, Process};

/// The default for [`PgLock::lost_after`]: a holder cut off from the server without a word
/// (a partition) gives up after this long.
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(10);

/// The shortest [`PgLock::lost_after`]: the server's keepalive settings count in whole seconds.
const MIN_LOST_AFTER: Duration = Duration::from_secs(1);

/// The longest [`PgLock::lost_after`]: Linux takes `TCP_KEEPIDLE` (which is `lost_after`) up to
/// 32767 seconds.
const MAX_LOST_AFTER: Duration = Duration::from_secs(32_767);

/// A lock held by one process of a whole fleet: a PostgreSQL session-level advisory lock on a
/// `bigint` key derived from a name.
///
/// The API is [`PidLockFile`](crate::PidLockFile)'s, with the same errors, plus what a lock
/// that can be lost while held needs: [`is_lost`](Self::is_lost), [`loss_watch`](Self::loss_watch),
/// [`on_lost`](Self::on_lost) and a [`fencing_token`](Self::fencing_token). Where it differs
/// (`is_locked` answers `true` when the server cannot be asked, with
/// [`try_is_locked`](Self::try_is_locked) for the reason; `read_pid` is a PID on the holder's
/// host; `i_am_locking` answers for this instance), the README's "Across hosts" lists why.
///
/// - **Loss.** A lost lock lets go at once: its connection is closed (and a statement still
///   running on the server, such as a token's commit waiting for a synchronous standby, is
///   sent a cancel request, given up after `connect_timeout`), and the process's record of
///   held locks forgets it, so the same process can take it again before dropping this object.
/// - **Self-wait.** A `#[single_instance]` body or task that waits for a lock it holds already
///   is refused at once. The check is keyed on the server and database the session reached
///   (read after connecting), so two spellings of one server are one, and two servers behind
///   one name are two. A `PgLock` of the runtime API, or its guard, may move to any thread, so
///   no thread counts as its holder: another thread's wait for it waits for its release, as
///   for [`PidLockFile`](crate::PidLockFile).
///
/// - **Key.** `PgLock::new(conninfo, name)` uses the key sqlx's `PgAdvisoryLock::new(name)`
///   uses (HKDF-SHA256 over the name, no salt, info `SQLx (Rust) Postgres advisory lock`, the
///   first 8 bytes as a little-endian `i64`), so a service on sqlx and a program on pidlock that
///   use the same name exclude each other. Advisory locks belong to a database: both must
///   connect to the same one.
/// - **Holder.** Each session's `application_name` is `pidlock <pid>@<host>`, which
///   [`holder`](Self::holder) and the error messages read back from `pg_locks` and
///   `pg_stat_activity` (which other roles can see). A holder that is not a pidlock is named by
///   its server process, `application_name` and client address.
/// - **Connection string.** A URL (`postgres://user:pass@host:5432/db?sslmode=verify-full`)
///   or libpq's `key=value` form; libpq's environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
///   `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`,
///   `PGCONNECT_TIMEOUT`, `PGOPTIONS`, `PGSERVICE`) fill in what it leaves out, as for psql;
///   `service=NAME` reads libpq's service files. TLS goes through rustls, with `sslmode` from
///   `disable` to `verify-full`, `sslrootcert` (a file, or `system`) and a client certificate
///   (`sslcert`, `sslkey`). Connecting gives up after
///   `connect_timeout` (default 10 s), even for `acquire(None)`.
/// - **Poolers.** Connect to the server directly, or through a pooler in session mode: a
///   transaction-mode pooler (PgBouncer's `pool_mode = transaction`) hands one server session
///   to many clients, which breaks session locks silently.
///
/// ```no_run
/// use std::time::Duration;
/// use pidlock::PgLock;
///
/// let mut lock = PgLock::new("postgres://app@db.internal/app", "nightly-report");
/// lock.acquire(Some(Duration::from_secs(5)))?;
/// let token = lock.fencing_token(); // send it with every write the lock protects
/// // ... the only copy in the fleet runs here, while !lock.is_lost() ...
/// lock.release()?;
/// # let _ = token;
/// # Ok::<(), pidlock::Error>(())
/// ```
pub struct PgLock {
    conninfo: String,
    name: String,
    key: i64,
    lost_after: Duration,
    callbacks: Vec<OnLost>,
    prepared: Option<Prepared>,
    held: Option<Held>,
    /// The last acquisition's fencing token.
    token: Arc<Token>,
    /// The record's key (see [`registry_device`]) for the server this instance last reached:
    /// what its self-wait check compares, known only once it has connected.
    reached: Option<u64>,
    /// What `/proc/self/fd` shows for the last socket handed on with
    /// [`share_session`](Self::share_session) (`socket:[inode]`): while this process still has
    /// a copy of it open, its session, and the lock, live on, and a new
    /// [`acquire`](Self::acquire) would wait for itself.
    shared_socket: Option<std::path::PathBuf>,
}

/// The connection string, parsed once, and its TLS connector.
#[derive(Clone)]
struct Prepared {
    info: ConnInfo,
    tls: Option<MakeRustlsConnect>,
}

/// A held lock: its session, its loss signal, the process that took it, and its entry in the
/// process-wide record of held locks.
struct Held {
    session: Session,
    signal: Arc<LossSignal>,
    owner: Process,
    /// The record's key for the server this session reached (see [`registry_device`]).
    device: u64,
    /// Set once the record's entry is gone: by a loss, as soon as it is decided, or by the
    /// release, whichever comes first; never twice, so that a later holder's entry stays.
    forgotten: Arc<AtomicBool>,
    /// The session's socket was handed on ([`PgLock::share_session`]): the release and the
    /// drop only close this process's copy, and never unlock.
    shared: bool,
}

/// Whether this process has a descriptor open on what `link` names (`socket:[inode]`, as
/// `/proc/self/fd` shows it). `false` where `/proc` cannot tell.
fn still_open_here(link: &std::path::Path) -> bool {
    std::fs::read_dir("/proc/self/fd").is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == link))
    })
}

/// Who holds a fleet lock, as its session records it.
///
/// ```no_run
/// let lock = pidlock::PgLock::new("postgres://db.internal/app", "nightly-report");
/// if let Some(holder) = lock.holder()? {
///     println!("held by pid {} on {}", holder.pid, holder.host);
/// }
/// # Ok::<(), pidlock::LockError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's host name; empty if the holder is not a pidlock session (sqlx, psql).
    pub host: String,
    /// The holder's PID on its host; 0 if the holder is not a pidlock session.
    pub pid: u32,
    /// The PID of the server process serving the holder's session (for
    /// `pg_terminate_backend`).
    pub backend_pid: u32,
    /// The session's `application_name` as the server shows it.
    pub application_name: String,
    /// The session's client address (`pg_stat_activity.client_addr`); `None` over a Unix
    /// socket, or when the server does not show it to this role (a session of another role,
    /// without `pg_read_all_stats`).
    pub client_addr: Option<String>,
}

impl Holder {
    fn from_session(found: session::Found) -> Holder {
        let (pid, host) = parse_identity(&found.application_name).unwrap_or((0, String::new()));
        Holder {
            host,
            pid,
            backend_pid: found.backend_pid,
            application_name: found.application_name,
            client_addr: found.client_addr,
        }
    }

    /// A session that is not a pidlock's, for the errors' "locked by a session on ...":
    /// `backend 1234 ("psql" from 10.0.0.7)`.
    fn foreign(&self) -> String {
        let mut text = format!("backend {}", self.backend_pid);
        match (self.application_name.is_empty(), &self.client_addr) {
            (false, Some(addr)) => text += &format!(" ({:?} from {addr})", self.application_name),
            (false, None) => text += &format!(" ({:?})", self.application_name),
            (true, Some(addr)) => text += &format!(" (from {addr})"),
            (true, None) => {}
        }
        text
    }

    fn pid(&self) -> Option<u32> {
        (self.pid != 0).then_some(self.pid)
    }

    fn host(&self) -> Option<String> {
        (!self.host.is_empty()).then(|| self.host.clone())
    }
}

impl fmt::Display for Holder {
    /// `pid 4242 on web-3`, or for a session that is not pidlock's, its application name and
    /// server process.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid() {
            Some(pid) => write!(f, "pid {pid} on {}", self.host),
            None => write!(f, "session on {}", self.foreign()),
        }
    }
}

/// `pidlock <pid>@<host>`, cut to the 63 bytes `application_name` keeps.
fn identity() -> String {
    let mut id = format!("pidlock {}@{}", process::id(), host_name());
    let mut end = id.len().min(63);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id
}

fn parse_identity(application_name: &str) -> Option<(u32, String)> {
    let (pid, host) = application_name.strip_prefix("pidlock ")?.split_once('@')?;
    Some((pid.parse().ok()?, host.to_owned()))
}

/// This machine's host name.
fn host_name() -> String {
    #[cfg(unix)]
    {
        let name = rustix::system::uname();
        let name = name.nodename().to_string_lossy();
        if !name.is_empty() {
            return name.into_owned();
        }
    }
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

/// A device number that no file has, per server and database actually reached (the identity
/// a session reads, see `Session::server_identity`), so that the process-wide record of held
/// locks (`owner.rs`) can tell "this thread already holds this fleet lock" too. Two spellings
/// of one server (`127.0.0.1`, `localhost`, its Unix socket) give one device; two servers
/// behind one name give two.
fn registry_device(server_identity: &str) -> u64 {
    // FNV-1a: stable and good enough to keep two servers apart.
    let hash = server_identity
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash | (1 << 63)
}

impl fmt::Debug for PgLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the connection string: it may hold a password.
        f.debug_struct("PgLock")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("server", &self.server())
            .field("held", &self.held.is_some())
            .field("fencing_token", &self.token.made())
            .finish_non_exhaustive()
    }
}

impl PgLock {
    /// A fleet lock named `name` on the server `conninfo` names. Does no I/O: the connection
    /// string is parsed and the server reached by [`acquire`](Self::acquire).
    ///
    /// ```
    /// let lock = pidlock::PgLock::new("host=db.internal user=app", "my first Postgres advisory lock!");
    /// assert_eq!(lock.key(), -5560419505042474287); // as sqlx's PgAdvisoryLock::new
    /// assert_eq!(lock.name(), "my first Postgres advisory lock!");
    /// ```
    pub fn new(conninfo: impl Into<String>, name: impl Into<String>) -> PgLock {
        let name = name.into();
        let key = key::key_for(&name);
        PgLock::build(conninfo.into(), name, key)
    }

    /// A fleet lock on the raw advisory lock key `key` (the single-`bigint` key space), for
    /// sharing a lock with code that calls `pg_advisory_lock(key)` itself.
    ///
    /// ```
    /// let lock = pidlock::PgLock::with_key("host=db.internal", 42);
    /// assert_eq!(lock.key(), 42);
    /// assert_eq!(lock.name(), "advisory lock 42");
    /// ```
    pub fn with_key(conninfo: impl Into<String>, key: i64) -> PgLock {
        PgLock::build(conninfo.into(), format!("advisory lock {key}"), key)
    }

    fn build(conninfo: String, name: String, key: i64) -> PgLock {
        PgLock {
            conninfo,
            name,
            key,
            lost_after: DEFAULT_LOST_AFTER,
            callbacks: Vec::new(),
            prepared: None,
            held: None,
            token: Arc::new(Token::default()),
            reached: None,
            shared_socket: None,
        }
    }

    /// Takes the lock on `name` and returns a guard that releases it when dropped.
    /// `timeout` means the same as for [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let guard = pidlock::PgLock::lock("postgres://db.internal/app", "nightly-report", Some(Duration::from_secs(5)))?;
    /// println!("fencing token {}", guard.fencing_token());
    /// # Ok::<(), pidlock::LockError>(())
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn lock(
        conninfo: impl Into<String>,
        name: impl Into<String>,
        timeout: Option<Duration>,
    ) -> Result<PgLockGuard, LockError> {
        let mut lock = PgLock::new(conninfo, name);
        lock.acquire(timeout)?;
        Ok(PgLockGuard::new(lock))
    }

    /// How long a holder cut off from the server without a word (a partition) keeps believing
    /// it holds the lock: at most this long after the server last answered it, it reports the
    /// loss. The server frees such a holder's lock no sooner than twice this long after it last
    /// heard from it (and no later than about 2.25 times), so the holder always steps down
    /// first. Default 10 s; at least 1 s and at most 32767 s (about 9 hours, the kernel's
    /// limit for the keepalive settings). Applies from the next [`acquire`](Self::acquire).
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = pidlock::PgLock::new("host=db.internal", "job").lost_after(Duration::from_secs(4));
    /// assert_eq!(lock.lost_after_duration(), Duration::from_secs(4));
    /// ```
    #[must_use]
    pub fn lost_after(mut self, lost_after: Duration) -> PgLock {
        self.lost_after = lost_after.clamp(MIN_LOST_AFTER, MAX_LOST_AFTER);
        self
    }

    /// The [`lost_after`](Self::lost_after) in force.
    pub fn lost_after_duration(&self) -> Duration {
        self.lost_after
    }

    /// Calls `callback` (on a thread of its own) when a lock this instance holds is lost, for
    /// every acquisition from the next one on. It may block, or exit the process.
    ///
    /// ```
    /// let mut lock = pidlock::PgLock::new("host=db.internal", "job");
    /// lock.on_lost(|lost| {
    ///     eprintln!("error: {lost}; exiting");
    ///     std::process::exit(75);
    /// });
    /// ```
    pub fn on_lost(&mut self, callback: impl Fn(&Lost) + Send + Sync + 'static) {
        self.callbacks.push(Arc::new(callback));
    }

    pub(crate) fn on_lost_shared(&mut self, callback: OnLost) {
        self.callbacks.push(callback);
    }

    /// The advisory lock key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// The lock's name (for [`with_key`](Self::with_key), `advisory lock <key>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the lock lives, for messages: `PostgreSQL at db.internal:5432`. Never the user
    /// name or the password.
    pub fn server(&self) -> String {
        match &self.prepared {
            Some(prepared) => prepared.info.server.clone(),
            None => conninfo::parse(&self.conninfo, &env_var)
                .map_or_else(|_| UNPARSED_SERVER.to_owned(), |info| info.server),
        }
    }

    /// Takes the lock.
    ///
    /// - `None`: waits as long as it takes, in `pg_advisory_lock`; the server wakes it.
    /// - `Some(Duration::ZERO)`: tries once (`pg_try_advisory_lock`);
    ///   [`LockError::AlreadyLocked`] naming the holder if it is held.
    /// - `Some(d)`: waits up to `d` on the server (`lock_timeout`), then
    ///   [`LockError::LockTimeout`].
    ///
    /// No polling. A waiter whose connection drops (a server restart) reconnects and goes on
    /// waiting within its timeout. Anything else that goes wrong (a malformed connection
    /// string, an unknown host, a refused connection or password, a wrong CA, a server that
    /// does not answer within `connect_timeout`) is [`LockError::LockFailed`] with one
    /// readable line. The lock is not reentrant: an instance that holds it gets
    /// `AlreadyLocked` at once (another instance that holds it may have moved to another
    /// thread, so a wait for it waits, as for any holder; see "Self-wait" on [`PgLock`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pidlock::{LockError, PgLock};
    ///
    /// let mut lock = PgLock::new("postgres://db.internal/app", "nightly-report");
    /// match lock.acquire(Some(Duration::ZERO)) {
    ///     Ok(()) => println!("mine, token {}", lock.fencing_token()),
    ///     Err(LockError::AlreadyLocked { .. }) => println!("running elsewhere"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), LockError>(())
    /// ```
    pub fn acquire(&mut self, timeout: Option<Duration>) -> Result<(), LockError> {
        self.acquire_unless(timeout, None, &Caller::here(None))
    }

    /// [`acquire`](Self::acquire), giving up (as a timeout would, and never taking the lock)
    /// within 100 ms of `cancelled` being set: for a waiter whose caller may go away. `caller`
    /// is who waits (see [`Caller`]): a wait for a lock that it holds through another instance
    /// is refused at once, decided after connecting, on the server the session reached.
    pub(crate) fn acquire_unless(
        &mut self,
        timeout: Option<Duration>,
        cancelled: Option<Arc<AtomicBool>>,
        caller: &Caller,
    ) -> Result<(), LockError> {
        let me = Process::current();
        match &self.held {
            Some(held) if held.owner == me && held.signal.lost().is_none() => {
                return Err(self.busy(None, None, true));
            }
            Some(held) if held.owner == me => {
                // Lost: let go of what is left of it, then take it anew.
                if let Some(held) = self.held.take() {
                    self.forget_held(&held);
                }
            }
            // Inherited across fork: the session is the parent's.
            Some(_) => {
                if let Some(held) = self.held.take() {
                    std::mem::forget(held);
                }
            }
            None => {}
        }
        // A copy of a socket this object handed on, still open in this process, keeps the
        // session that holds the lock: waiting would be waiting for itself.
        if let Some(link) = self.shared_socket.take()
            && still_open_here(&link)
        {
            let busy = self.busy(None, None, true);
            self.shared_socket = Some(link);
            return Err(busy);
        }
        let prepared = self.prepared()?;
        self.prepared = Some(prepared.clone());
        let server = prepared.info.server.clone();
        let lost_after = self.lost_after;
        // Which server this is cannot be told from the string (two spellings of one server, two
        // servers behind one name): connect first, ask it, then decide on this thread whether
        // the wait would be a wait for itself.
        let first = {
            let prepared = prepared.clone();
            runtime::block_on(async move { connect_identified(&prepared, lost_after).await })
                .map_err(|e| self.failed(e.to_string()))?
                .map_err(|reason| self.failed(reason))?
        };
        self.reached = Some(registry_device(&first.1));
        if timeout != Some(Duration::ZERO) && self.is_held_by(caller) {
            return Err(self.busy(Some(Duration::ZERO), None, true));
        }
        let signal = LossSignal::new(&self.name, &server, self.callbacks.clone());
        let job = Job {
            prepared,
            key: self.key,
            timeout,
            lost_after,
            signal: Arc::clone(&signal),
            cancelled,
            first: Some(first),
        };
        let outcome = runtime::block_on(job.run()).map_err(|e| self.failed(e.to_string()))?;
        match outcome {
            Ok((session, server_identity)) => {
                let device = registry_device(&server_identity);
                self.reached = Some(device);
                // Any thread may hold it from here on: this instance, or the guard around it,
                // can move. A `#[single_instance]` body pins it to its thread, an async task
                // to itself.
                owner::record_movable(me, device, self.key as u64);
                let forgotten = Arc::new(AtomicBool::new(false));
                // A loss forgets the record at once, so that this process can take the lock
                // again without dropping this object first.
                let (flag, key) = (Arc::clone(&forgotten), self.key as u64);
                signal.on_loss_let_go(Box::new(move || {
                    if !flag.swap(true, Ordering::AcqRel) {
                        owner::forget(me, device, key);
                    }
                }));
                self.token = Arc::new(Token::default());
                self.held = Some(Held {
                    session,
                    signal,
                    owner: me,
                    device,
                    forgotten,
                    shared: false,
                });
                Ok(())
            }
            Err(Outcome::Busy(holder)) => Err(self.busy(timeout, holder, false)),
            Err(Outcome::Failed(reason)) => Err(self.failed(reason)),
        }
    }

    /// Releases the lock (`pg_advisory_unlock`) and closes its session.
    ///
    /// Once the session was handed on with [`share_session`](Self::share_session), this (and the
    /// drop) only closes this process's copy of the connection, and never unlocks: the lock is
    /// then the children's too, and the server frees it when the last of them closes the socket.
    ///
    /// [`UnlockError::NotLocked`] if nobody holds it, [`UnlockError::NotMyLock`] naming the
    /// holder if someone else does, and [`UnlockError::Lost`] if this instance held it but lost
    /// it before the release: someone else may have held it since.
    ///
    /// ```no_run
    /// let mut lock = pidlock::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// lock.acquire(None)?;
    /// lock.release()?;
    /// # Ok::<(), pidlock::Error>(())
    /// ```
    pub fn release(&mut self) -> Result<(), UnlockError> {
        let server = self.server();
        match self.held.take() {
            Some(held) if held.owner.is_current() => {
                self.forget_held(&held);
                if let Some(lost) = held.signal.release() {
                    drop(held);
                    return Err(loss::unlock_error(lost));
                }
                let key = self.key;
                let session = held.session;
                if held.shared {
                    return runtime::block_on(session.leave()).map_err(|e| UnlockError::Lost {
                        path: self.path(),
                        server,
                        reason: e.to_string(),
                    });
                }
                let unlocked = runtime::block_on(async move {
                    let unlocked = session.unlock(key).await;
                    drop(session);
                    unlocked
                });
                match unlocked {
                    Ok(Ok(true)) => Ok(()),
                    Ok(Ok(false)) => Err(UnlockError::Lost {
                        path: self.path(),
                        server,
                        reason: "the session no longer held it".to_owned(),
                    }),
                    Ok(Err(reason)) => Err(UnlockError::Lost {
                        path: self.path(),
                        server,
                        reason,
                    }),
                    Err(e) => Err(UnlockError::Lost {
                        path: self.path(),
                        server,
                        reason: e.to_string(),
                    }),
                }
            }
            Some(held) => {
                // A forked child: the session is the parent's, and so is the lock.
                std::mem::forget(held);
                Err(UnlockError::NotMyLock {
                    path: self.path(),
                    pid: None,
                    host: None,
                    server: Some(server),
                })
            }
            None => match self.holder() {
                Ok(Some(holder)) => Err(UnlockError::NotMyLock {
                    path: self.path(),
                    pid: holder.pid(),
                    host: holder.host(),
                    server: Some(server),
                }),
                // Not held by this instance; whether anyone else holds it could not be told.
                Ok(None) | Err(_) => Err(UnlockError::NotLocked {
                    path: self.path(),
                    server: Some(server),
                }),
            },
        }
    }

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
    /// open here is refused at once ([`LockError::AlreadyLocked`] naming this process) rather
    /// than waiting for itself; another `PgLock` object, or another platform, would wait.
    ///
    /// Unix only. An error if this instance holds no lock, or has lost it.
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let mut lock = pidlock::PgLock::new("postgres://db.internal/app", "nightly-report");
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

    /// Whether anyone holds the lock, as [`PidLockFile::is_locked`](crate::PidLockFile::is_locked)
    /// answers it: asks the server (`pg_locks`), except when this instance holds it and has
    /// not lost it. When the server cannot be asked (unreachable, a bad connection string),
    /// the answer is `true`: "locked" is the answer that never lets a second copy start, as a
    /// lock file this process may not open counts as held. [`try_is_locked`](Self::try_is_locked)
    /// tells the error apart.
    ///
    /// ```no_run
    /// let lock = pidlock::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// if !lock.is_locked() {
    ///     println!("free (for now)");
    /// }
    /// ```
    pub fn is_locked(&self) -> bool {
        self.try_is_locked().unwrap_or(true)
    }

    /// [`is_locked`](Self::is_locked), with the reason the server could not be asked.
    ///
    /// ```no_run
    /// let lock = pidlock::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// println!("locked: {}", lock.try_is_locked()?);
    /// # Ok::<(), pidlock::LockError>(())
    /// ```
    pub fn try_is_locked(&self) -> Result<bool, LockError> {
        if self.i_am_locking() {
            return Ok(true);
        }
        Ok(self.holder()?.is_some())
    }

    /// The holder's PID, as [`PidLockFile::read_pid`](crate::PidLockFile::read_pid) reads it
    /// from the file: here from the holder's session (`application_name`). It is a PID on the
    /// holder's host (see [`holder`](Self::holder) for the host). `None` if the lock is free,
    /// held by a session that is not a pidlock's (psql, sqlx), or the server cannot be asked.
    ///
    /// ```no_run
    /// let lock = pidlock::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// if let Some(pid) = lock.read_pid() {
    ///     println!("held by pid {pid}");
    /// }
    /// ```
    pub fn read_pid(&self) -> Option<u32> {
        self.holder().ok().flatten().and_then(|holder| holder.pid())
    }

    /// Whether this instance holds the lock and has not lost it. No I/O.
    pub fn i_am_locking(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| held.owner.is_current() && held.signal.lost().is_none())
    }

    /// Who holds the lock, read from `pg_locks` and `pg_stat_activity`, or `None` if it is
    /// free.
    pub fn holder(&self) -> Result<Option<Holder>, LockError> {
        let key = self.key;
        // The held session, unless it is gone or has stopped answering.
        if let Some(held) = &self.held
            && held.owner.is_current()
            && held.signal.lost().is_none()
            && !held.session.has_ended()
        {
            let client = held.session.client();
            let limit = held.session.answer_within();
            let found = runtime::block_on(async move {
                session::within(limit, session::holder_on(&client, key)).await
            })
            .map_err(|e| self.failed(e.to_string()))?
            .map_err(|reason| self.failed(reason))?;
            return Ok(found.map(Holder::from_session));
        }
        let prepared = self.prepared()?;
        let lost_after = self.lost_after;
        let found = runtime::block_on(async move {
            let session = Session::connect(
                &prepared.info,
                prepared.tls.as_ref(),
                &identity(),
                lost_after,
            )
            .await?;
            session.holder(key).await
        })
        .map_err(|e| self.failed(e.to_string()))?
        .map_err(|reason| self.failed(reason))?;
        Ok(found.map(Holder::from_session))
    }

    /// The fencing token of this acquisition: greater than every token handed out before for
    /// this lock (by any process anywhere, on this server and every restart of it, crashes
    /// included); 0 before the first acquisition, or if it could not be made.
    ///
    /// It is the transaction id (`pg_current_xact_id()`) of a transaction that the holder's
    /// own session runs, while it holds the lock, on the first call after each acquisition:
    /// the transaction writes one WAL record (`pg_logical_emit_message`; no table, no
    /// privilege) and commits with `synchronous_commit = on`, so the id is on disk before it
    /// is returned, and crash recovery never hands it out again. That costs one WAL flush
    /// (see the README's measurements), paid only by programs that read the token; later
    /// calls return the same value without I/O. Read it while you hold the lock: a token
    /// first asked for after the lock was lost or released cannot be made, and is 0. If
    /// the transaction fails (within `lost_after`), the token is 0 and the lock counts as
    /// lost, because this holder cannot prove its turn.
    ///
    /// What holds where:
    /// - **restart, crash, power loss of the server**: greater than every earlier token (the
    ///   last with `fsync = off`, which gives up crash safety for all data);
    /// - **failover to a standby**: only if the standby had received the token's commit: with
    ///   synchronous replication (`synchronous_standby_names`), the commit waits for it, as
    ///   `synchronous_commit = on` says; under asynchronous replication a promoted standby may
    ///   hand out again ids that the old primary had already given;
    /// - **restore from a backup** (point-in-time recovery to before a token): no promise.
    ///
    /// Send it with every write to the resource the lock protects, and have the resource
    /// refuse a token lower than the highest it has seen: that stops a holder that was paused
    /// or cut off, and woke up believing it still held the lock, which no lease timing can.
    ///
    /// ```sql
    /// UPDATE report SET body = $1, token = $2 WHERE id = $3 AND token <= $2;
    /// -- 0 rows: a newer holder has written; this one must stop.
    /// ```
    pub fn fencing_token(&self) -> u64 {
        let Some(held) = self.held.as_ref().filter(|held| held.owner.is_current()) else {
            return self.token.made();
        };
        self.token.get_or_make(|| {
            if held.signal.lost().is_some() {
                return None;
            }
            let client = held.session.client();
            let pending = held.session.pending_count();
            let limit = self.lost_after;
            let made = runtime::block_on(token::durable_id(client, pending, limit))
                .map_err(|e| e.to_string())
                .and_then(|made| made);
            match made {
                Ok(id) => Some(id),
                Err(reason) => {
                    held.signal.fire(&format!(
                        "could not make the fencing token durable: {reason}"
                    ));
                    None
                }
            }
        })
    }

    /// Whether the lock this instance holds was lost (its session ended, or the server stopped
    /// answering for [`lost_after`](Self::lost_after)). Cheap: no I/O.
    pub fn is_lost(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| held.signal.lost().is_some())
    }

    /// A watch on the loss of the lock this instance holds, to hand to other threads or to
    /// block on; `None` when it holds nothing.
    pub fn loss_watch(&self) -> Option<LossWatch> {
        self.held
            .as_ref()
            .map(|held| LossWatch::new(Arc::clone(&held.signal)))
    }

    /// The parsed connection string and its TLS connector, parsed once by `acquire`.
    fn prepared(&self) -> Result<Prepared, LockError> {
        if let Some(prepared) = &self.prepared {
            return Ok(prepared.clone());
        }
        let info =
            conninfo::parse(&self.conninfo, &env_var).map_err(|reason| LockError::LockFailed {
                path: self.path(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad connection string: {reason}"),
                ),
                server: Some(UNPARSED_SERVER.to_owned()),
            })?;
        let tls = tls::connector(
            info.ssl_mode,
            info.root_cert.as_ref(),
            info.client_cert.as_ref(),
        )
        .map_err(|reason| LockError::LockFailed {
            path: self.path(),
            source: io::Error::new(io::ErrorKind::InvalidInput, reason),
            server: Some(info.server.clone()),
        })?;
        Ok(Prepared { info, tls })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(&self.name)
    }

    fn failed(&self, reason: String) -> LockError {
        LockError::LockFailed {
            path: self.path(),
            source: io::Error::other(reason),
            server: Some(self.server()),
        }
    }

    /// `AlreadyLocked` for a zero timeout, else `LockTimeout`. `mine`: the holder is this
    /// process.
    fn busy(&self, timeout: Option<Duration>, holder: Option<Holder>, mine: bool) -> LockError {
        let (pid, host) = match (mine, holder) {
            (true, _) => (Some(process::id()), Some(host_name())),
            // Not a pidlock: named from pg_stat_activity (`host` reads "a session on ...").
            (false, Some(holder)) if holder.pid().is_none() => (None, Some(holder.foreign())),
            (false, Some(holder)) => (holder.pid(), holder.host()),
            (false, None) => (None, None),
        };
        let path = self.path();
        let server = Some(self.server());
        match timeout {
            Some(timeout) if !timeout.is_zero() => LockError::LockTimeout {
                path,
                pid,
                timeout,
                host,
                server,
            },
            _ => LockError::AlreadyLocked {
                path,
                pid,
                host,
                server,
            },
        }
    }

    /// Whether `caller` holds this lock through another instance: then a wait for it would
    /// never end. No I/O: it can decide only once this instance has connected and learnt which
    /// server it reached (`acquire` decides after connecting); before that, `false`.
    pub(crate) fn is_held_by(&self, caller: &Caller) -> bool {
        self.reached
            .is_some_and(|device| owner::held_by(device, self.key as u64, caller))
    }

    /// The error for a wait that would be a wait for itself.
    pub(crate) fn held_by_caller_error(&self) -> LockError {
        self.busy(None, None, true)
    }

    /// Records that the async task `task` wakes now holds this lock (see `owner.rs`).
    pub(crate) fn hand_to_task(&self, task: &std::task::Waker) {
        if let Some(held) = &self.held
            && !held.forgotten.load(Ordering::Acquire)
        {
            owner::hand_to_task(held.owner, held.device, self.key as u64, task);
        }
    }

    /// Records that the calling thread holds this lock until it is released: a
    /// `#[single_instance]` body's, whose guard never leaves the frame that runs it, so that a
    /// nested guarded call on this thread is refused at once instead of waiting for itself.
    pub(crate) fn pin_to_thread(&self) {
        if let Some(held) = &self.held
            && !held.forgotten.load(Ordering::Acquire)
        {
            owner::pin_to_thread(held.owner, held.device, self.key as u64);
        }
    }

    fn forget_held(&self, held: &Held) {
        if !held.forgotten.swap(true, Ordering::AcqRel) {
            owner::forget(held.owner, held.device, self.key as u64);
        }
    }
}

impl Drop for PgLock {
    /// Releases the lock if this instance holds it, waiting at most a few seconds for the
    /// server; the session is closed in any case, which frees the lock on the server too.
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        if !held.owner.is_current() {
            // A forked child: the session and its thread belong to the parent.
            std::mem::forget(held);
            return;
        }
        self.forget_held(&held);
        if held.signal.release().is_some() {
            return;
        }
        let session = held.session;
        if held.shared {
            let _ = runtime::block_on(session.leave());
            return;
        }
        let key = self.key;
        let limit = self.lost_after.min(Duration::from_secs(5));
        let _ = runtime::block_on(async move {
            let _ = tokio::time::timeout(limit, session.unlock(key)).await;
            drop(session);
        });
    }
}

/// Everything one acquisition needs, owned, so that it can run on the runtime's thread.
struct Job {
    prepared: Prepared,
    key: i64,
    timeout: Option<Duration>,
    lost_after: Duration,
    /// Fired from the moment the lock is taken: the watch starts on the runtime's thread, in
    /// the same hop as the lock query.
    signal: Arc<LossSignal>,
    /// Set when the caller no longer wants the lock.
    cancelled: Option<Arc<AtomicBool>>,
    /// The session made (and the server identified) before the self-wait check.
    first: Option<(Session, String)>,
}

/// A session, and which server it reached (see `Session::server_identity`).
async fn connect_identified(
    prepared: &Prepared,
    lost_after: Duration,
) -> Result<(Session, String), String> {
    let session = Session::connect(
        &prepared.info,
        prepared.tls.as_ref(),
        &identity(),
        lost_after,
    )
    .await?;
    let server = session.server_identity().await?;
    Ok((session, server))
}

enum Outcome {
    /// Held by someone else for the whole timeout.
    Busy(Option<Holder>),
    Failed(String),
}

impl Job {
    async fn run(self) -> Result<(Session, String), Outcome> {
        match self.cancelled.clone() {
            // A caller that went away (a dropped future) stops the wait within 100 ms; dropping
            // the unfinished attempt drops its session, and with it anything the server granted.
            Some(cancelled) => tokio::select! {
                outcome = self.attempts() => outcome,
                () = until_set(cancelled) => Err(Outcome::Busy(None)),
            },
            None => self.attempts().await,
        }
    }

    async fn attempts(mut self) -> Result<(Session, String), Outcome> {
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        let once = self.timeout == Some(Duration::ZERO);
        let connect_timeout = self.prepared.info.connect_timeout;
        // Set while a dropped connection is being replaced: since when, and why it dropped.
        let mut broken: Option<(Instant, String)> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            let connected = match self.first.take() {
                Some(first) => Ok(first),
                None => connect_identified(&self.prepared, self.lost_after).await,
            };
            let (session, server) = match connected {
                Ok(connected) => connected,
                Err(reason) => {
                    let Some((since, why)) = &broken else {
                        return Err(Outcome::Failed(reason));
                    };
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Outcome::Failed(format!(
                            "the connection dropped while waiting ({why}), and the server was \
                             not back before the timeout: {reason}"
                        )));
                    }
                    if since.elapsed() >= connect_timeout {
                        return Err(Outcome::Failed(format!(
                            "the connection dropped while waiting ({why}), and reconnecting \
                             failed for {connect_timeout:?}: {reason}"
                        )));
                    }
                    let pause = match deadline {
                        Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                        None => backoff,
                    };
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let result = match (deadline, limit) {
                // No time left to wait (a zero timeout, or connecting took it all): the server
                // still decides, with one try.
                (_, Some(limit)) if once || limit.is_zero() => session.try_lock(self.key).await,
                // The server ends the wait at `limit`; if it cannot say so (a partition), the
                // client gives up a little later, and the session goes with it.
                (Some(deadline), _) => tokio::time::timeout_at(
                    deadline + self.lost_after,
                    session.lock(self.key, limit),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(Refused::Broken(format!(
                        "no answer from the server for {:?} past the lock timeout",
                        self.lost_after
                    )))
                }),
                (None, _) => session.lock(self.key, None).await,
            };
            match result {
                Ok(()) => {
                    let mut session = session;
                    session.watch(self.signal, self.lost_after);
                    return Ok((session, server));
                }
                Err(Refused::Busy) => {
                    let holder = session
                        .holder(self.key)
                        .await
                        .ok()
                        .flatten()
                        .map(Holder::from_session);
                    return Err(Outcome::Busy(holder));
                }
                Err(Refused::Broken(reason)) if !once => {
                    // The server freed whatever this session had: wait on in a new one.
                    drop(session);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Outcome::Failed(reason));
                    }
                    broken = Some((Instant::now(), reason));
                    backoff = Duration::from_millis(50);
                }
                Err(Refused::Broken(reason) | Refused::Failed(reason)) => {
                    return Err(Outcome::Failed(reason));
                }
            }
        }
    }
}

/// Returns once `flag` is set, looking ten times a second.
async fn until_set(flag: Arc<AtomicBool>) {
    while !flag.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Holds a [`PgLock`] until dropped. Made by [`PgLock::lock`]; derefs to the lock for its
/// queries ([`fencing_token`](PgLock::fencing_token), [`is_lost`](PgLock::is_lost), ...).
///
/// ```no_run
/// let guard = pidlock::PgLock::lock("postgres://db.internal/app", "nightly-report", None)?;
/// let watch = guard.loss_watch();
/// assert!(!watch.is_lost());
/// guard.release()?; // or just drop it
/// # Ok::<(), pidlock::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct PgLockGuard {
    lock: PgLock,
    watch: LossWatch,
}

impl PgLockGuard {
    pub(crate) fn new(lock: PgLock) -> PgLockGuard {
        let signal = match &lock.held {
            Some(held) => Arc::clone(&held.signal),
            // Not reachable through `PgLock::lock`; a guard of nothing is as good as lost.
            None => {
                let signal = LossSignal::new(&lock.name, &lock.server(), Vec::new());
                signal.fire("not held");
                signal
            }
        };
        PgLockGuard {
            lock,
            watch: LossWatch::new(signal),
        }
    }

    /// A watch on the loss of this lock, to hand to other threads or to block on.
    pub fn loss_watch(&self) -> LossWatch {
        self.watch.clone()
    }

    /// Releases the lock now, and reports what dropping the guard would ignore.
    pub fn release(mut self) -> Result<(), UnlockError> {
        self.lock.release()
    }
}

impl Deref for PgLockGuard {
    type Target = PgLock;

    fn deref(&self) -> &PgLock {
        &self.lock
    }
}

/// Not for `PgLock`'s callers: the key derivation, for tests of sqlx compatibility.
#[doc(hidden)]
pub fn __key_for(name: &str) -> i64 {
    key::key_for(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_fit_in_application_name() {
        let id = identity();
        assert!(id.len() <= 63);
        let (pid, host) = parse_identity(&id).unwrap();
        assert_eq!(pid, process::id());
        assert!(host_name().starts_with(&host));
        assert_eq!(parse_identity("psql"), None);
        assert_eq!(parse_identity("pidlock x@y"), None);
    }

    #[test]
    fn a_malformed_connection_string_fails_without_io() {
        let mut lock = PgLock::new("host=db bogus=1", "job");
        let error = lock.acquire(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot lock job on PostgreSQL: bad connection string: invalid connection option (the key after \"host\")"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let lock = PgLock::new("postgres://u:hunter2@db:5432/x", "job");
        let shown = format!("{lock:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("PostgreSQL at db:5432"), "{shown}");
    }
}
