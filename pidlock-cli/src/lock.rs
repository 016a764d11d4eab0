//! The lock a subcommand works on, whatever it is made of. Subcommands speak to [`Lock`]; each
//! backend is an implementation of it below this module (the PID file in `file_lock.rs`, the
//! PostgreSQL fleet lock in `pg_lock.rs`) that imports this module and nothing of the other
//! backend, so that no subcommand asks which backend it has. `backend.rs` picks one from the
//! arguments.

use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

use pidlockfile::{LockError, LossWatch, UnlockError};
use rustix::process::{Pid, Signal};

use crate::cli::LockArgs;
use crate::failure::Failure;
use crate::holder::{self, ProcessInfo};

/// A lock as the subcommands use it.
pub trait Lock: Send + Debug {
    /// What to call the job in messages: `backup` for `/run/backup.pid`.
    fn name(&self) -> String;

    /// Where the lock lives, for messages: `lock file /run/backup.pid`.
    fn location(&self) -> String;

    /// Where the lock lives, for scripts: `{"file": "/run/backup.pid"}`.
    fn json_id(&self) -> serde_json::Value;

    /// Takes the lock for this process, as [`pidlockfile::PidLockFile::acquire`] does.
    fn acquire(&mut self, timeout: Option<Duration>) -> Result<(), LockError>;

    /// Names `pid` as the holder in place of this process, which keeps the lock.
    fn set_pid(&mut self, pid: u32) -> Result<(), LockError>;

    /// A watch on the loss of the lock this process holds, for a lock that can be lost while
    /// held (a fleet lock, whose server session can end); `None` for one that cannot.
    fn loss_watch(&self) -> Option<LossWatch>;

    /// Lets go of the lock this process holds.
    fn release(&mut self) -> Result<(), UnlockError>;

    /// The descriptor that holds the lock, for CMD and its children to hold it by inheriting
    /// it (a PID file's locked descriptor, a fleet lock's session socket); `None` for one that
    /// lives in this process alone. For a fleet lock, asking hands the session on: from then on
    /// [`leave`](Self::leave) is the only way this process lets go.
    fn inheritable(&mut self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Once the job holds the lock it was passed on to: makes this process's copy unable to
    /// unlock or remove it, whatever happens to this process from here on (a panic's unwinding
    /// included), so that only [`leave`](Self::leave) tidies up, and only when nobody holds
    /// it. Nothing for a lock that cannot be shared.
    fn hand_over(&mut self) {}

    /// Lets go of this process's share of a lock it passed on to a job, leaving it to the
    /// job's processes that still hold it: never unlocks it, and tidies the file up only if
    /// nobody holds it any more. For a lock that cannot be shared, [`release`](Self::release).
    fn leave(&mut self) -> Result<(), UnlockError> {
        self.release()
    }

    /// Who holds the lock now, if anyone.
    fn status(&self) -> Result<Status, Failure>;

    /// Blocks until nobody holds the lock, without taking it, for up to `timeout` (`None`:
    /// without a limit). `Ok(false)` if the time ran out first.
    fn wait_until_free(&self, timeout: Option<Duration>) -> Result<bool, Failure>;

    /// The process to signal to stop the holder, if the system can confirm that it is the
    /// holder.
    fn signal_target(&self) -> Result<Target, Failure>;

    /// After `target` was signalled: waits up to `timeout` (`None`: without a limit) until the
    /// holder has let go of the lock, its whole job included. `Ok(false)` if the time ran out
    /// first. By default, until the process itself has exited (a fleet lock's session ends
    /// with its `pidlock run`).
    fn let_go_within(
        &self,
        target: &Confirmed,
        timeout: Option<Duration>,
    ) -> Result<bool, Failure> {
        match &target.pidfd {
            Some(pidfd) => any_exited_within(&[pidfd], timeout).map_err(|e| {
                Failure::Refused(format!("cannot wait for pid {} to exit: {e}", target.pid))
            }),
            None => self.wait_until_free(timeout),
        }
    }
}

/// Whether one of the processes `pidfds` refer to exits within `limit` (`None`: however long it
/// takes). A pidfd becomes readable when its process exits.
pub fn any_exited_within(pidfds: &[&OwnedFd], limit: Option<Duration>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = limit.and_then(|l| std::time::Instant::now().checked_add(l));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let timeout = left.map(|l| Timespec {
            tv_sec: i64::try_from(l.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(l.subsec_nanos()),
        });
        let mut fds: Vec<PollFd<'_>> = pidfds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The name of the fleet lock the arguments name: `--name`, or else CMD's program name
/// (`backup` for `/usr/local/bin/backup`). `None` if there is neither.
pub fn fleet_name(args: &LockArgs, command: &[OsString]) -> Option<String> {
    if let Some(name) = &args.name {
        return Some(name.clone());
    }
    let program = Path::new(command.first()?);
    let name = program.file_name()?.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

/// What [`Lock::status`] found.
#[derive(Debug)]
pub enum Status {
    /// A live process holds the lock.
    Held(Holder),
    /// Nobody holds the lock, but a PID file from an earlier holder is left.
    Stale {
        /// The PID the file names, if it names one.
        pid: Option<u32>,
        /// The process that has that PID now: an unrelated one, since it does not hold the
        /// lock.
        now: Option<ProcessInfo>,
    },
    /// Nobody holds the lock, and nothing is left behind.
    Free,
}

/// What is known of the holder of a lock.
#[derive(Debug)]
pub struct Holder {
    /// The PID the lock names (for `pidlock run`, the command's own).
    pub pid: Option<u32>,
    /// The process the kernel says took the lock (for `pidlock run`, the wrapper), if it says.
    pub locker: Option<u32>,
    /// The machine the holder runs on, when known.
    pub host: Option<String>,
    /// The holder process, if this process may look at it.
    pub process: Option<ProcessInfo>,
    /// When the lock was taken, about.
    pub since: Option<SystemTime>,
    /// For a fleet lock, the server session that holds it.
    pub session: Option<Session>,
    /// For a fleet lock held by a `pidlock run` on this host, its command's PID (`process`
    /// then describes the command, since the session names the wrapper).
    pub command: Option<u32>,
    /// The PID a PID file names when that process is not the holder (a stale PID, say, in a
    /// kept file that a `flock(1)` script holds): shown, never taken for the holder.
    pub file_pid: Option<u32>,
    /// The processes seen to hold a file lock through a descriptor of their own (the wrapper
    /// and its job, or a `flock(1)` and its command); `process` describes the first when the
    /// file names none of them.
    pub holders: Vec<u32>,
    /// For a fleet lock, the PID its session names when that is a `pidlock run` on this host
    /// that no longer runs (or whose number another process has now): its job outlived it and
    /// holds the session. Never taken for the holder's `pid`.
    pub wrapper_gone: Option<u32>,
}

/// The server session that holds a fleet lock.
#[derive(Debug)]
pub struct Session {
    /// The server process that serves it (`pg_terminate_backend` takes it).
    pub backend_pid: u32,
    /// Its `application_name`: `pidlock 4242@web-3` for a pidlock holder.
    pub application_name: String,
}

impl Holder {
    /// `pid 4242, since 10:31:07: backup.sh --full`, with what is known; for a fleet lock
    /// `pid 4242 on web-3, ...`, since its holder may run on any host.
    pub fn describe(&self) -> String {
        let mut text = match (self.pid, &self.session) {
            (Some(pid), Some(_)) => format!(
                "pid {pid} on {}",
                self.host.as_deref().unwrap_or("an unknown host")
            ),
            (Some(pid), None) => format!("pid {pid}"),
            (None, Some(session)) => format!(
                "a session that is not pidlock's: server process {}, application_name {:?}",
                session.backend_pid, session.application_name
            ),
            (None, None) => "pid unknown".to_owned(),
        };
        if let Some(process) = &self.process {
            if let Some(started) = process.started {
                text.push_str(&format!(", since {}", holder::format_time(started)));
            }
            if !process.argv.is_empty() {
                text.push_str(&format!(": {}", process.command_line()));
            }
        }
        text
    }
}

/// Whom [`Lock::signal_target`] found to signal.
#[derive(Debug)]
pub enum Target {
    /// Nobody holds the lock: what is there instead.
    Nothing(Status),
    /// The holder, confirmed by the system.
    Confirmed(Confirmed),
    /// The lock is held, but the system cannot confirm by which process.
    Unconfirmed {
        /// The PID the lock names, which is not signalled.
        pid: Option<u32>,
        /// Why it cannot be confirmed.
        why: String,
    },
}

/// A process confirmed to hold a lock (or to be the command of the `pidlock run` that does).
#[derive(Debug)]
pub struct Confirmed {
    pub pid: u32,
    pub process: Option<ProcessInfo>,
    /// The process itself rather than its number, where the kernel offers that (`pidfd`), so
    /// that a signal can never reach a process that got the same number later.
    pub pidfd: Option<OwnedFd>,
    /// For a file lock, the process that took it, as the kernel's lock table names it (the
    /// `pidlock run` wrapper, or `flock(1)`): every process that holds the lock it took is part
    /// of the holder's job.
    pub locker: Option<u32>,
    /// The holder (a `pidlock run`'s CMD) has exited, and processes of the process group it
    /// led hold the lock it passed on to them: only that group can be signalled (`pid` is
    /// then the group's number, which the kernel does not hand out again while it has members).
    pub leader_gone: bool,
}

impl Confirmed {
    /// Signals the process group the holder leads: the job `pidlock run` started (its CMD
    /// leads it). Refused for a holder that leads no group, and for this process's own group.
    pub fn signal_group(&self, signal: Signal) -> io::Result<()> {
        let leads = self.leader_gone || holder::process_group(self.pid) == Some(self.pid);
        let mine = holder::own_process_group();
        if !leads || mine == Some(self.pid) {
            return Err(io::Error::other(format!(
                "pid {} leads no process group of its own (not the CMD of a `pidlock run`)",
                self.pid
            )));
        }
        let group = i32::try_from(self.pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // The pinned leader still running means its number, and so the group's, is still its.
        if let Some(pidfd) = &self.pidfd
            && any_exited_within(&[pidfd], Some(Duration::ZERO))?
        {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        rustix::process::kill_process_group(group, signal)?;
        Ok(())
    }

    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.leader_gone {
            return Err(io::Error::other(format!(
                "pid {} has exited, and processes of its job hold the lock: signal them all \
                 with --group",
                self.pid
            )));
        }
        match &self.pidfd {
            Some(pidfd) => rustix::process::pidfd_send_signal(pidfd, signal)?,
            None => {
                let pid = i32::try_from(self.pid)
                    .ok()
                    .and_then(Pid::from_raw)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                rustix::process::kill_process(pid, signal)?;
            }
        }
        Ok(())
    }
}
