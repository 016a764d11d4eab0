//! One server session: connecting within a bound, the advisory lock's queries, and the watch
//! that notices when a held session is gone.
//!
//! # Noticing a loss, and the order of the two bounds
//!
//! The connection is driven at all times (see `runtime.rs`), so a session that the server
//! closes (`pg_terminate_backend`, a restart, a failover) is seen as soon as its socket reports
//! EOF, without a query. A silent partition closes nothing: a holder pings every
//! `lost_after / 2`, on one periodic timer, and gives up when no ping it sent in the last
//! `lost_after` has been answered (see [`ping`]).
//!
//! The server must not free the lock before the holder has given up. Each session therefore
//! sets, for the server's side of its socket, `tcp_keepalives_idle = lost_after`,
//! `tcp_keepalives_interval = lost_after / 4`, `tcp_keepalives_count = 4` and
//! `tcp_user_timeout = 2 × lost_after`. The server's kernel closes a silent connection no
//! sooner than `2 × lost_after` after it last heard from the client, by either path (probes
//! unanswered for the user timeout, or four probes), and no later than about
//! `2.25 × lost_after`; the backend then exits and its locks go. The holder has given up by
//! `lost_after` after the last ping the server answered was sent, which is no later than the
//! server last heard from it: the holder always steps down at least `lost_after` before anyone
//! else can get in. This is the Kubernetes lease's order (renew deadline before lease duration),
//! with a margin as large as the deadline itself.
//!
//! The margin does not depend on how often the holder pings: the holder's bound runs from the
//! send of the last answered ping, the server's from the last byte it heard, never earlier.
//! What the period sets is how slow one answer may be before it counts as a loss. With a ping
//! every `lost_after / 2`, a ping must be answered within `lost_after / 2` (5 s by default) of
//! being sent; four pings per bound (before issue 15) allowed `3/4 × lost_after` for one slow
//! answer, for twice the wake-ups. A server that answers slower than that for long is as good as
//! gone for a lock: either period allows at most `lost_after / 2` for every answer in a row,
//! since one ping is in flight at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[cfg(unix)]
use std::os::fd::OwnedFd;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, NoTls, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::Driver;
use super::conninfo::{ConnInfo, SslMode};
use super::runtime;
use super::socket::{self, Keepalive, Stream, Target};
use super::ticker::Ticker;
use crate::loss::LossSignal;

/// The longest `lock_timeout` the server takes: an int of milliseconds.
pub(crate) const LONGEST_LOCK_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The SQLSTATE of a lock wait that ran out of `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How a lock query ended, when it did not take the lock.
#[derive(Debug)]
pub(crate) enum Refused {
    /// `lock_timeout` passed, or the one try found it held.
    Busy,
    /// The connection broke: another session may take over the wait.
    Broken(String),
    /// The server refused for another reason (a standby, a permission, ...).
    Failed(String),
}

/// What the connection's driver and the holder share: the signal to fire, once there is one,
/// and why the connection ended, if it has.
#[derive(Debug, Default)]
struct Watch {
    signal: Option<Arc<LossSignal>>,
    ended: Option<String>,
    /// A copy of the connection's socket (close-on-exec), to duplicate for child processes;
    /// closed as soon as the connection ends or the lock is lost, so that it never keeps a
    /// session alive that this process let go of.
    #[cfg(unix)]
    socket: Option<OwnedFd>,
}

/// A connected session.
#[derive(Debug)]
pub(crate) struct Session {
    client: Arc<Client>,
    watch: Arc<Mutex<Watch>>,
    driver: Driver,
    /// The driver's task, to wait for it to be gone.
    driving: JoinHandle<()>,
    pinger: Option<JoinHandle<()>>,
    /// How long any statement but the lock wait may take before the server counts as silent:
    /// the connection string's `connect_timeout`.
    answer_within: Duration,
    /// Statements started and not finished: one whose caller gave up on it (a cancelled or
    /// timed-out wait, a silent server, a fencing token whose commit waits) stays counted.
    pending: Arc<AtomicUsize>,
    /// Where the connection went and how: a cancel request goes the same way.
    reached: Reached,
    /// Counts this session among the process's (see `runtime::wait_here`).
    _alive: runtime::Alive,
}

/// The server address a session reached (the very address, not a name to resolve again, which
/// may name another server by now), and the TLS connector it used, if any. tokio-postgres
/// knows neither for a connection made over a socket of ours (`connect_raw`), so
/// `CancelToken::cancel_query` cannot be used: the cancel request opens its own socket here
/// (see [`cancel_statement`]).
#[derive(Clone)]
struct Reached {
    target: Target,
    keepalive: Keepalive,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Reached {
    /// The connector has no `Debug` of its own.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reached")
            .field("target", &self.target)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// `future`, or the reason it did not finish within `limit`: no call waits forever on a server
/// that stopped answering.
pub(crate) async fn within<T>(
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from the server within {limit:?}")))
}

/// The server-side settings of every session: those that order the two bounds (see the module
/// documentation); no server timeout that could end a holder's session; and a check, twice a
/// second while a statement runs, that the client is still there, so that a waiter that went
/// away (killed, or a cancelled wait whose connection was cut) stops waiting at once instead of
/// being granted the lock later, to nobody. These need PostgreSQL 14 or later.
fn session_options(user_options: Option<&str>, lost_after: Duration) -> String {
    let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let idle = secs(lost_after).max(1);
    let interval = secs(lost_after / 4).max(1);
    let user_timeout = lost_after
        .as_millis()
        .saturating_mul(2)
        .min(i32::MAX as u128);
    let ours = format!(
        "-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} \
         -c tcp_keepalives_count=4 -c tcp_user_timeout={user_timeout} -c statement_timeout=0 \
         -c lock_timeout=0 -c idle_session_timeout=0 -c idle_in_transaction_session_timeout=0 \
         -c client_connection_check_interval=500"
    );
    match user_options {
        Some(theirs) => format!("{theirs} {ours}"),
        None => ours,
    }
}

/// One line for any error of the client, without the password or a newline.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let text = match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {}", db.message(), detail),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text = format!("{text}: {cause}");
                }
                source = cause_of(source);
            }
            text
        }
    };
    text.replace(['\n', '\r'], " ")
}

fn cause_of<'a>(
    error: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    error.and_then(std::error::Error::source)
}

impl Session {
    /// Connects as `identity` (the session's `application_name`), each host and address in
    /// turn, each within the connection string's `connect_timeout` (name lookup, TCP, TLS,
    /// authentication), as libpq does.
    pub(crate) async fn connect(
        info: &ConnInfo,
        tls: Option<&MakeRustlsConnect>,
        identity: &str,
        lost_after: Duration,
    ) -> Result<Session, String> {
        let mut config = info.config.clone();
        config
            .application_name(identity)
            .options(session_options(info.options.as_deref(), lost_after))
            .connect_timeout(info.connect_timeout);
        // The client's side: a waiter blocked in `pg_advisory_lock` sends nothing, so only TCP
        // tells it that the server went silent; and a session shared with a job outlives the
        // process that drove it, so only the kernel is left to close it if the server goes.
        let keepalive = Keepalive {
            idle: lost_after.max(Duration::from_secs(1)),
            interval: (lost_after / 4).max(Duration::from_secs(1)),
            retries: 4,
            user_timeout: lost_after.saturating_mul(2),
        };
        // Each attempt (host, address) gets `connect_timeout` of its own, as in libpq: a host
        // that does not answer is given up for the next one.
        let mut last = "no host to connect to".to_owned();
        for target in socket::targets(&config)? {
            let attempt = connect_to(
                &config,
                &target,
                keepalive,
                info.ssl_mode,
                tls,
                info.connect_timeout,
            );
            match attempt.await {
                Ok((client, (driver, driving), watch, reached)) => {
                    return Ok(Session {
                        client: Arc::new(client),
                        watch,
                        driver,
                        driving,
                        pinger: None,
                        answer_within: info.connect_timeout,
                        pending: Arc::new(AtomicUsize::new(0)),
                        reached,
                        _alive: runtime::Alive::new(),
                    });
                }
                Err(reason) => last = reason,
            }
        }
        Err(last)
    }

    /// `pg_try_advisory_lock`: `Ok` if it was free and is now held. One round trip (see
    /// [`unlock`](Self::unlock)).
    pub(crate) async fn try_lock(&self, key: i64) -> Result<(), Refused> {
        let sql = format!("SELECT pg_try_advisory_lock({key})");
        let query = self.pending(self.client.simple_query(&sql));
        let messages = tokio::time::timeout(self.answer_within, query)
            .await
            .map_err(|_| {
                Refused::Broken(format!(
                    "no answer from the server within {:?}",
                    self.answer_within
                ))
            })?
            .map_err(|e| refusal(&e))?;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                return match row.get(0) {
                    Some("t") => Ok(()),
                    _ => Err(Refused::Busy),
                };
            }
        }
        Err(Refused::Failed("the lock query returned no row".to_owned()))
    }

    /// Which server and database this session reached, whatever the connection string called
    /// it: the postmaster's start time (which tells apart two servers, a primary and a promoted
    /// copy of it among them), its port and the database's oid.
    ///
    /// Every part reads the same in every session of one server, whatever the session's
    /// settings or role, or one server would count as two and a holder would wait for itself:
    /// the start time as whole microseconds since the epoch (its `::text` follows the session's
    /// `TimeZone` and `DateStyle`), the port and the oid as integers (no setting changes their
    /// text, and `port` cannot be set per session). Nothing that depends on a privilege: the
    /// cluster's `system_identifier` (`pg_control_system()`) can be revoked from one role and
    /// not another, so it is left out. Readable by any role.
    pub(crate) async fn server_identity(&self) -> Result<String, String> {
        const SQL: &str = "SELECT \
             (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint::text \
             || '/' || current_setting('port') \
             || '/' || (SELECT oid FROM pg_database WHERE datname = current_database())::text";
        let query = self.pending(self.client.simple_query(SQL));
        let messages = within(self.answer_within, async {
            query.await.map_err(|e| describe(&e))
        })
        .await?;
        messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .ok_or_else(|| "the server did not say who it is".to_owned())
    }

    /// Has the server parse and plan a call of `pg_advisory_unlock`, never run (`WHERE false`),
    /// so that a new session's first release does not pay for looking the function up. That
    /// look-up is on the next holder's path: it made a new session's release some 35 µs slower
    /// than a warm one's (issue 15's profile, `benches/pg_handoff.rs`). Run, it would only
    /// warn: a new session holds no lock. Its failure is of no consequence.
    pub(crate) async fn look_up_unlock(&self) {
        let query = self.pending(
            self.client
                .simple_query("SELECT pg_advisory_unlock(0) WHERE false"),
        );
        let _ = within(self.answer_within, async {
            query.await.map_err(|e| describe(&e))
        })
        .await;
    }

    /// `pg_advisory_lock`, waited for on the server for at most `limit` (`lock_timeout`), or
    /// without a limit (the session's default, set at connection). One round trip; the token is
    /// read by [`read_token`](Self::read_token) afterwards, off the handoff's path.
    ///
    /// With a limit, `lock_timeout` is set back to 0 by a second query sent in the same write,
    /// whose answer is not waited for: the server runs it after the lock's answer has left,
    /// which a statement inside the lock's query would delay (by some 10 µs, on the handoff's
    /// path). The `SET` before the lock rolls back with it if the lock fails, as both are in
    /// one implicit transaction.
    pub(crate) async fn lock(&self, key: i64, limit: Option<Duration>) -> Result<(), Refused> {
        let Some(limit) = limit else {
            let sql = format!("SELECT pg_advisory_lock({key})");
            return self
                .pending(self.client.simple_query(&sql))
                .await
                .map(drop)
                .map_err(|e| refusal(&e));
        };
        // lock_timeout is an int of milliseconds, where 0 means no limit: round up to 1.
        let sql = format!(
            "SET lock_timeout = {}; SELECT pg_advisory_lock({key})",
            limit.min(LONGEST_LOCK_TIMEOUT).as_millis().max(1)
        );
        let mut lock = std::pin::pin!(self.pending(self.client.simple_query(&sql)));
        // Not counted as pending: nobody waits for its answer, and it never waits itself.
        let mut reset = std::pin::pin!(self.client.simple_query("SET lock_timeout = 0"));
        let mut reset_sent = false;
        std::future::poll_fn(|cx| {
            let locked = lock.as_mut().poll(cx);
            // Queued after the lock (a first poll queues a query), and only once: its answer
            // is of no interest.
            if !reset_sent {
                reset_sent = true;
                let _ = reset.as_mut().poll(cx);
            }
            locked
        })
        .await
        .map(drop)
        .map_err(|e| refusal(&e))
    }

    /// Runs one statement's `future`, counted as pending until it finishes.
    async fn pending<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        counted(&self.pending, future).await
    }

    /// The count of statements started and not finished, for a statement run on the
    /// [`client`](Self::client) outside this object (the fencing token's, see [`counted`]).
    pub(crate) fn pending_count(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.pending)
    }

    /// `pg_advisory_unlock`: whether this session held the lock. A simple query, with the key
    /// (our own integer) written out: one round trip, where a prepared statement takes two, and
    /// the next holder waits for this one.
    ///
    /// Sent from the calling thread, which writes the statement to the socket itself (see
    /// `connection.rs`): the runtime's thread would first have to wake up to send it. Blocks for
    /// the answer for at most `limit`; needs no runtime on the calling thread.
    pub(crate) fn unlock(&self, key: i64, limit: Duration) -> Result<bool, String> {
        let sql = format!("SELECT pg_advisory_unlock({key})");
        let query = self.pending(self.client.simple_query(&sql));
        let messages = runtime::poll_here(query, limit, |first| self.driver.send_here(first))
            .ok_or_else(|| format!("no answer from the server within {limit:?}"))?
            .map_err(|e| describe(&e))?;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                return Ok(row.get(0) == Some("t"));
            }
        }
        Err("pg_advisory_unlock returned no row".to_owned())
    }

    /// The session holding `key` in this database, if any (see [`holder_on`]).
    pub(crate) async fn holder(&self, key: i64) -> Result<Option<Found>, String> {
        within(
            self.answer_within,
            self.pending(holder_on(&self.client, key)),
        )
        .await
    }

    /// How long a statement may take before the server counts as silent.
    pub(crate) fn answer_within(&self) -> Duration {
        self.answer_within
    }

    /// The client, for queries that outlive a borrow of the session.
    pub(crate) fn client(&self) -> Arc<Client> {
        Arc::clone(&self.client)
    }

    /// The lock is held from now on: fire `signal` when the session ends, and ping with
    /// deadlines so that a silent server counts as gone after `lost_after`.
    pub(crate) fn watch(&mut self, signal: Arc<LossSignal>, lost_after: Duration) {
        let already = {
            let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
            watch.signal = Some(Arc::clone(&signal));
            watch.ended.clone()
        };
        // A loss closes the connection at once: the server ends the session (and frees the
        // lock) as soon as it hears of it, even if this object lives on. A silent server hears
        // of it when the link heals, or by its own keepalives.
        //
        // Except a backend inside a statement that does not look at its socket: a commit
        // waiting for a synchronous standby that is gone (the fencing token's) waits on, lock
        // held, however the socket ends. A cancel request (a new connection, which the server
        // turns into a signal to the backend) ends that wait; the backend then finds the
        // socket closed and exits. It is sent when a statement was in flight at the loss, at
        // the same time as the connection is cut, and given up after `connect_timeout`.
        //
        // A session shared with child processes (`share`) is ended by neither: the close is of
        // this process's copies only (no `shutdown(2)`), and a cancel ends a statement, not a
        // session. Its lock stays held while any of the children runs, as the promise needs:
        // the one who shared it stops them all at a loss (`pidlock run` stops the whole job),
        // and the server frees the lock when the last of them has exited, never under the feet
        // of one still running.
        let driver = self.driver.clone();
        let shared = Arc::clone(&self.watch);
        let in_flight = Arc::clone(&self.pending);
        let cancel = self.client.cancel_token();
        let reached = self.reached.clone();
        let bound = self.answer_within;
        // Called on the runtime (the lock was just taken there).
        let runtime = tokio::runtime::Handle::try_current().ok();
        signal.on_loss_let_go(Box::new(move || {
            driver.cut();
            // The copy kept for `share`: a lost lock is handed to no child from now on.
            #[cfg(unix)]
            {
                shared.lock().unwrap_or_else(PoisonError::into_inner).socket = None;
            }
            #[cfg(not(unix))]
            drop(shared);
            if in_flight.load(Ordering::Relaxed) > 0
                && let Some(runtime) = runtime
            {
                runtime.spawn(async move {
                    let _ =
                        tokio::time::timeout(bound, cancel_statement(cancel, reached, bound)).await;
                });
            }
        }));
        if let Some(reason) = already {
            signal.fire(&reason);
            return;
        }
        self.pinger = Some(tokio::spawn(ping(
            Arc::clone(&self.client),
            signal,
            lost_after,
        )));
    }

    /// A duplicate (close-on-exec) of the connection's socket, for child processes to inherit:
    /// the server keeps the session, and its locks, while any process has the socket open.
    #[cfg(unix)]
    pub(crate) fn share(&self) -> std::io::Result<OwnedFd> {
        let watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        match &watch.socket {
            Some(socket) => socket.try_clone(),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the session's connection has ended",
            )),
        }
    }

    /// Closes this process's copies of the connection's socket without a word to the server:
    /// no unlock, no `Terminate`, no `shutdown(2)` (which would end the connection for every
    /// process sharing it). The session, and its locks, live on while any other process has
    /// the socket open; the server ends it when the last one closes it.
    pub(crate) async fn leave(mut self) {
        if let Some(pinger) = self.pinger.take() {
            pinger.abort();
        }
        // Cut, not finished: the stream is closed (`close(2)`), and the client's end, dropped
        // after this, finds no driver left to send `Terminate`.
        self.cut();
        let _ = (&mut self.driving).await;
    }

    /// Closes this process's copies of the connection's socket now, without a word to the
    /// server: the connection's own and the one kept for `share`, which would otherwise keep
    /// the session, and any lock it still has, alive.
    fn cut(&self) {
        self.driver.cut();
        #[cfg(unix)]
        {
            self.watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .socket = None;
        }
    }

    /// Whether the connection has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ended
            .is_some()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(pinger) = &self.pinger {
            pinger.abort();
        }
        // Dropping the last client makes the driver send Terminate and finish, but only once
        // every pending statement has its answer. A wait nobody wants any more (the server
        // would grant it later, to nobody) or a statement to a silent server would keep the
        // session: cut the connection instead, and the server ends the session at once.
        let lost = self
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .signal
            .as_ref()
            .is_some_and(|signal| signal.lost().is_some());
        if self.pending.load(Ordering::Relaxed) > 0 || lost {
            self.cut();
        }
    }
}

/// A connected client, its connection's driver, what the driver shares with the session, and
/// where the connection went.
type Connected = (Client, (Driver, JoinHandle<()>), Arc<Mutex<Watch>>, Reached);

/// One attempt: the socket to `target`, TLS as `ssl_mode` says, the startup, and the check
/// `target_session_attrs=read-write` asks for. The connection is driven from here on; a failed
/// attempt's connection is cut.
async fn connect_to(
    config: &tokio_postgres::Config,
    target: &Target,
    keepalive: Keepalive,
    ssl_mode: SslMode,
    tls: Option<&MakeRustlsConnect>,
    limit: Duration,
) -> Result<Connected, String> {
    let (stream, began) = socket::connect(target, keepalive, limit).await?;
    let started = start(config, target, stream, keepalive, ssl_mode, tls);
    tokio::time::timeout_at((began + limit).into(), started)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from the server within {limit:?} (connect_timeout)"
            ))
        })
}

/// The rest of an attempt once its socket is connected: TLS as `ssl_mode` says, the startup,
/// and the check `target_session_attrs=read-write` asks for.
async fn start(
    config: &tokio_postgres::Config,
    target: &Target,
    stream: Stream,
    keepalive: Keepalive,
    ssl_mode: SslMode,
    tls: Option<&MakeRustlsConnect>,
) -> Result<Connected, String> {
    let watch = &Arc::new(Mutex::new(Watch::default()));
    let mut reached = Reached {
        target: socket::reached(&stream, target),
        keepalive,
        tls: None,
    };
    #[cfg(unix)]
    let shared = std::os::fd::AsFd::as_fd(&stream)
        .try_clone_to_owned()
        .map_err(|e| format!("cannot keep the connection's socket: {e}"))?;
    let mut config = config.clone();
    // libpq never uses TLS on a Unix socket, whatever sslmode says.
    let local = !matches!(target.addr, Host::Tcp(_));
    let (client, driver) = match (ssl_mode, tls) {
        (SslMode::Disable, _) | (_, None) => plain(&mut config, stream, watch).await?,
        (_, Some(_)) if local => plain(&mut config, stream, watch).await?,
        (mode, Some(tls)) => {
            config.ssl_mode(match mode {
                SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
            let hostname = target.hostname.as_deref().unwrap_or("");
            let connector = MakeTlsConnect::<Stream>::make_tls_connect(&mut tls.clone(), hostname)
                .map_err(|e| format!("error performing TLS handshake: {e}"))?;
            let (client, connection) = config
                .connect_raw(stream, connector)
                .await
                .map_err(|e| describe(&e))?;
            reached.tls = Some(tls.clone());
            (client, drive(connection, watch))
        }
    };
    if config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
        let writable = match client.simple_query("SHOW transaction_read_only").await {
            Ok(rows) => !rows
                .iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))),
            Err(e) => {
                driver.0.cut();
                return Err(describe(&e));
            }
        };
        if !writable {
            driver.0.cut();
            return Err("error connecting to server: database does not allow writes".to_owned());
        }
    }
    #[cfg(unix)]
    {
        let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        // A connection that ended already has nothing left to share.
        if watch.ended.is_none() {
            watch.socket = Some(shared);
        }
    }
    Ok((client, driver, Arc::clone(watch), reached))
}

/// The startup without TLS, and the connection's driver.
async fn plain(
    config: &mut tokio_postgres::Config,
    stream: Stream,
    watch: &Arc<Mutex<Watch>>,
) -> Result<(Client, (Driver, JoinHandle<()>)), String> {
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .map_err(|e| describe(&e))?;
    Ok((client, drive(connection, watch)))
}

/// Runs one statement's `future`, counted in `pending` until it finishes: a statement whose
/// caller gave up on it stays counted, so that a loss knows to cancel it (see `Session::watch`).
pub(crate) async fn counted<T>(
    pending: &AtomicUsize,
    future: impl std::future::Future<Output = T>,
) -> T {
    pending.fetch_add(1, Ordering::Relaxed);
    let output = future.await;
    pending.fetch_sub(1, Ordering::Relaxed);
    output
}

/// Asks the server to cancel the statement that `cancel`'s session runs: a socket of its own to
/// the address the session `reached`, over TLS if the session used it. The server answers
/// nothing; a failure to connect is of no further use to the caller, who bounds the wait.
async fn cancel_statement(
    cancel: tokio_postgres::CancelToken,
    reached: Reached,
    limit: Duration,
) -> Result<(), String> {
    let (stream, _) = socket::connect(&reached.target, reached.keepalive, limit).await?;
    match reached.tls {
        Some(mut tls) => {
            let hostname = reached.target.hostname.as_deref().unwrap_or("");
            let connector = MakeTlsConnect::<Stream>::make_tls_connect(&mut tls, hostname)
                .map_err(|e| format!("error performing TLS handshake: {e}"))?;
            cancel.cancel_query_raw(stream, connector).await
        }
        None => cancel.cancel_query_raw(stream, NoTls).await,
    }
    .map_err(|e| describe(&e))
}

/// Drives the connection until it ends, then fires the held lock's signal, if any.
fn drive<S, T>(connection: Connection<S, T>, watch: &Arc<Mutex<Watch>>) -> (Driver, JoinHandle<()>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::clone(watch);
    Driver::spawn(connection, move |reason| {
        let signal = {
            let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
            watch.ended = Some(reason.clone());
            #[cfg(unix)]
            {
                watch.socket = None;
            }
            watch.signal.clone()
        };
        if let Some(signal) = signal {
            signal.fire(&reason);
        }
    })
}

/// Pings every `lost_after / 2`, on one periodic timer; fires when no ping sent in the last
/// `lost_after` was answered (see the module documentation).
///
/// One timer and nothing else: the in-flight ping's deadline is looked at on the ticks, not
/// given a timer of its own. A ping is sent on a tick and counts as sent when that tick was due
/// (never later than it was sent), so its deadline, two periods on, is a tick too. Each ping
/// wakes the runtime's thread twice, for the tick and for the answer, and nothing else does
/// while the lock is held.
async fn ping(client: Arc<Client>, signal: Arc<LossSignal>, lost_after: Duration) {
    // When the last answered ping was sent (the lock query's answer counts as one): read
    // before the ticker starts, so that a tick two periods on is past its deadline.
    let mut answered = Instant::now();
    let period = lost_after / 2;
    let mut ticks = Ticker::new(period);
    // The ping in flight, and when it was sent: one at a time, since the server answers in
    // order and a second one would only queue behind the first.
    let mut in_flight = None;
    loop {
        tokio::select! {
            biased;
            (sent, result) = async {
                match &mut in_flight {
                    Some((sent, query)) => (*sent, std::pin::Pin::as_mut(query).await),
                    None => std::future::pending().await,
                }
            } => {
                in_flight = None;
                match result {
                    Ok(_) => answered = sent,
                    Err(error) => {
                        signal.fire(&describe(&error));
                        return;
                    }
                }
            }
            due = ticks.tick() => {
                // Two periods, which are `lost_after` or a nanosecond less: never later.
                if due.saturating_duration_since(answered) >= period * 2 {
                    signal.fire(&format!("no answer from the server for {lost_after:?}"));
                    return;
                }
                if in_flight.is_none() {
                    in_flight = Some((due, Box::pin(client.simple_query(""))));
                }
            }
        }
    }
}

/// A session holding a lock, as `pg_stat_activity` shows it to this role.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) application_name: String,
    pub(crate) backend_pid: u32,
    /// `None` over a Unix socket, or for a session of a role this one may not see.
    pub(crate) client_addr: Option<String>,
}

/// The session holding `key` in the client's database, if any: its `application_name`, its
/// server process id and its client's address.
pub(crate) async fn holder_on(client: &Client, key: i64) -> Result<Option<Found>, String> {
    let (classid, objid) = super::key::split(key);
    let rows = client
        .query(
            "SELECT coalesce(a.application_name, ''), l.pid, host(a.client_addr) \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.classid = $1 AND l.objid = $2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             LIMIT 1",
            &[&classid, &objid],
        )
        .await
        .map_err(|e| describe(&e))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let name: String = row.try_get(0).map_err(|e| describe(&e))?;
    let pid: Option<i32> = row.try_get(1).map_err(|e| describe(&e))?;
    let client_addr: Option<String> = row.try_get(2).map_err(|e| describe(&e))?;
    Ok(Some(Found {
        application_name: name,
        backend_pid: pid.map_or(0, i32::unsigned_abs),
        client_addr,
    }))
}

fn refusal(error: &tokio_postgres::Error) -> Refused {
    match error.as_db_error() {
        Some(db) if db.code().code() == LOCK_NOT_AVAILABLE => Refused::Busy,
        // The server ended the session (terminated, shutting down): another one may wait on.
        Some(db) if error.is_closed() || matches!(db.severity(), "FATAL" | "PANIC") => {
            Refused::Broken(describe(error))
        }
        Some(_) => Refused::Failed(describe(error)),
        None => Refused::Broken(describe(error)),
    }
}
