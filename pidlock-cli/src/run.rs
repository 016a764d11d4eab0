//! `pidlock run`: take the lock, run CMD as a job, let go when the job is done.
//!
//! # The job holds the lock
//!
//! For a PID file, CMD inherits the locked descriptor, and every process it starts inherits it
//! from CMD, as with `flock(1)`: the kernel frees the lock only when the wrapper *and* every
//! process of the job that still has the descriptor have exited. So:
//! - a killed wrapper (SIGKILL, the OOM killer, a closed terminal) never lets a second copy in
//!   while any part of the job runs: its background work (`tar &`, a compiler) still holds the
//!   lock, and so does a set-user-ID CMD (`sudo`), which a parent-death signal could not reach;
//! - a job killed as a whole (`kill -KILL -<CMD's pid>`, a cgroup kill) frees the lock as soon
//!   as its last process is gone: nothing else holds it, so nothing can wedge it.
//!
//! What that costs: a daemon that the job leaves behind on purpose keeps the lock for as long
//! as it runs. `--no-inherit` (`flock -o`) is for such jobs: the wrapper alone holds the lock,
//! CMD is killed (SIGKILL) when the wrapper dies, but CMD's own children, and a set-user-ID
//! CMD, can then run on without the lock.
//!
//! The wrapper must never unlock a lock it shares with the job: the unlock would free it for
//! everyone holding the descriptor, under the feet of the job's remaining processes. Nor may it
//! unlink the file while they hold it, since a newcomer would then create and lock a new file
//! beside them (pitfall 4). So at the end it only closes its own descriptor, and then tidies up
//! the way any newcomer would: it takes the lock afresh without waiting and releases it (which
//! removes or empties the file) only if that succeeds, that is, only when nobody holds it any
//! more. Otherwise the file stays, naming CMD, until the job's last process lets go; an
//! unlocked file left behind is stale and harmless (pitfall 1).
//!
//! The PID file names CMD, so that `kill $(cat app.pid)` reaches the job. The PID is known only
//! once CMD runs, so for the moment between its start and the rewrite the file names the
//! wrapper, which passes the usual stop signals on; `pidlock kill` confirms either as the
//! holder. How CMD is started and signalled (its own process group, the terminal) is in
//! `child.rs`.
//!
//! # The fleet lock
//!
//! A fleet lock (`--postgres`) is a server session's advisory lock. The server frees it when the
//! session ends, and ends the session when its connection closes, so the job holds it the same
//! way: CMD, and every process it starts, inherits the session's socket
//! (`PgLock::share_session`), and the connection closes only when the last process that has the
//! socket open is gone. So, as for a PID file, a killed wrapper never lets a second copy in while
//! any part of the job runs, a set-user-ID CMD holds the lock itself, and a job killed as a whole
//! frees the lock as soon as the server reads the end of the connection (a few milliseconds).
//! At its end the wrapper closes its own copy and never unlocks (`pg_advisory_unlock` would free
//! the lock under the feet of the job's remaining processes), nor shuts the connection down
//! (`shutdown(2)` would end it for every process sharing it, and so would the protocol's
//! `Terminate`).
//!
//! Why the socket, and not a sentinel process that outlives the wrapper, stops the job and only
//! then closes the session: a sentinel is one more process that can be killed (by the same
//! `kill -KILL` of a process group, the same OOM killer), and its death would free the lock
//! under a running job, the very failure this is about; it would also have to track the job's
//! processes, which can leave its process group or change their user. An inherited socket needs
//! no process at all: no part of the job can run without holding it, and nothing can wedge it,
//! since the kernel closes it when the last holder exits, however it exits.
//!
//! Nobody has to drive the connection once the wrapper is gone. The job never reads or writes the
//! socket (it could not speak TLS anyway): the server's keepalive probes are answered by the
//! client's kernel, the server sends nothing unasked, and the pings that notice a silent server
//! are the wrapper's alone. A wrapper killed in the middle of a statement leaves at worst
//! a half-sent message, which the server waits for, or an unread answer in the socket's buffer
//! (the last close then resets the connection instead of closing it); either way the session
//! lives, holding the lock, until the job's last process closes the socket. The keepalive and
//! `tcp_user_timeout` set on the socket make the client's kernel close a connection to a server
//! that stopped answering.
//!
//! What the job gives up when its wrapper is gone: loss detection. While the wrapper lives it
//! watches the session, and a lost lock (the session ended by `pg_terminate_backend`, a server
//! restart or failover; the server silent for `lost_after`) stops the job, CMD's process group
//! (CMD alone with `--no-inherit` or at a terminal, see [`stop_on_loss`]): SIGTERM, SIGKILL
//! after `--kill-grace` to whatever of the group still runs, CMD or not, and `pidlock run` exits
//! with [`LOST`] once the group is empty, so that a scheduler can tell "lost the lock" from
//! CMD's own failures. A wrapper killed during the grace sends no SIGKILL: a CMD that ignores
//! SIGTERM then runs on, holding the session (no parent-death signal ties a job that holds the
//! lock to its wrapper). Once the wrapper is gone, nobody notices a loss, so nobody
//! stops the job: another host may take the lock (after a restart, a failover, or the server's
//! keepalives ending a session cut off for twice `lost_after`) while the job runs on. And `status`
//! and `kill`, which find the job through the wrapper the session names, no longer can; `wait`
//! and `kill --wait` wait for the lock itself, so they still see the job.
//!
//! `--no-inherit` keeps the session in the wrapper alone, as before: CMD is killed (SIGKILL) when
//! the wrapper dies, and CMD's children, or a set-user-ID CMD, can then run on without the lock.

use std::ffi::OsString;
use std::path::Path;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pidlockfile::{LockError, LossWatch, UnlockError};
use rustix::process::{Pid, Signal};

use crate::cli::RunArgs;
use crate::failure::Failure;
use crate::holder::{format_duration, pin};
use crate::lock::{Confirmed, Lock, Status};
use crate::progress::Progress;
use crate::{backend, child, report};

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
                Failure::Usage(_) | Failure::NoCommand => 2,
                _ => 1,
            }
        }
    }
}

fn run_under_lock(args: &RunArgs) -> Result<u8, Failure> {
    if args.command.is_empty() {
        return Err(Failure::NoCommand);
    }
    let mut lock = backend::open(&args.lock, args.keep_file, &args.command)?;
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
    // With --no-inherit the session is never shared (asking for it would hand it on), so the
    // wrapper's release unlocks as usual.
    let shared = !args.no_inherit && lock.inheritable().is_some();
    let tie = match shared.then(|| lock.inheritable()).flatten() {
        Some(fd) => child::Tie::Inherit(fd),
        None => child::Tie::DieWithWrapper,
    };
    let mut job = match child::spawn(&args.command, tie) {
        Ok(job) => job,
        Err(failure) => {
            // Nothing holds the shared lock but this process: closing it lets go.
            let _ = if shared { lock.leave() } else { lock.release() };
            return Err(failure);
        }
    };
    if let Err(e) = lock.set_pid(job.id()) {
        // Not fatal: the file then names this wrapper, which passes signals on to CMD.
        eprintln!("pidlock: warning: {e}");
    }
    if shared {
        // From here on the job holds the lock: nothing in this process may unlock or remove it.
        lock.hand_over();
    }
    let stopper = lock.loss_watch().map(|watch| {
        stop_on_loss(
            watch,
            job.id(),
            shared && job.own_group(),
            &args.command,
            args.kill_grace.unwrap_or_default().0,
        )
    });
    let ended = child::supervise(&mut job, &mut signals);
    let stopped = match stopper {
        Some((reaped, stopper)) => {
            let _ = reaped.send(());
            // As below: a lock the job shares is left to the job's processes that hold it.
            let released = if shared { lock.leave() } else { lock.release() };
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
            // A lock the job shares is left to the processes of the job that still hold it:
            // unlocking it would free it under their feet.
            let let_go = if shared { lock.leave() } else { lock.release() };
            if let Err(e) = let_go {
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
/// the watch; the thread returns whether it stopped the job, and the wrapper exits only after
/// it returned.
///
/// When the job shares the lock and `cmd` leads a process group of its own (`group`), every
/// process of that group may hold the lock, so the signals go to the whole group, whether or
/// not `cmd` itself still runs: a child that outlives the SIGTERM (it ignores it, or `cmd` died
/// of it at once) gets the SIGKILL too, and the thread returns only once the group is empty
/// (bounded by [`KILLED_WITHIN`] after the SIGKILL), since the wrapper's exit with [`LOST`]
/// tells a scheduler that the next copy may start. Signalling the group by its number is safe
/// after `cmd` is reaped: the kernel does not reuse a number while it is some process's
/// group, and the signalling stops at the first "no such group".
///
/// What the signals cannot reach: a process that left the group (`setsid`, `setpgid`, a
/// daemon's double fork) and still has the session's socket open keeps the lock beyond the
/// wrapper's exit. On a terminal (`cmd` in the wrapper's own group, which also holds the
/// wrapper and the shell's other commands of the pipeline) only `cmd` is signalled: the
/// wrapper must not signal its own group, so `cmd`'s children are left to `cmd`.
fn stop_on_loss(
    watch: LossWatch,
    cmd: u32,
    group: bool,
    argv: &[OsString],
    grace: Duration,
) -> (mpsc::Sender<()>, JoinHandle<bool>) {
    let (reaped, ended) = mpsc::channel::<()>();
    // The process itself where the kernel offers that, so that a signal sent as CMD is being
    // reaped cannot reach a process that got its PID since.
    let target = Confirmed {
        pid: cmd,
        process: None,
        pidfd: pin(cmd).ok().flatten(),
        locker: None,
        leader_gone: false,
    };
    let group = group
        .then(|| i32::try_from(cmd).ok().and_then(Pid::from_raw))
        .flatten();
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
        // Stop the job first: nothing, not even a failing write to stderr, may come before that.
        let stop = |signal| match group {
            Some(group) => {
                let _ = rustix::process::kill_process_group(group, signal);
            }
            None => {
                let _ = target.signal(signal);
            }
        };
        stop(Signal::TERM);
        eprintln!(
            "pidlock: lost the lock {} on {} ({}); stopping {name} (pid {})",
            lost.name(),
            lost.server(),
            lost.reason(),
            target.pid
        );
        let gone = match group {
            Some(group) => group_gone(group, Instant::now() + grace),
            None => !matches!(
                ended.recv_timeout(grace),
                Err(mpsc::RecvTimeoutError::Timeout)
            ),
        };
        if !gone {
            // CMD itself, or only processes of its group once CMD has been reaped.
            let whom = if ended.try_recv().is_ok() {
                format!("processes of {name}'s group (pid {}) still run", target.pid)
            } else {
                format!("{name} (pid {}) still runs", target.pid)
            };
            eprintln!(
                "pidlock: {whom} {} after SIGTERM; sending SIGKILL",
                format_duration(grace)
            );
            stop(Signal::KILL);
            if let Some(group) = group
                && !group_gone(group, Instant::now() + KILLED_WITHIN)
            {
                eprintln!(
                    "pidlock: processes of {name}'s group (pid {}) still run {} after SIGKILL",
                    target.pid,
                    format_duration(KILLED_WITHIN)
                );
            }
        }
        true
    });
    (reaped, stopper)
}

/// How long the wrapper waits, after the SIGKILL of a lost lock, for the job's process group to
/// be empty: a process in an uninterruptible sleep (a hung NFS read) dies only when it wakes.
const KILLED_WITHIN: Duration = Duration::from_secs(10);

/// Waits until process group `group` has no process left, or `deadline`; whether it is empty.
/// The kernel tells of no group's end, so this looks every few milliseconds.
fn group_gone(group: Pid, deadline: Instant) -> bool {
    loop {
        if rustix::process::test_kill_process_group(group).is_err() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
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
    let watcher = backend::open(&args.lock, args.keep_file, &args.command)?;
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
