//! How an acquisition waits: on the server (`pg_advisory_lock` with `lock_timeout`), on the
//! runtime (driven by the waiting thread where it can be, see `runtime.rs`), reconnecting when
//! the session drops while it waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::holder::identity;
use super::session::{LONGEST_LOCK_TIMEOUT, Refused, Session};
use super::{Holder, Prepared};
use crate::loss::LossSignal;

/// Everything one acquisition needs, owned, so that it can run on the runtime.
pub(super) struct Job {
    pub(super) prepared: Prepared,
    pub(super) key: i64,
    pub(super) timeout: Option<Duration>,
    pub(super) lost_after: Duration,
    /// Fired from the moment the lock is taken: the watch starts on the runtime, in the same
    /// turn as the lock query's answer.
    pub(super) signal: Arc<LossSignal>,
    /// Set when the caller no longer wants the lock.
    pub(super) cancelled: Option<Arc<AtomicBool>>,
    /// The session made (and the server identified) before the self-wait check.
    pub(super) first: Option<(Session, String)>,
}

/// A session of this lock's connection string, named after this process.
pub(super) async fn connect(prepared: &Prepared, lost_after: Duration) -> Result<Session, String> {
    Session::connect(
        &prepared.info,
        prepared.tls.as_ref(),
        &identity(),
        lost_after,
    )
    .await
}

/// A session, and which server it reached (see `Session::server_identity`).
pub(super) async fn connect_identified(
    prepared: &Prepared,
    lost_after: Duration,
) -> Result<(Session, String), String> {
    let session = connect(prepared, lost_after).await?;
    // In one round trip: the second is sent before the first's answer is read.
    let (server, ()) = tokio::join!(session.server_identity(), session.look_up_unlock());
    Ok((session, server?))
}

pub(super) enum Outcome {
    /// Held by someone else for the whole timeout.
    Busy(Option<Holder>),
    Failed(String),
}

impl Job {
    pub(super) async fn run(self) -> Result<(Session, String), Outcome> {
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

    pub(super) async fn attempts(mut self) -> Result<(Session, String), Outcome> {
        // A timeout beyond a century waits as if for a century: the clock and tokio's timer
        // add their own margins to a deadline, and must not overflow.
        let deadline = self
            .timeout
            .and_then(|t| Instant::now().checked_add(t.min(CENTURY)));
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
                // (A deadline is at most a century away: this cannot overflow.)
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
                // The server waits at most ~24.8 days at a time: a longer timeout waits on.
                Err(Refused::Busy) if limit.is_some_and(|l| l > LONGEST_LOCK_TIMEOUT) => {
                    self.first = Some((session, server));
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

/// The longest wait that is not for ever.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Returns once `flag` is set, looking ten times a second.
async fn until_set(flag: Arc<AtomicBool>) {
    while !flag.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
