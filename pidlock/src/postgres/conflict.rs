//! The errors of a fleet lock: they name the lock, the server and, where known, the holder.

use std::io;
use std::path::PathBuf;
use std::process;
use std::time::Duration;

use super::holder::host_name;
use super::{Holder, PgLock};
use crate::error::LockError;

impl PgLock {
    pub(super) fn path(&self) -> PathBuf {
        PathBuf::from(&self.name)
    }

    pub(super) fn failed(&self, reason: String) -> LockError {
        LockError::LockFailed {
            path: self.path(),
            source: io::Error::other(reason),
            server: Some(self.server()),
        }
    }

    /// `AlreadyLocked` for a zero timeout, else `LockTimeout`. `mine`: the holder is this
    /// process.
    pub(super) fn busy(
        &self,
        timeout: Option<Duration>,
        holder: Option<Holder>,
        mine: bool,
    ) -> LockError {
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
}
