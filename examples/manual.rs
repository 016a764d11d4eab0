//! The `PidLockFile` API without the macro: acquire with a timeout, look at the lock, and
//! release it, handling every error.
//!
//! ```text
//! cargo run --example manual
//! ```
#![warn(clippy::pedantic)]

use std::time::Duration;

use pidlockfile::{LockError, PidLockFile, UnlockError};

fn main() -> Result<(), pidlockfile::Error> {
    let path =
        std::env::temp_dir().join(format!("pidlock-example-manual-{}.pid", std::process::id()));
    let mut lock = PidLockFile::new(&path);

    match lock.acquire(Some(Duration::from_secs(5))) {
        Ok(()) => println!("locked {}", lock.path().display()),
        Err(LockError::LockTimeout { pid, .. }) => {
            eprintln!("gave up: still held by {pid:?}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    println!(
        "is_locked: {}, i_am_locking: {}, read_pid: {:?}",
        lock.is_locked(),
        lock.i_am_locking(),
        lock.read_pid()
    );

    // A second handle on the same file, as another process would have.
    let mut other = PidLockFile::new(&path);
    match other.acquire(Some(Duration::ZERO)) {
        Err(e @ LockError::AlreadyLocked { .. }) => println!("second handle: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    if let Err(e @ UnlockError::NotMyLock { .. }) = other.release() {
        println!("second handle cannot release: {e}");
    }

    lock.release()?;
    println!("released; the file is gone: {}", !path.exists());

    // The guard form: released when it goes out of scope.
    {
        let guard = PidLockFile::lock(&path, None)?;
        println!("guard holds {}", guard.path().display());
    }
    println!(
        "guard dropped; locked: {}",
        PidLockFile::new(&path).is_locked()
    );
    Ok(())
}
