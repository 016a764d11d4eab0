//! The fleet-lock backend: [`pidlockfile::PgLock`], a PostgreSQL session advisory lock shared by
//! every host that connects to the same database.
//!
//! The server knows the holder only as its session's `application_name`, `pidlock PID@HOST`,
//! which is fixed when the session connects. For `pidlock run` that PID is the wrapper's (CMD
//! is started after the lock is taken, and the session cannot be renamed through `PgLock`), so
//! [`Lock::set_pid`] records nothing: on the holder's own host, `status` and `kill` find CMD as
//! the one child of that wrapper, after checking that the wrapper is a `pidlock run` of this
//! very lock.
//!
//! The job shares the session (see `run.rs`), so it can hold the lock after its wrapper is gone:
//! the session then still names the dead wrapper, which ties no process to it any more, so
//! `kill` refuses to signal anyone (a signal to the job's process group by hand, `kill -TERM
//! -<CMD's pid>`, reaches it), while `wait` and `kill --wait` wait for the lock itself.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use clap::Parser;
use pidlockfile::{LockError, LossWatch, PgLock, UnlockError};

use crate::cli::{Cli, Command};
use crate::failure::Failure;
use crate::holder::{self, ProcessInfo, pin};
use crate::lock::{self, Confirmed, Holder, Lock, Session, Status, Target};

pub struct FleetLock {
    lock: PgLock,
    /// The held session's socket, once handed on to the job (see `run.rs`).
    socket: Option<OwnedFd>,
    /// Kept to open a second session for `wait`; never shown, as it may hold a password.
    conninfo: String,
}

impl fmt::Debug for FleetLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // PgLock's own Debug leaves the connection string out.
        f.debug_struct("FleetLock")
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl FleetLock {
    pub fn new(conninfo: &str, name: String) -> Self {
        FleetLock {
            lock: PgLock::new(conninfo, name),
            socket: None,
            conninfo: conninfo.to_owned(),
        }
    }

    fn lock_name(&self) -> &str {
        self.lock.name()
    }

    /// Who holds the lock, as the server records it, with what this host can add: the
    /// holder's process and, for a `pidlock run`, its command.
    fn holder(&self) -> Result<Option<(pidlockfile::Holder, Holder)>, Failure> {
        let Some(found) = self.lock.holder()? else {
            return Ok(None);
        };
        let mut pid = (found.pid != 0).then_some(found.pid);
        let here = pid.filter(|_| on_this_host(&found));
        let wrapper = here.and_then(ProcessInfo::read);
        // A PID on this host is named only while it is that `pidlock run`: once the wrapper
        // has exited, its job (a child that kept the session) holds the lock, and the number
        // may belong to any process by now.
        let wrapper_gone = here.filter(|_| {
            !wrapper
                .as_ref()
                .is_some_and(|info| is_run_of(info, self.lock_name()))
        });
        if wrapper_gone.is_some() {
            pid = None;
        }
        let wrapper = wrapper.filter(|_| wrapper_gone.is_none());
        let command = here.and_then(|pid| self.command_of(pid, wrapper.as_ref()));
        let process = match command {
            Some(command) => ProcessInfo::read(command),
            None => wrapper,
        };
        let holder = Holder {
            pid,
            locker: None,
            host: (!found.host.is_empty()).then(|| found.host.clone()),
            process,
            // The server does not say when a session took an advisory lock.
            since: None,
            session: Some(Session {
                backend_pid: found.backend_pid,
                application_name: found.application_name.clone(),
            }),
            command,
            file_pid: None,
            holders: Vec::new(),
            wrapper_gone,
        };
        Ok(Some((found, holder)))
    }

    /// The command of the `pidlock run` of this lock that is process `wrapper` on this host;
    /// `None` if `wrapper` is anything else, or runs no command (yet, or any more).
    fn command_of(&self, wrapper: u32, info: Option<&ProcessInfo>) -> Option<u32> {
        if !is_run_of(info?, self.lock_name()) {
            return None;
        }
        match holder::children(wrapper).as_slice() {
            // `pidlock run` starts exactly one child, CMD.
            [command] => Some(*command),
            _ => None,
        }
    }
}

impl Lock for FleetLock {
    fn name(&self) -> String {
        self.lock_name().to_owned()
    }

    fn location(&self) -> String {
        format!("lock {} on {}", self.lock_name(), self.lock.server())
    }

    fn json_id(&self) -> serde_json::Value {
        serde_json::json!({ "postgres": self.lock.server(), "name": self.lock_name() })
    }

    fn acquire(&mut self, timeout: Option<Duration>) -> Result<(), LockError> {
        self.lock.acquire(timeout)
    }

    /// Records nothing: the session's `application_name` (the wrapper's PID) is fixed when it
    /// connects. `status` and `kill` find the command through the wrapper instead.
    fn set_pid(&mut self, _pid: u32) -> Result<(), LockError> {
        Ok(())
    }

    fn loss_watch(&self) -> Option<LossWatch> {
        self.lock.loss_watch()
    }

    fn release(&mut self) -> Result<(), UnlockError> {
        self.socket = None;
        self.lock.release()
    }

    /// The session's socket: the server keeps the session, and the lock, while any process of
    /// the job has it open (see `run.rs`). `None` if it cannot be handed on (the lock was lost
    /// already): the job then runs tied to the wrapper, as with `--no-inherit`.
    fn inheritable(&mut self) -> Option<BorrowedFd<'_>> {
        if self.socket.is_none() {
            self.socket = self.lock.share_session().ok();
        }
        self.socket.as_ref().map(AsFd::as_fd)
    }

    /// Closes the wrapper's copies of the session's socket, never unlocking: the session ends,
    /// and the server frees the lock, when the job's last process has closed its copy.
    fn leave(&mut self) -> Result<(), UnlockError> {
        self.socket = None;
        self.lock.release()
    }

    fn status(&self) -> Result<Status, Failure> {
        // A session's locks end with the session: nothing is ever left behind to be stale.
        Ok(match self.holder()? {
            Some((_, holder)) => Status::Held(holder),
            None => Status::Free,
        })
    }

    /// Takes the lock in a session of its own, waiting as the server lets it (woken at the
    /// release, no polling), and lets go at once. Unlike the file lock's shared-lock wait, a
    /// `pidlock run` without `--wait` that tries in that instant is refused: the fleet lock
    /// has no "shared" mode that would let a waiter look without taking part.
    fn wait_until_free(&self, timeout: Option<Duration>) -> Result<bool, Failure> {
        let mut probe = PgLock::new(self.conninfo.clone(), self.lock_name());
        match probe.acquire(timeout) {
            Ok(()) => {
                // It was free at that instant, which is the answer; if the release fails, the
                // probe's session closing (on drop) frees the lock anyway.
                let _ = probe.release();
                Ok(true)
            }
            Err(LockError::AlreadyLocked { .. } | LockError::LockTimeout { .. }) => Ok(false),
            Err(failed) => Err(failed.into()),
        }
    }

    /// Until the lock itself is free, whoever held it: the job's processes, which share the
    /// session's socket, keep it after CMD (or its wrapper) has exited.
    fn let_go_within(
        &self,
        _target: &Confirmed,
        timeout: Option<Duration>,
    ) -> Result<bool, Failure> {
        self.wait_until_free(timeout)
    }

    /// Only a holder on this host, and only the command of a `pidlock run` of this lock whose
    /// session still holds it: a PID from another host, or from a program that is not a
    /// `pidlock run`, cannot be tied to the session from here, and is never signalled.
    fn signal_target(&self) -> Result<Target, Failure> {
        let Some((found, _)) = self.holder()? else {
            return Ok(Target::Nothing(Status::Free));
        };
        if found.pid == 0 {
            return Ok(Target::Unconfirmed {
                pid: None,
                why: format!(
                    "by a session that is not pidlock's (server process {}, application_name \
                     {:?}), which no process here can be tied to",
                    found.backend_pid, found.application_name
                ),
            });
        }
        let pid = Some(found.pid);
        if !on_this_host(&found) {
            return Ok(Target::Unconfirmed {
                pid,
                why: format!(
                    "by pid {} on {}, and pidlock signals only processes on this host ({})",
                    found.pid,
                    found.host,
                    holder::host_name()
                ),
            });
        }
        // Pin the wrapper before checking it, so that the checks and the final look at the
        // session are about one process even if its PID is reused meanwhile.
        let Ok(_wrapper) = pin(found.pid) else {
            return Ok(Target::Unconfirmed {
                pid,
                why: format!(
                    "by the session of pid {} on this host, which is not running here: a \
                     `pidlock run` that has exited (however it ended) while its job's \
                     processes run on holding the session (signal the job's process group, \
                     CMD's pid, by hand), or a process of another PID namespace with the same \
                     host name",
                    found.pid
                ),
            });
        };
        let info = ProcessInfo::read(found.pid);
        if !info
            .as_ref()
            .is_some_and(|info| is_run_of(info, self.lock_name()))
        {
            return Ok(Target::Unconfirmed {
                pid,
                why: format!(
                    "by pid {}, which is not a `pidlock run` of this lock, so nothing ties that \
                     process to the session",
                    found.pid
                ),
            });
        }
        let Some(command) = self.command_of(found.pid, info.as_ref()) else {
            return Ok(Target::Unconfirmed {
                pid,
                why: format!("by `pidlock run` pid {}, which runs no command", found.pid),
            });
        };
        let Ok(pidfd) = pin(command) else {
            return Ok(Target::Unconfirmed {
                pid: Some(command),
                why: "its command has just ended".to_owned(),
            });
        };
        let process = ProcessInfo::read(command);
        if process.as_ref().and_then(|p| p.ppid) != Some(found.pid) {
            return Ok(Target::Unconfirmed {
                pid: Some(command),
                why: "its command has just ended".to_owned(),
            });
        }
        // With both processes pinned, the same session still holding the lock ties them to
        // it.
        match self.lock.holder()? {
            Some(now)
                if now.backend_pid == found.backend_pid
                    && now.application_name == found.application_name => {}
            Some(_) => {
                return Ok(Target::Unconfirmed {
                    pid,
                    why: "it changed hands while pidlock checked the holder".to_owned(),
                });
            }
            None => return Ok(Target::Nothing(Status::Free)),
        }
        Ok(Target::Confirmed(Confirmed {
            pid: command,
            process,
            pidfd,
            locker: None,
            leader_gone: false,
        }))
    }
}

/// Whether the session's holder runs on this host. `application_name` keeps 63 bytes, so a
/// long host name may be cut short in it.
fn on_this_host(found: &pidlockfile::Holder) -> bool {
    let here = holder::host_name();
    !found.host.is_empty()
        && (found.host == here
            || (found.application_name.len() >= 63 && here.starts_with(&found.host)))
}

/// Whether `info` is the process of a `pidlock run --postgres` of the fleet lock `name`, as its
/// own command line says.
fn is_run_of(info: &ProcessInfo, name: &str) -> bool {
    let Some(program) = info.argv.first() else {
        return false;
    };
    if std::path::Path::new(program).file_name() != Some("pidlock".as_ref()) {
        return false;
    }
    let argv: Vec<OsString> = info.argv.iter().map(OsString::from).collect();
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(run),
        }) => {
            run.lock.postgres.is_some()
                && lock::fleet_name(&run.lock, &run.command).as_deref() == Some(name)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(argv: &[&str]) -> ProcessInfo {
        ProcessInfo {
            argv: argv.iter().map(|&arg| arg.to_owned()).collect(),
            started: None,
            ppid: None,
        }
    }

    #[test]
    fn a_run_of_the_lock_is_recognised_by_its_command_line() {
        let named = ["/usr/bin/pidlock", "run", "--postgres", "host=db", "--name"];
        let named = [&named[..], &["backup", "--", "backup.sh"]].concat();
        assert!(is_run_of(&process(&named), "backup"));
        assert!(!is_run_of(&process(&named), "other"));
        let defaulted = [
            "pidlock",
            "run",
            "--postgres",
            "host=db",
            "--",
            "/bin/backup",
        ];
        assert!(is_run_of(&process(&defaulted), "backup"));
        let file = [
            "pidlock",
            "run",
            "--file",
            "/run/backup.pid",
            "--",
            "backup",
        ];
        assert!(!is_run_of(&process(&file), "backup"));
        let status = [
            "pidlock",
            "status",
            "--postgres",
            "host=db",
            "--name",
            "backup",
        ];
        assert!(!is_run_of(&process(&status), "backup"));
        let renamed = ["backup", "run", "--postgres", "host=db", "--", "backup"];
        assert!(!is_run_of(&process(&renamed), "backup"));
        assert!(!is_run_of(&process(&[]), "backup"));
    }
}
