//! The one small tokio runtime that drives this process's PostgreSQL connections, and the
//! bridge that lets blocking code (and code already inside someone else's runtime) wait for it.
//!
//! A connection must be driven all the time, not only while a call is running, so that a
//! session closed by the server is noticed at once (see `session.rs`). One worker thread does
//! that for every lock of the process.

use std::future::Future;
use std::io;
use std::process;
use std::sync::{Arc, mpsc};

use arc_swap::ArcSwapOption;
use tokio::runtime::{Builder, Runtime};

/// The runtime, and the process that built it: its threads do not exist in a forked child, which
/// builds one of its own. Lock-free, so that a child forked while another thread was building
/// one finds no lock held.
static RUNTIME: ArcSwapOption<(u32, Runtime)> = ArcSwapOption::const_empty();

fn runtime() -> io::Result<Arc<(u32, Runtime)>> {
    let me = process::id();
    let mut ours: Option<Arc<(u32, Runtime)>> = None;
    loop {
        let current = RUNTIME.load_full();
        if let Some(current) = &current
            && current.0 == me
        {
            return Ok(Arc::clone(current));
        }
        let built = match &ours {
            Some(built) => Arc::clone(built),
            None => {
                let runtime = Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("pidlock-postgres")
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(|e| {
                        io::Error::other(format!(
                            "cannot start the PostgreSQL client's thread: {e}"
                        ))
                    })?;
                let built = Arc::new((me, runtime));
                ours = Some(Arc::clone(&built));
                built
            }
        };
        let previous = RUNTIME.compare_and_swap(&current, Some(Arc::clone(&built)));
        let swapped = match (&*previous, &current) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if swapped {
            // Never dropped: its tasks drive the sessions of held locks for as long as the
            // process lives, and a parent's runtime, inherited across fork, has no threads here
            // to shut down (dropping it would wait for them forever).
            std::mem::forget(Arc::clone(&built));
            if let Some(parents) = current {
                std::mem::forget(parents);
            }
            return Ok(built);
        }
        // Another thread stored one first: look again.
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
    runtime()?.1.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("the PostgreSQL client's thread stopped"))
}
