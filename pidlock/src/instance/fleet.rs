//! `#[single_instance(postgres = ...)]`: the fleet lock's side of what the generated code calls.
//!
//! The generated code calls these only for `postgres = ...`, and a lock file's path never
//! refers to them, so a binary that only locks files does not link the fleet lock's client.

use std::path::PathBuf;
use std::process;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::Waker;
use std::time::Duration;

use super::future::{Acquire, FleetJob};
use super::{FirstTry, Fleet, FleetGuard, Guard, Options, limit, on_lost};
use crate::owner::Caller;
use crate::{Error, LockError, Lost, PgLock, PgLockGuard};

/// The fleet lock's hooks for the async path (see `future.rs`).
static JOB: FleetJob = FleetJob {
    first_try,
    acquire: acquire_for_task,
};

/// Takes the fleet lock as the options say, telling the user on stderr when it has to wait.
/// Blocks the calling thread: for a plain `fn`.
pub fn acquire_fleet(options: &Options) -> Result<Guard, Error> {
    let lock = acquire_cancellable(options, None, &Caller::here(None))?;
    // The generated code keeps the guard in the frame that runs the body, on this thread.
    lock.pin_to_thread();
    Ok(guard(lock))
}

/// The helper thread's acquisition for an async task (see `future.rs`): `caller` is the task.
fn acquire_for_task(
    options: &Options,
    cancelled: Option<Arc<AtomicBool>>,
    caller: &Caller,
) -> Result<Guard, Error> {
    acquire_cancellable(options, cancelled, caller).map(guard)
}

/// [`acquire_fleet`] as a future that never blocks the executor (see `future.rs`).
pub fn acquire_fleet_async(options: &Options) -> Acquire<'_> {
    Acquire::with_fleet(options, &JOB)
}

impl FleetGuard for PgLockGuard {
    fn hand_to_task(&self, task: &Waker) {
        PgLock::hand_to_task(self, task);
    }
}

fn fleet(options: &Options) -> Result<&Fleet, Error> {
    options.fleet.as_ref().ok_or_else(|| {
        Error::Lock(LockError::failed(
            std::path::Path::new(""),
            std::io::Error::other("no fleet lock in the options"),
        ))
    })
}

fn lock_for(options: &Options, fleet: &Fleet) -> PgLock {
    let name = fleet.name.clone().unwrap_or_else(|| options.program());
    PgLock::new(fleet.conninfo.clone(), name)
}

/// Nothing on the executor: even one try is network I/O, and so is the check that the calling
/// task does not hold this lock already (which server a connection string reaches is known
/// only once connected). The helper thread does both, for the task (see `acquire_cancellable`).
fn first_try(options: &Options, _task: Option<&Waker>) -> FirstTry {
    if let Err(e) = fleet(options) {
        return FirstTry::Done(Err(e));
    }
    FirstTry::Wait {
        path: PathBuf::new(),
        timeout: options.timeout,
    }
}

/// One try, the waiting notice, then the wait, which stops when `cancelled` is set; failing
/// closed on a loss unless `on_lost` says otherwise. `caller` is who waits: the calling
/// thread, or the async task whose helper thread this is; a wait for a lock it holds already
/// is refused at once, once the session has told which server it reached.
fn acquire_cancellable(
    options: &Options,
    cancelled: Option<Arc<AtomicBool>>,
    caller: &Caller,
) -> Result<PgLock, Error> {
    let fleet = fleet(options)?;
    let mut lock = lock_for(options, fleet);
    let on_lost = match &fleet.on_lost {
        Some(handler) => Arc::clone(handler),
        None => {
            let code = fleet.exit_code;
            on_lost(move |lost: &Lost| {
                eprintln!("error: {lost}; exiting");
                process::exit(i32::from(code))
            })
        }
    };
    lock.on_lost_shared(on_lost);
    let wait = options.timeout;
    if wait != Some(Duration::ZERO) {
        match lock.acquire_unless(Some(Duration::ZERO), cancelled.clone(), caller) {
            Ok(()) => return Ok(lock),
            // Held by the caller itself: waiting would be waiting for itself.
            Err(LockError::AlreadyLocked { .. }) if lock.is_held_by(caller) => {
                return Err(lock.held_by_caller_error().into());
            }
            Err(LockError::AlreadyLocked { pid, host, .. }) => {
                if !options.quiet {
                    let holder = match (pid, host) {
                        (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
                        (Some(pid), None) => format!("pid {pid}"),
                        // Not a pidlock: its session, as pg_stat_activity shows it.
                        (None, Some(session)) => format!("a session on {session}"),
                        _ => "another session".to_owned(),
                    };
                    eprintln!(
                        "Blocking waiting for {} ({holder}) to release lock {} on {} ({})",
                        options.program(),
                        lock.name(),
                        lock.server(),
                        limit(wait)
                    );
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    lock.acquire_unless(wait, cancelled, caller)?;
    Ok(lock)
}

fn guard(lock: PgLock) -> Guard {
    Guard::Fleet(Box::new(PgLockGuard::new(lock)))
}
