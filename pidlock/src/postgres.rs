//! `PgLock`: one holder per fleet, on a PostgreSQL session advisory lock.
//!
//! The server drops a session's advisory locks when the session ends, however it ends, as the
//! kernel drops a `flock` when its process dies: a crashed holder never wedges the lock. Unlike
//! a file lock, a session can end while its holder runs, so a held `PgLock` watches its
//! connection and reports the loss (see [`PgLock::is_lost`] and [`LossWatch`]).

mod conflict;
mod connection;
mod conninfo;
mod guard;
mod holder;
mod key;
mod options;
mod pgpass;
mod registry;
mod runtime;
mod service;
mod session;
mod share;
mod socket;
mod status;
#[cfg(test)]
mod tests;
mod ticker;
mod tls;
mod token;
mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres_rustls::MakeRustlsConnect;

use self::conninfo::ConnInfo;
pub use self::guard::PgLockGuard;
pub use self::holder::Holder;
pub use self::options::DEFAULT_LOST_AFTER;
use self::registry::registry_device;
use self::session::Session;
use self::share::still_open_here;
use self::token::Token;
use self::wait::{Job, Outcome, connect_identified};
use crate::error::{LockError, UnlockError};
use crate::loss::{self, LossSignal, OnLost};
use crate::owner::{self, Caller, Process};

#[doc = include_str!("postgres/pg_lock.md")]
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

impl PgLock {
    #[doc = include_str!("postgres/acquire.md")]
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
        // A wait runs on this thread, so that the server's grant wakes it directly; a single
        // try is one round trip, sent soonest from the runtime's own thread.
        let outcome = if timeout == Some(Duration::ZERO) {
            runtime::block_on(job.run())
        } else {
            runtime::wait_here(job.run())
        }
        .map_err(|e| self.failed(e.to_string()))?;
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

    #[doc = include_str!("postgres/release.md")]
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
                let unlocked = session.unlock(key, session.answer_within());
                drop(session);
                match unlocked {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(UnlockError::Lost {
                        path: self.path(),
                        server,
                        reason: "the session no longer held it".to_owned(),
                    }),
                    Err(reason) => Err(UnlockError::Lost {
                        path: self.path(),
                        server,
                        reason,
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
        let limit = self
            .lost_after
            .min(Duration::from_secs(5))
            .min(session.answer_within());
        let _ = session.unlock(key, limit);
    }
}
