//! `pidlock kill`: signal the holder of the lock, and only a confirmed holder. The old
//! `kill $(cat app.pid)` signals whatever process has that number now, which after a crash may
//! be any process at all.

use std::time::Instant;

use crate::backend;
use crate::cli::KillArgs;
use crate::holder::format_duration;
use crate::lock::{Status, Target};
use crate::report;
use crate::signal::signal_name;

/// The holder was signalled (and, with `--wait`, let go).
const DONE: u8 = 0;
/// Nothing held the lock.
const NOT_HELD: u8 = 1;
/// `--wait` ran out with the lock still held.
const STILL_HELD: u8 = 3;
/// Nothing was sent: the holder could not be confirmed, or another error.
const FAILED: u8 = 4;

/// Runs `pidlock kill` and returns its exit status.
pub fn kill(args: &KillArgs) -> u8 {
    let lock = match backend::open(&args.lock, false, &[]) {
        Ok(lock) => lock,
        Err(failure) => {
            report(&failure);
            return 2;
        }
    };
    let target = match lock.signal_target() {
        Ok(Target::Confirmed(target)) => target,
        Ok(Target::Nothing(status)) => {
            let left = match status {
                Status::Stale { pid: Some(pid), .. } => {
                    format!("; the stale file names pid {pid}, which was not signalled")
                }
                _ => String::new(),
            };
            eprintln!("pidlock: nothing holds the {}{left}", lock.location());
            return NOT_HELD;
        }
        Ok(Target::Unconfirmed { pid, why }) => {
            let pid = pid.map_or_else(String::new, |pid| format!(" pid {pid}"));
            eprintln!(
                "pidlock: not signalling{pid}: the {} is held, but {why}",
                lock.location()
            );
            return FAILED;
        }
        Err(failure) => {
            report(&failure);
            return FAILED;
        }
    };
    let name = signal_name(args.signal);
    let what = target
        .process
        .as_ref()
        .filter(|p| !p.argv.is_empty())
        .map_or_else(String::new, |p| format!(" ({})", p.command_line()));
    let sent = if args.group {
        target.signal_group(args.signal)
    } else {
        target.signal(args.signal)
    };
    let group = if args.group {
        "the process group of "
    } else {
        ""
    };
    if let Err(e) = sent {
        eprintln!(
            "pidlock: cannot send {name} to {group}pid {}{what}: {e}",
            target.pid
        );
        return FAILED;
    }
    eprintln!(
        "pidlock: sent {name} to {group}pid {}{what}, which holds the {}",
        target.pid,
        lock.location()
    );
    let Some(wait) = args.wait else {
        return DONE;
    };
    let started = Instant::now();
    // The holder's whole job, not only the process signalled: a shell's child may still hold
    // the lock. A waiter that takes the lock the moment the job lets go does not count.
    let gone = lock.let_go_within(&target, wait.0);
    match gone {
        Ok(true) => {
            eprintln!(
                "pidlock: the {} was let go after {}",
                lock.location(),
                format_duration(started.elapsed())
            );
            DONE
        }
        Ok(false) => {
            eprintln!(
                "pidlock: the {} is still held after {}",
                lock.location(),
                wait.describe()
            );
            STILL_HELD
        }
        Err(failure) => {
            report(&failure);
            FAILED
        }
    }
}
