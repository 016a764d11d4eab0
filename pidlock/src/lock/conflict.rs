//! The errors of an acquisition that met a holder, or failed: they name the path, and the
//! holder's PID where the file tells it.

use std::io;
use std::time::Duration;

use super::PidLockFile;
use crate::error::{LockError, UnlockError};
use crate::probe;

impl PidLockFile {
    /// The error for a lock this process already holds: it is not reentrant.
    pub(super) fn mine(&self) -> LockError {
        LockError::AlreadyLocked {
            path: self.path.clone(),
            pid: Some(std::process::id()),
            host: None,
            server: None,
        }
    }

    pub(super) fn failed(&self, source: io::Error) -> LockError {
        LockError::failed(&self.path, source)
    }

    pub(super) fn busy(&self, timeout: Duration) -> LockError {
        let path = self.path.clone();
        let pid = probe::holder_pid(&self.path);
        if timeout.is_zero() {
            LockError::AlreadyLocked {
                path,
                pid,
                host: None,
                server: None,
            }
        } else {
            LockError::LockTimeout {
                path,
                pid,
                timeout,
                host: None,
                server: None,
            }
        }
    }

    /// The error of a release by an instance that does not hold the lock in this process
    /// (`inherited`: it held a copy inherited across fork): someone else holds it, or nobody.
    pub(super) fn not_holding(&self, inherited: bool) -> UnlockError {
        if inherited || probe::lock_is_held(&self.path) {
            UnlockError::NotMyLock {
                path: self.path.clone(),
                pid: probe::holder_pid(&self.path),
                host: None,
                server: None,
            }
        } else {
            UnlockError::NotLocked {
                path: self.path.clone(),
                server: None,
            }
        }
    }
}
