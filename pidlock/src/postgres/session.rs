//! One server session: connecting within a bound, the advisory lock's queries, and the watch
//! that notices when a held session is gone.
//!
//! # Noticing a loss, and the order of the two bounds
//!
//! The connection is driven on the runtime's thread at all times, so a session that the server
//! closes (`pg_terminate_backend`, a restart, a failover) is seen as soon as its socket reports
//! EOF, without a query. A silent partition closes nothing: a holder pings every
//! `lost_after / 4`, each ping with a deadline, and gives up when no ping it sent in the last
//! `lost_after` has been answered.
//!
//! The server must not free the lock before the holder has given up. Each session therefore
//! sets, for the server's side of its socket, `tcp_keepalives_idle = lost_after`,
//! `tcp_keepalives_interval = lost_after / 4`, `tcp_keepalives_count = 4` and
//! `tcp_user_timeout = 2 × lost_after`. The server's kernel closes a silent connection no
//! sooner than `2 × lost_after` after it last heard from the client, by either path (probes
//! unanswered for the user timeout, or four probes), and no later than about
//! `2.25 × lost_after`; the backend then exits and its locks go. The holder has given up by
//! `lost_after` after the last ping the server answered, which is no earlier than the server
//! last heard from it: the holder always steps down at least `lost_after` before anyone else
//! can get in. This is the Kubernetes lease's order (renew deadline before lease duration),
//! with a margin as large as the deadline itself.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{ConnInfo, SslMode};
use crate::loss::LossSignal;

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
}

/// A connected session.
#[derive(Debug)]
pub(crate) struct Session {
    client: Arc<Client>,
    watch: Arc<Mutex<Watch>>,
    driver: JoinHandle<()>,
    pinger: Option<JoinHandle<()>>,
}

/// The server-side settings that order the two bounds (see the module documentation).
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
         -c lock_timeout=0"
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
    /// Connects as `identity` (the session's `application_name`), within the connection
    /// string's `connect_timeout` for everything: name lookup, TCP, TLS, authentication.
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
            .connect_timeout(info.connect_timeout)
            // The client's side: a waiter blocked in `pg_advisory_lock` sends nothing, so only
            // TCP tells it that the server went silent.
            .keepalives(true)
            .keepalives_idle(lost_after.max(Duration::from_secs(1)))
            .keepalives_interval((lost_after / 4).max(Duration::from_secs(1)))
            .keepalives_retries(4)
            .tcp_user_timeout(lost_after.saturating_mul(2));
        let watch = Arc::new(Mutex::new(Watch::default()));
        let connecting = async {
            match (info.ssl_mode, tls) {
                (SslMode::Disable, _) | (_, None) => {
                    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                    let (client, connection) = config.connect(NoTls).await?;
                    Ok((client, tokio::spawn(drive(connection, Arc::clone(&watch)))))
                }
                (mode, Some(tls)) => {
                    config.ssl_mode(match mode {
                        SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                        _ => tokio_postgres::config::SslMode::Require,
                    });
                    let (client, connection) = config.connect(tls.clone()).await?;
                    Ok((client, tokio::spawn(drive(connection, Arc::clone(&watch)))))
                }
            }
        };
        match tokio::time::timeout(info.connect_timeout, connecting).await {
            Ok(Ok((client, driver))) => Ok(Session {
                client: Arc::new(client),
                watch,
                driver,
                pinger: None,
            }),
            Ok(Err(error)) => Err(describe(&error)),
            Err(_) => Err(format!(
                "no answer from the server within {:?} (connect_timeout)",
                info.connect_timeout
            )),
        }
    }

    /// `pg_try_advisory_lock`: the fencing token if it was free.
    pub(crate) async fn try_lock(&self, key: i64) -> Result<u64, Refused> {
        let row = self
            .client
            .query_one(
                "SELECT CASE WHEN pg_try_advisory_lock($1) THEN pg_current_xact_id()::text END",
                &[&key],
            )
            .await
            .map_err(|e| refusal(&e))?;
        let token: Option<String> = row.try_get(0).map_err(|e| Refused::Failed(describe(&e)))?;
        match token {
            Some(token) => parse_token(&token),
            None => Err(Refused::Busy),
        }
    }

    /// `pg_advisory_lock`, waited for on the server for at most `limit` (`lock_timeout`), or
    /// without a limit. The token is read in the same statement, after the lock is granted (the
    /// `OFFSET 0` subquery is evaluated first), so a handoff costs no extra round trip.
    pub(crate) async fn lock(&self, key: i64, limit: Option<Duration>) -> Result<u64, Refused> {
        // lock_timeout is an int of milliseconds; 0 means no limit, so a limit rounds up to 1.
        let millis = limit.map_or(0, |l| l.as_millis().clamp(1, i32::MAX as u128));
        let sql = format!(
            "SET lock_timeout = {millis}; \
             SELECT pg_current_xact_id()::text FROM (SELECT pg_advisory_lock({key}) OFFSET 0) AS taken"
        );
        let messages = self
            .client
            .simple_query(&sql)
            .await
            .map_err(|e| refusal(&e))?;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message
                && let Some(token) = row.get(0)
            {
                return parse_token(token);
            }
        }
        Err(Refused::Failed("the lock query returned no row".to_owned()))
    }

    /// `pg_advisory_unlock`: whether this session held the lock.
    pub(crate) async fn unlock(&self, key: i64) -> Result<bool, String> {
        let row = self
            .client
            .query_one("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .map_err(|e| describe(&e))?;
        row.try_get(0).map_err(|e| describe(&e))
    }

    /// The session holding `key` in this database, if any (see [`holder_on`]).
    pub(crate) async fn holder(&self, key: i64) -> Result<Option<(String, u32)>, String> {
        holder_on(&self.client, key).await
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
        // Dropping the last client makes the driver send Terminate and finish; if the caller
        // is a forked child, it never reaches a runtime thread anyway (see `PgLock`).
        let _ = &self.driver;
    }
}

/// Drives the connection until it ends, then fires the held lock's signal, if any.
async fn drive<S, T>(connection: Connection<S, T>, watch: Arc<Mutex<Watch>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut connection = connection;
    let reason = loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            // Notices (the server's warnings) and notifications are of no interest here.
            Some(Ok(AsyncMessage::Notice(_) | AsyncMessage::Notification(_))) => {}
            Some(Ok(_)) => {}
            Some(Err(error)) => break describe(&error),
            None => break "connection closed".to_owned(),
        }
    };
    let signal = {
        let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        watch.ended = Some(reason.clone());
        watch.signal.clone()
    };
    if let Some(signal) = signal {
        signal.fire(&reason);
    }
}

/// Pings every `lost_after / 4`; fires when no ping sent in the last `lost_after` was answered.
async fn ping(client: Arc<Client>, signal: Arc<LossSignal>, lost_after: Duration) {
    let period = lost_after / 4;
    let mut answered = Instant::now();
    let mut next = answered + period;
    loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        match tokio::time::timeout_at(answered + lost_after, client.simple_query("")).await {
            Ok(Ok(_)) => answered = sent,
            Ok(Err(error)) => {
                signal.fire(&describe(&error));
                return;
            }
            Err(_) => {
                signal.fire(&format!("no answer from the server for {lost_after:?}"));
                return;
            }
        }
        next = sent + period;
    }
}

/// The session holding `key` in the client's database, if any: its `application_name` and its
/// server process id.
pub(crate) async fn holder_on(client: &Client, key: i64) -> Result<Option<(String, u32)>, String> {
    let (classid, objid) = super::key::split(key);
    let rows = client
        .query(
            "SELECT coalesce(a.application_name, ''), l.pid \
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
    Ok(Some((name, pid.map_or(0, i32::unsigned_abs))))
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

fn parse_token(token: &str) -> Result<u64, Refused> {
    token
        .parse()
        .map_err(|_| Refused::Failed(format!("unexpected transaction id {token:?}")))
}
