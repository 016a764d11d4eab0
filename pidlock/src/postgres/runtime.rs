//! The one small tokio runtime that drives this process's PostgreSQL connections, and the
//! bridge that lets blocking code (and code already inside someone else's runtime) wait for it.
//!
//! A connection must be driven all the time, not only while a call is running, so that a
//! session closed by the server is noticed at once (see `session.rs`). One worker thread does
//! that for every lock of the process.

use std::future::Future;
use std::io;
use std::process;
use std::sync::{OnceLock, mpsc};

use tokio::runtime::{Builder, Runtime};

/// The runtime, and the process that built it: its threads do not exist in a forked child.
static RUNTIME: OnceLock<Result<(Runtime, u32), String>> = OnceLock::new();

fn runtime() -> io::Result<&'static Runtime> {
    let built = RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pidlock-postgres")
            .enable_io()
            .enable_time()
            .build()
            .map(|runtime| (runtime, process::id()))
            .map_err(|e| format!("cannot start the PostgreSQL client's thread: {e}"))
    });
    match built {
        Ok((runtime, pid)) if *pid == process::id() => Ok(runtime),
        Ok(_) => Err(io::Error::other(
            "a process forked from the one that used a PgLock cannot use PgLock: its connection \
             thread was not forked with it",
        )),
        Err(message) => Err(io::Error::other(message.clone())),
    }
}

/// Runs `future` on the runtime and blocks the calling thread until it is done. Works from any
/// thread, including a worker of another async runtime (which it blocks, like any blocking
/// call).
pub(crate) fn block_on<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("the PostgreSQL client's thread stopped"))
}
