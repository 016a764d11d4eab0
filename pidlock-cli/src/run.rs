//! `pidlock run`: take the lock, run CMD, let go when CMD exits.
//!
//! The wrapper holds the lock (its descriptor is close-on-exec, so CMD and anything CMD leaves
//! running in the background never hold it) and names CMD's PID in the file, so that the lock
//! lasts exactly as long as CMD and `kill $(cat app.pid)` reaches CMD. CMD dies with the
//! wrapper (`PR_SET_PDEATHSIG`), so it never runs without the lock either.
//!
//! The PID is known only once CMD runs, so for the moment between its start and the rewrite the
//! file names the wrapper, which passes the usual stop signals on; `pidlock kill` confirms
//! either as the holder. A crash at any point leaves a file that names a dead process and no
//! lock: stale, as after any crash.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pidlock::LockError;

use crate::cli::RunArgs;
use crate::failure::Failure;
use crate::holder::format_duration;
use crate::lock::{self, Lock, Status};
use crate::progress::Progress;
use crate::{child, report};

/// Runs `pidlock run` and returns its exit status.
pub fn run(args: &RunArgs) -> u8 {
    match run_under_lock(args) {
        Ok(code) => code,
        Err(failure) => {
            report(&failure);
            match failure {
                Failure::Usage(_) => 2,
                _ => 1,
            }
        }
    }
}

fn run_under_lock(args: &RunArgs) -> Result<u8, Failure> {
    let mut lock = lock::open(&args.lock, args.keep_file)?;
    if args.command.is_empty() {
        return Err(Failure::NoCommand);
    }
    let mut taken = lock.acquire(Some(Duration::ZERO));
    if let (Err(LockError::AlreadyLocked { .. }), Some(wait)) = (&taken, args.wait) {
        (lock, taken) = wait_for_turn(lock, args, wait.0)?;
    }
    match taken {
        Ok(()) => {}
        Err(busy @ (LockError::AlreadyLocked { .. } | LockError::LockTimeout { .. })) => {
            if !args.quiet {
                eprintln!("pidlock: {}", conflict_line(&*lock, &busy));
            }
            return Ok(args.conflict_exit_code);
        }
        Err(failed) => return Err(failed.into()),
    }

    let mut signals = match child::catch_signals() {
        Ok(signals) => signals,
        Err(e) => {
            let _ = lock.release();
            let why = format!("cannot catch the signals to pass on to the command: {e}");
            return Err(Failure::Refused(why));
        }
    };
    let mut cmd = match child::spawn(&args.command) {
        Ok(cmd) => cmd,
        Err(failure) => {
            let _ = lock.release();
            return Err(failure);
        }
    };
    if let Err(e) = lock.set_pid(cmd.id()) {
        // Not fatal: the file then names this wrapper, which passes signals on to CMD.
        eprintln!("pidlock: warning: {e}");
    }
    let ended = child::supervise(&mut cmd, &mut signals);
    if let Err(e) = lock.release() {
        eprintln!("pidlock: warning: {e}");
    }
    match ended {
        Ok(status) => Ok(child::exit_code(status)),
        Err(e) => Err(Failure::Refused(format!("lost track of the command: {e}"))),
    }
}

/// The lock back from the thread that waited for it, and whether it was taken.
type Turn = (Box<dyn Lock>, Result<(), LockError>);

/// Waits up to `limit` (`None`: as long as it takes) for the lock on a thread of its own,
/// while this thread keeps the waiting line up to date. Hands the lock back with the outcome.
///
/// The command must be started from this (the main) thread, not the waiting one: see
/// [`child::spawn`].
fn wait_for_turn(
    mut lock: Box<dyn Lock>,
    args: &RunArgs,
    limit: Option<Duration>,
) -> Result<Turn, Failure> {
    let watcher = lock::open(&args.lock, args.keep_file)?;
    let name = watcher.name();
    let mut progress = Progress::new(args.quiet, limit);
    let (done, finished) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let taken = lock.acquire(limit);
        let _ = done.send(());
        (lock, taken)
    });
    loop {
        progress.update(&name, &holder_now(&*watcher));
        match finished.recv_timeout(progress.tick()) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    progress.finish();
    waiter
        .join()
        .map_err(|_| Failure::Refused("the thread waiting for the lock failed".to_owned()))
}

/// The holder as the waiting line shows it.
fn holder_now(lock: &dyn Lock) -> String {
    match lock.status() {
        Ok(Status::Held(holder)) => holder.describe(),
        Ok(_) => "changing hands".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// `backup is already running (pid 4242, since 10:31:07: backup.sh --full; lock file
/// /run/backup.pid)`.
fn conflict_line(lock: &dyn Lock, busy: &LockError) -> String {
    let holder = match lock.status() {
        Ok(Status::Held(holder)) => holder.describe(),
        // Let go since the attempt: the PID from the attempt is all there is.
        _ => busy
            .pid()
            .map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}")),
    };
    let state = match busy {
        LockError::LockTimeout { timeout, .. } => {
            format!("is still running after {}", format_duration(*timeout))
        }
        _ => "is already running".to_owned(),
    };
    format!("{} {state} ({holder}; {})", lock.name(), lock.location())
}
