//! Who holds a fleet lock, and how a session says who it is (`application_name`).

use std::fmt;
use std::process;

use super::session;

/// Who holds a fleet lock, as its session records it.
///
/// ```no_run
/// let lock = pidlockfile::PgLock::new("postgres://db.internal/app", "nightly-report");
/// if let Some(holder) = lock.holder()? {
///     println!("held by pid {} on {}", holder.pid, holder.host);
/// }
/// # Ok::<(), pidlockfile::LockError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's host name; empty if the holder is not a pidlockfile session (sqlx, psql).
    pub host: String,
    /// The holder's PID on its host; 0 if the holder is not a pidlockfile session.
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
    pub(super) fn from_session(found: session::Found) -> Holder {
        let (pid, host) = parse_identity(&found.application_name).unwrap_or((0, String::new()));
        Holder {
            host,
            pid,
            backend_pid: found.backend_pid,
            application_name: found.application_name,
            client_addr: found.client_addr,
        }
    }

    /// A session that is not a pidlockfile's, for the errors' "locked by a session on ...":
    /// `backend 1234 ("psql" from 10.0.0.7)`.
    pub(super) fn foreign(&self) -> String {
        let mut text = format!("backend {}", self.backend_pid);
        match (self.application_name.is_empty(), &self.client_addr) {
            (false, Some(addr)) => text += &format!(" ({:?} from {addr})", self.application_name),
            (false, None) => text += &format!(" ({:?})", self.application_name),
            (true, Some(addr)) => text += &format!(" (from {addr})"),
            (true, None) => {}
        }
        text
    }

    pub(super) fn pid(&self) -> Option<u32> {
        (self.pid != 0).then_some(self.pid)
    }

    pub(super) fn host(&self) -> Option<String> {
        (!self.host.is_empty()).then(|| self.host.clone())
    }
}

impl fmt::Display for Holder {
    /// `pid 4242 on web-3`, or for a session that is not pidlockfile's, its application name and
    /// server process.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid() {
            Some(pid) => write!(f, "pid {pid} on {}", self.host),
            None => write!(f, "session on {}", self.foreign()),
        }
    }
}

/// `pidlock <pid>@<host>`, cut to the 63 bytes `application_name` keeps.
pub(super) fn identity() -> String {
    let mut id = format!("pidlock {}@{}", process::id(), host_name());
    let mut end = id.len().min(63);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id
}

pub(super) fn parse_identity(application_name: &str) -> Option<(u32, String)> {
    let (pid, host) = application_name.strip_prefix("pidlock ")?.split_once('@')?;
    Some((pid.parse().ok()?, host.to_owned()))
}

/// This machine's host name.
pub(super) fn host_name() -> String {
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
