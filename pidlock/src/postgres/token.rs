//! The fencing token of one acquisition, which may arrive just after the lock.
//!
//! A waiter returns from `acquire` as soon as the server grants the lock; the token
//! (`pg_current_xact_id()`, read by the next statement on the same session, so after the grant)
//! follows about one round trip later, off the handoff's path. Reading it waits for it.

use std::sync::{Condvar, Mutex, PoisonError};

/// Set once: the token, or 0 if it could not be read (the session then counts as lost).
#[derive(Debug, Default)]
pub(crate) struct Token {
    value: Mutex<Option<u64>>,
    set: Condvar,
}

impl Token {
    pub(crate) fn ready(value: u64) -> Token {
        Token {
            value: Mutex::new(Some(value)),
            set: Condvar::new(),
        }
    }

    pub(crate) fn set(&self, value: u64) {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(value);
            self.set.notify_all();
        }
    }

    /// The token, waiting for it if it is on its way; the reader of the token is bounded by the
    /// session's `lost_after`, after which it is set to 0.
    pub(crate) fn get(&self) -> u64 {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(value) = *slot {
                return value;
            }
            slot = self.set.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
