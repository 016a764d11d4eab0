//! The command line: one `Args` struct per subcommand, with the examples and exit codes that
//! `--help` shows.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::signal::parse_signal;

/// Run a program under a PID-file lock or a PostgreSQL fleet-wide lock, see who holds it, stop
/// the holder safely.
#[derive(Debug, Parser)]
#[command(name = "pidlock", version, after_help = OVERVIEW)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const OVERVIEW: &str = "\
Examples:
  pidlock run --file /run/backup.pid -- backup.sh --full
  pidlock status --file /run/backup.pid
  pidlock kill --file /run/backup.pid --wait 30
  pidlock wait --file /run/backup.pid --timeout 60
  pidlock run --postgres postgres://db.internal/app --name backup -- backup.sh --full

With --file, the lock is an exclusive flock(2) on the PID file, held by the command and every
process it starts (as with flock(1)) until the last of them exits; the file names the command's
own process. With --postgres, it is a PostgreSQL
session advisory lock named --name, one holder across every host that uses the same database.
Run `pidlock help <subcommand>` for its exit codes.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take the lock, run CMD while holding it, and let go when CMD exits.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Say who holds the lock, if anyone (LSB status exit codes).
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Signal the process that holds the lock, and only that process.
    #[command(after_help = KILL_HELP)]
    Kill(KillArgs),
    /// Block until nobody holds the lock, without taking it.
    #[command(after_help = WAIT_HELP)]
    Wait(WaitArgs),
    /// Print shell completions for pidlock.
    #[command(after_help = "Example:\n  pidlock completions bash > /etc/bash_completion.d/pidlock")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

const RUN_HELP: &str = "\
Examples:
  pidlock run --file /run/backup.pid -- backup.sh --full
  pidlock run --file /run/backup.pid --wait 600 -- backup.sh      # wait up to 10 minutes
  pidlock run --file /run/backup.pid --keep-file -- backup.sh     # shared with flock(1) scripts
  pidlock run --postgres postgres://db.internal/app -- backup.sh  # one in the fleet; lock `backup.sh`

Exit status: CMD's own, or 128 + the signal that killed it; 1 (or --conflict-exit-code) if the
lock is held by someone else; 1 if CMD is missing, cannot be started, or the lock cannot be
used; 2 for a usage error (no CMD, an unknown flag, a bad number); 75 if a --postgres lock was
lost while CMD ran.

CMD and every process it starts inherit the locked descriptor (with --postgres, the server
session's socket): the lock is free only once pidlock and all of them have exited. If pidlock
itself is killed, the job runs on and keeps the lock until it ends (a --postgres job then has
nobody to notice a lost lock); `kill -KILL -PID` (PID from the file, or CMD's) ends the whole job
and frees the lock at once. With --no-inherit pidlock alone holds the lock, and CMD is killed
(SIGKILL) when pidlock dies; CMD's own children are not.

As with flock(1), a process of the job that closes its inherited descriptors (a daemon, a
closefrom(), sudo with its default closefrom of every descriptor from 3 up) no longer holds the
lock. The descriptor's number in the job is unspecified.

A background process that outlives CMD keeps the lock too, after pidlock has exited: the PID
file, still naming CMD, is then left stale (not removed or emptied: nobody is left to do it),
and the next run takes it over.

Typed at a terminal, CMD stays in pidlock's process group, the shell's job (as with flock(1),
so `pidlock run -- CMD | less` works): the terminal's Ctrl-C and Ctrl-\\ reach CMD directly, and
pidlock does not pass them on again. Elsewhere CMD runs in a process group of its own (its PID
is the group's). SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to pidlock are
passed on to CMD, once.

A --postgres lock can be lost while CMD runs (its session was terminated, the server restarted
or failed over, the network cut it off): pidlock then says so, sends the job (CMD's process
group; CMD alone with --no-inherit or at a terminal) SIGTERM, SIGKILL to whatever of it still
runs --kill-grace seconds later (even once CMD itself has ended), and exits 75 (EX_TEMPFAIL),
whatever CMD's status, once the group is empty. A process that left the group (setsid) is not
reached.";

const STATUS_HELP: &str = "\
Examples:
  pidlock status --file /run/backup.pid
  pidlock status --file /run/backup.pid --json | jq .pid
  pidlock status --postgres postgres://db.internal/app --name backup

Exit status (as LSB init scripts' status): 0 held, 1 free but a stale PID file is left (never
for --postgres, whose locks end with their session), 3 free, 4 unknown (an error, which is also
printed).";

const KILL_HELP: &str = "\
Examples:
  pidlock kill --file /run/backup.pid
  pidlock kill --file /run/backup.pid --signal INT --wait 30
  pidlock kill --file /run/backup.pid --group --signal KILL      # CMD and all its children
  pidlock kill --postgres postgres://db.internal/app --name backup --wait 30

The PID in the file is signalled only when the kernel confirms that it holds the lock (its own
lock, or the lock of the `pidlock run` that started it): a stale file's PID, which may belong to
an unrelated process by now, never gets a signal. With --group, the signal goes to the process
group that the holder leads (a `pidlock run`'s CMD leads its job's group, unless it was typed at
a terminal), so its children get it too. --wait returns once the holder's whole job has let go of the lock (a shell's children that
still hold it included), whoever takes it next.

With --postgres, only the command of a `pidlock run` of that lock on this host is signalled,
found through the wrapper's PID that the session records: a holder on another host, or one that
is not a `pidlock run`, cannot be tied to the session from here and gets nothing (exit 4).

Exit status: 0 the holder was signalled (and, with --wait, let go of the lock); 1 nothing held
the lock; 3 the lock was still held when --wait ran out; 4 the holder could not be confirmed or
signalled (nothing was sent), or another error.";

const WAIT_HELP: &str = "\
Examples:
  pidlock wait --file /run/backup.pid
  pidlock wait --file /run/backup.pid --timeout 60 && deploy.sh
  pidlock wait --postgres postgres://db.internal/app --name backup --timeout 60

With --postgres, the wait takes the lock for an instant when it is let go, and releases it at
once: a `pidlock run` without --wait that tries in that instant is refused.

Exit status: 0 nobody holds the lock; 1 --timeout ran out first; 4 an error.";

/// Which lock: a PID file, or (in builds with PostgreSQL support) a fleet-wide lock.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The PID file that is the lock.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "postgres",
        conflicts_with = "postgres"
    )]
    pub file: Option<PathBuf>,
    /// A PostgreSQL advisory lock shared by a fleet: the connection string (a
    /// `postgres://` URL or `key=value` pairs; PGHOST, PGUSER, PGPASSWORD... fill in the rest).
    #[arg(long, value_name = "CONNINFO")]
    pub postgres: Option<String>,
    /// The fleet lock's name (with --postgres); `run` defaults it to CMD's program name.
    // `requires` alone lets `--file` through: clap waives a requirement that a present argument
    // conflicts with.
    #[arg(
        long,
        value_name = "NAME",
        requires = "postgres",
        conflicts_with = "file"
    )]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// How long to wait for a held lock: seconds, or `forever`. Without it, fail at once.
    #[arg(long, value_name = "SECS|forever", value_parser = parse_wait)]
    pub wait: Option<Wait>,
    /// The exit status when the lock is held by someone else (as `flock -E`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub conflict_exit_code: u8,
    /// Print nothing of pidlock's own but errors: no conflict or waiting line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Empty the PID file on release instead of removing it, for sharing it with flock(1).
    /// A background process that outlives CMD keeps the lock after pidlock exits: the file then
    /// still names CMD, and is left so (stale, `status` exit 1) when that process ends, until the
    /// next run takes it over.
    #[arg(long, conflicts_with = "postgres")]
    pub keep_file: bool,
    /// Hold the lock in pidlock alone, not in CMD and its children (as `flock -o`). For jobs
    /// that leave a daemon behind on purpose. What it gives up: CMD is killed when pidlock
    /// dies, but CMD's children, and a set-user-ID CMD (sudo), then run on without the lock.
    #[arg(long)]
    pub no_inherit: bool,
    /// With --postgres: how long CMD has to stop after the SIGTERM that a lost lock brings,
    /// before it gets SIGKILL [default: 10]
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_grace,
        requires = "postgres",
        conflicts_with = "file"
    )]
    pub kill_grace: Option<Grace>,
    /// The command to run, and its arguments.
    // No `allow_hyphen_values`: a word that looks like a flag before CMD is a misspelt flag of
    // pidlock's (a usage error, exit 2), not a program; a CMD that starts with `-` comes after
    // `--`. Once CMD has started, everything that follows is its own (`trailing_var_arg`).
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// The signal to send: a name (TERM, SIGTERM) or a number.
    #[arg(long, short, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub signal: rustix::process::Signal,
    /// Signal the holder's whole job: the process group that a `pidlock run`'s CMD leads
    /// (its children included), not CMD alone.
    #[arg(long, short)]
    pub group: bool,
    /// Then wait until the holder's job has let go of the lock: seconds, or `forever`.
    #[arg(long, value_name = "SECS|forever", value_parser = parse_wait)]
    pub wait: Option<Wait>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// Give up after this long: seconds, or `forever` (the default).
    #[arg(long, value_name = "SECS|forever", value_parser = parse_wait)]
    pub timeout: Option<Wait>,
}

/// How long to wait: a limit, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait(pub Option<Duration>);

impl Wait {
    /// The limit, for messages: "30s", "forever".
    pub fn describe(self) -> String {
        match self.0 {
            Some(limit) => crate::holder::format_duration(limit),
            None => "forever".to_owned(),
        }
    }
}

/// How long CMD may take to stop after SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grace(pub Duration);

impl Default for Grace {
    fn default() -> Self {
        Grace(Duration::from_secs(10))
    }
}

/// Parses a number of seconds (fractions allowed).
fn parse_grace(text: &str) -> Result<Grace, String> {
    match parse_wait(text) {
        Ok(Wait(Some(grace))) => Ok(Grace(grace)),
        _ => Err("expected a number of seconds from 0 up".to_owned()),
    }
}

/// Parses `forever` or a number of seconds (fractions allowed).
fn parse_wait(text: &str) -> Result<Wait, String> {
    if text == "forever" {
        return Ok(Wait(None));
    }
    let secs: f64 = text
        .parse()
        .map_err(|_| "expected a number of seconds or `forever`".to_owned())?;
    Duration::try_from_secs_f64(secs)
        .map(|d| Wait(Some(d)))
        .map_err(|_| "expected a number of seconds from 0 up, or `forever`".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn waits_are_seconds_or_forever() {
        assert_eq!(parse_wait("forever"), Ok(Wait(None)));
        assert_eq!(
            parse_wait("1.5"),
            Ok(Wait(Some(Duration::from_millis(1500))))
        );
        assert_eq!(parse_wait("0"), Ok(Wait(Some(Duration::ZERO))));
        for bad in ["-1", "soon", "", "NaN", "inf"] {
            assert!(parse_wait(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_grace("2.5"), Ok(Grace(Duration::from_millis(2500))));
        assert!(parse_grace("forever").is_err());
    }
}
