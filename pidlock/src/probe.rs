//! Looking at a lock from the outside: is it held, and by whom. Nothing here may make a
//! concurrent `acquire` fail or wait for long.

use std::fs::{self, TryLockError};
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::{pidfile, step_aside, sys};

/// How long a reader that finds the lock held and the PID file not yet written keeps re-reading
/// it. A new holder writes its PID right after it locks, so this only spans a scheduling delay.
const HOLDER_STARTUP_GRACE: Duration = Duration::from_millis(5);

/// Whether some process holds the lock on the file at `path`.
///
/// On Linux the kernel's lock table answers without touching the lock, where it is complete
/// (see `sys::lock_table`); on macOS and FreeBSD, `fcntl(F_GETLK)` does. Elsewhere (containers,
/// overlay file systems, NFS, other platforms), a shared lock is tried and dropped at once: it
/// succeeds only when nobody holds the exclusive one. `acquire` rides out such a probe (see
/// `lock/wait.rs`), and asks readers to step aside while it does (see `step_aside.rs`), so
/// that however busy and however preempted they are, a free lock is taken and never looks held.
///
/// A file that cannot be opened to probe (another user's, with a narrow mode) counts as held:
/// "free" would be a guess, and a confident wrong "free" is the worse mistake.
pub(crate) fn lock_is_held(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    if let Some(held) = sys::lock_table(path, &meta) {
        return held;
    }
    match pidfile::open_for_reading(path) {
        Ok(file) => sys::held_elsewhere(&file).unwrap_or_else(|| {
            // An acquirer that is riding out shared locks may have asked us not to add ours.
            step_aside::for_acquirer(&file);
            matches!(sys::try_lock_shared(&file), Err(TryLockError::WouldBlock))
        }),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// The PID in the lock file, for messages and ownership checks. If the file does not hold a PID
/// yet while the lock is held, the holder is just starting: re-read briefly before giving up.
pub(crate) fn holder_pid(path: &Path) -> Option<u32> {
    let give_up = Instant::now() + HOLDER_STARTUP_GRACE;
    loop {
        if let Some(pid) = pidfile::read(path) {
            return Some(pid);
        }
        if Instant::now() >= give_up || !lock_is_held(path) {
            return None;
        }
        thread::sleep(Duration::from_micros(250));
    }
}
