//! Making a `PgLock`: the constructors, the options (`lost_after`, `on_lost`), what it names
//! (key, name, server), and the connection string parsed once.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::conninfo::{self, UNPARSED_SERVER};
use super::token::Token;
use super::{PgLock, PgLockGuard, Prepared, key, tls};
use crate::error::LockError;
use crate::loss::{Lost, OnLost};

/// The default for [`PgLock::lost_after`]: a holder cut off from the server without a word
/// (a partition) gives up after this long.
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(10);

/// The shortest [`PgLock::lost_after`]: the server's keepalive settings count in whole seconds.
const MIN_LOST_AFTER: Duration = Duration::from_secs(1);

/// The longest [`PgLock::lost_after`]: Linux takes `TCP_KEEPIDLE` (which is `lost_after`) up to
/// 32767 seconds.
const MAX_LOST_AFTER: Duration = Duration::from_secs(32_767);

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
    /// let lock = pidlockfile::PgLock::new("host=db.internal user=app", "my first Postgres advisory lock!");
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
    /// let lock = pidlockfile::PgLock::with_key("host=db.internal", 42);
    /// assert_eq!(lock.key(), 42);
    /// assert_eq!(lock.name(), "advisory lock 42");
    /// ```
    pub fn with_key(conninfo: impl Into<String>, key: i64) -> PgLock {
        PgLock::build(conninfo.into(), format!("advisory lock {key}"), key)
    }

    pub(super) fn build(conninfo: String, name: String, key: i64) -> PgLock {
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
    /// let guard = pidlockfile::PgLock::lock("postgres://db.internal/app", "nightly-report", Some(Duration::from_secs(5)))?;
    /// println!("fencing token {}", guard.fencing_token());
    /// # Ok::<(), pidlockfile::LockError>(())
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

    /// One try, without waiting: `true` if this instance took the lock, `false` if another
    /// holder has it. The shorthand for [`acquire`](Self::acquire)`(Some(Duration::ZERO))`;
    /// any other failure (the server unreachable, this instance holding the lock already) is
    /// an `Err`, never a `false`.
    ///
    /// ```no_run
    /// let mut lock = pidlockfile::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// if !lock.try_acquire()? {
    ///     println!("running elsewhere");
    /// }
    /// # Ok::<(), pidlockfile::LockError>(())
    /// ```
    #[must_use = "`false` means another holder has the lock: the guarded work must not run"]
    pub fn try_acquire(&mut self) -> Result<bool, LockError> {
        match self.acquire(Some(Duration::ZERO)) {
            Ok(()) => Ok(true),
            Err(LockError::AlreadyLocked { .. }) if !self.i_am_locking() => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// One try on `name`, without waiting: a guard that releases the lock when dropped, or
    /// `None` if another holder has it.
    ///
    /// ```no_run
    /// let Some(guard) = pidlockfile::PgLock::try_lock("postgres://db.internal/app", "nightly-report")? else {
    ///     println!("running elsewhere");
    ///     return Ok(());
    /// };
    /// println!("fencing token {}", guard.fencing_token());
    /// # Ok::<(), pidlockfile::LockError>(())
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn try_lock(
        conninfo: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Option<PgLockGuard>, LockError> {
        let mut lock = PgLock::new(conninfo, name);
        Ok(lock.try_acquire()?.then(|| PgLockGuard::new(lock)))
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
    /// let lock = pidlockfile::PgLock::new("host=db.internal", "job").lost_after(Duration::from_secs(4));
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
    /// let mut lock = pidlockfile::PgLock::new("host=db.internal", "job");
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

    /// The parsed connection string and its TLS connector, parsed once by `acquire`.
    pub(super) fn prepared(&self) -> Result<Prepared, LockError> {
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
}

pub(super) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
