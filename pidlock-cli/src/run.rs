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
//!
//! A fleet lock (`--postgres`) can also be lost while CMD runs, when its server session ends.
//! CMD must then stop, since another host's copy may start at once: it gets SIGTERM, SIGKILL
//! after `--kill-grace`, and `pidlock run` exits with [`LOST`], so that a scheduler can tell
//! "lost the lock" from CMD's own failures.

use std::ffi::OsString;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pidlock::{LockError, LossWatch, UnlockError};
use rustix::process::Signal;

use crate::cli::RunArgs;
use crate::failure::Failure;
use crate::holder::{format_duration, pin};
use crate::lock::{self, Confirmed, Lock, Status};
use crate::progress::Progress;
use crate::{child, report};

/// The exit status when a fleet lock was lost while CMD ran: `EX_TEMPFAIL` of sysexits.h, "try
/// again later", which is what a scheduler should do. CMD's own status is not passed on then,
/// since CMD was stopped (or may have been cut short) by pidlock.
pub const LOST: u8 = 75;

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
    if args.command.is_empty() {
        return Err(Failure::NoCommand);
    }
    let mut lock = lock::open(&args.lock, args.keep_file, &args.command)?;
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
    let stopper = lock.loss_watch().map(|watch| {
        stop_on_loss(
            watch,
            &cmd,
            &args.command,
            args.kill_grace.unwrap_or_default().0,
        )
    });
    let ended = child::supervise(&mut cmd, &mut signals);
    let stopped = match stopper {
        Some((reaped, stopper)) => {
            let _ = reaped.send(());
            let released = lock.release();
            // The release ends the stopper's wait when the lock was not lost.
            let stopped = stopper.join().unwrap_or(false);
            match released {
                // Said already, as the reason CMD was stopped.
                Err(UnlockError::Lost { .. }) if stopped => {}
                Err(e) => eprintln!("pidlock: warning: {e}"),
                Ok(()) => {}
            }
            stopped
        }
        None => {
            if let Err(e) = lock.release() {
                eprintln!("pidlock: warning: {e}");
            }
            false
        }
    };
    match ended {
        Ok(_) if stopped => Ok(LOST),
        Ok(status) => Ok(child::exit_code(status)),
        Err(e) => Err(Failure::Refused(format!("lost track of the command: {e}"))),
    }
}

/// Watches for the loss of the lock while `cmd` runs, on a thread of its own: at a loss it
/// says so, sends `cmd` SIGTERM, and SIGKILL if it has not ended `grace` later. The caller
/// sends on the returned channel once `cmd` is reaped, and then releases the lock, which ends
/// the watch; the thread returns whether it stopped `cmd`.
fn stop_on_loss(
    watch: LossWatch,
    cmd: &Child,
    argv: &[OsString],
    grace: Duration,
) -> (mpsc::Sender<()>, JoinHandle<bool>) {
    let (reaped, ended) = mpsc::channel::<()>();
    // The process itself where the kernel offers that, so that a signal sent as CMD is being
    // reaped cannot reach a process that got its PID since.
    let target = Confirmed {
        pid: cmd.id(),
        process: None,
        pidfd: pin(cmd.id()).ok().flatten(),
    };
    let name = argv.first().map_or_else(String::new, |program| {
        Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .into_owned()
    });
    let stopper = thread::spawn(move || {
        let Some(lost) = watch.wait(None) else {
            return false;
        };
        // Lost after CMD ended: CMD ran its course under the lock, as far as anyone can tell.
        if ended.try_recv().is_ok() {
            return false;
        }
        // Stop CMD first: nothing, not even a failing write to stderr, may come before that.
        let _ = target.signal(Signal::TERM);
        eprintln!(
            "pidlock: lost the lock {} on {} ({}); stopping {name} (pid {})",
            lost.name(),
            lost.server(),
            lost.reason(),
            target.pid
        );
        if let Err(mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(grace) {
            eprintln!(
                "pidlock: {name} (pid {}) still runs {} after SIGTERM; sending SIGKILL",
                target.pid,
                format_duration(grace)
            );
            let _ = target.signal(Signal::KILL);
        }
        true
    });
    (reaped, stopper)
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
    let watcher = lock::open(&args.lock, args.keep_file, &args.command)?;
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
