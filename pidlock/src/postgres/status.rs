//! Looking at a fleet lock without taking it: is it held, by whom, by this process; its fencing
//! token and its loss; and the records that refuse a caller that would wait for itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Holder, PgLock, runtime, session, token, wait};
use crate::error::LockError;
use crate::loss::LossWatch;
use crate::owner::{self, Caller};

impl PgLock {
    /// Whether anyone holds the lock, as [`PidLockFile::is_locked`](crate::PidLockFile::is_locked)
    /// answers it: asks the server (`pg_locks`), except when this instance holds it and has
    /// not lost it. When the server cannot be asked (unreachable, a bad connection string),
    /// the answer is `true`: "locked" is the answer that never lets a second copy start, as a
    /// lock file this process may not open counts as held. [`try_is_locked`](Self::try_is_locked)
    /// tells the error apart.
    ///
    /// ```no_run
    /// let lock = pidlockfile::PgLock::new("postgres://db.internal/app", "nightly-report");
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
    /// let lock = pidlockfile::PgLock::new("postgres://db.internal/app", "nightly-report");
    /// println!("locked: {}", lock.try_is_locked()?);
    /// # Ok::<(), pidlockfile::LockError>(())
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
    /// held by a session that is not a pidlockfile's (psql, sqlx), or the server cannot be asked.
    ///
    /// ```no_run
    /// let lock = pidlockfile::PgLock::new("postgres://db.internal/app", "nightly-report");
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
            let session = wait::connect(&prepared, lost_after).await?;
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
}
