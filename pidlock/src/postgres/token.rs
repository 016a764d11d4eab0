//! The fencing token of one acquisition: made durable on the server when it is first asked for.
//!
//! A transaction id alone is not enough: `pg_current_xact_id()` of a transaction that writes
//! nothing leaves its commit record in the WAL buffers, and a crash before the WAL writer
//! flushes them hands the same id out again (pitfall 18). The token is therefore the id of a
//! transaction that writes one WAL record (a transactional `pg_logical_emit_message`, which
//! needs no table and no privilege) and commits with `synchronous_commit = on`: the commit
//! returns only once its record is flushed, so crash recovery resumes past the id, and every
//! later transaction, in this server life or after a restart, gets a greater one.
//!
//! The cost (one WAL flush) is paid by the first call to `fencing_token`, not by `acquire`:
//! programs that never read the token never pay it. The transaction runs on the holder's own
//! session, so it can only succeed while this holder still holds the lock: the id lies inside
//! the holder's turn, after every id of an earlier turn and before every id of a later one.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

/// One statement string, so one round trip: the `SET LOCAL` and the write share the implicit
/// transaction of a multi-statement query, which commits (and flushes) at its end.
const DURABLE_ID: &str = "SET LOCAL synchronous_commit = on; \
     SELECT pg_current_xact_id()::text, pg_logical_emit_message(true, 'pidlockfile', '')";

/// The token of one acquisition: not asked for yet, or its value (0 if it could not be made).
#[derive(Debug, Default)]
pub(crate) struct Token {
    value: Mutex<Option<u64>>,
}

impl Token {
    /// The token, made durable on `client`'s session on the first call; later calls return
    /// the same value. `make` is the bridge that runs the query (and reports a failure).
    /// Concurrent callers wait for the first one.
    pub(crate) fn get_or_make(&self, make: impl FnOnce() -> Option<u64>) -> u64 {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        *slot.get_or_insert_with(|| make().unwrap_or(0))
    }

    /// The token if it was made; 0 if it never was.
    pub(crate) fn made(&self) -> u64 {
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(0)
    }
}

/// A transaction id of `client`'s session, durable before it is returned (see the module
/// documentation), within `limit`.
/// `pending` counts it while it runs (and after, if it never finishes: see
/// `session::counted`), so that a loss cancels a commit that waits on.
pub(crate) async fn durable_id(
    client: Arc<Client>,
    pending: Arc<AtomicUsize>,
    limit: Duration,
) -> Result<u64, String> {
    let query = super::session::counted(&pending, client.simple_query(DURABLE_ID));
    let messages = tokio::time::timeout(limit, query)
        .await
        .map_err(|_| format!("no answer from the server within {limit:?}"))?
        .map_err(|e| super::session::describe(&e))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|t| t.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| "the server returned no transaction id".to_owned())
}
