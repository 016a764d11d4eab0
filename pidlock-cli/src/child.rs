//! Starting CMD as a job of its own, passing on the signals meant for it exactly once, and
//! turning its end into an exit status as shells do.
//!
//! # The job and its process group
//!
//! Where CMD runs depends on whether the wrapper has the terminal's foreground.
//!
//! **Not in a terminal's foreground** (cron, systemd, a script, a background job): CMD runs in a
//! process group of its own, the job's group: its PGID is CMD's PID, the PID that the PID file
//! names. That is what makes every signal reach CMD exactly once:
//! - a signal sent to the wrapper alone, or to the wrapper's group (`kill -INT -<wrapper's
//!   pgid>`, a supervisor stopping its child's group), reaches the wrapper only, which passes it
//!   on to CMD: once;
//! - a signal sent to the job's group (`kill -INT -<CMD's pid>`, or `pidlock kill --group`)
//!   reaches CMD and its children, not the wrapper: once.
//!
//! **In a terminal's foreground** (typed at a shell prompt): CMD stays in the wrapper's group, as
//! with `flock(1)`. The shell made that group the foreground for the whole pipeline
//! (`pidlock run -- CMD | less`): moving CMD to a group of its own and giving it the foreground
//! would take the terminal from the rest of the pipeline, and the pager would stop (SIGTTIN) as
//! soon as it reads a key. In the shell's group, the terminal's Ctrl-C, Ctrl-\ and hang-up reach
//! CMD directly, and the wrapper does not pass on what the kernel sent (`SI_KERNEL`: the
//! terminal's signals to its foreground group), so CMD gets each once; a signal someone sends to
//! the wrapper (`SI_USER`) is passed on, once. Ctrl-Z stops the wrapper and CMD together (the
//! wrapper does not catch SIGTSTP), and `fg` continues them together, as for any job. What
//! this gives up: a `kill -INT -<pgid>` of that group by hand reaches CMD twice, and
//! `pidlock kill --group` refuses, since CMD leads no group of its own.
//!
//! # Passing the lock on
//!
//! CMD inherits the locked descriptor through a duplicate without close-on-exec
//! (`rustix::io::dup`), made just before the spawn and closed just after: no code runs between
//! `fork` and `exec` for it. The only such code (`pre_exec`, SAFETY-commented) is the
//! parent-death signal of `--no-inherit`.
//!
//! `kill -KILL -<CMD's pid>` ends the whole job at once; the wrapper sees CMD gone and exits,
//! and with it the lock's last holder. SIGKILL of the wrapper's group (or the wrapper alone)
//! leaves the job running, holding its lock (see `run.rs`): safe, as with `flock(1)`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithRawSiginfo;

use crate::failure::Failure;
use crate::holder;

/// The caught signals, each with how it was sent (`si_code`), to tell the terminal's own
/// signals from those sent to the wrapper.
pub type Signals = SignalsInfo<WithRawSiginfo>;

/// The signals `pidlock run` passes on to CMD.
const FORWARDED: [i32; 6] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// Catches the signals to forward, and CMD's exit. Installed before CMD starts, so that a
/// signal that arrives at any time after is passed on rather than killing the wrapper alone.
///
/// A signal that the caller ignores (`nohup`, a background job of a non-interactive shell) is
/// left alone, so that CMD inherits the ignoring, as it would without the wrapper.
pub fn catch_signals() -> io::Result<Signals> {
    let mut wanted: Vec<i32> = FORWARDED.into_iter().filter(|s| !ignored(*s)).collect();
    wanted.push(SIGCHLD);
    SignalsInfo::new(wanted)
}

/// Whether `signal` is ignored in this process (`SIG_IGN`).
fn ignored(signal: i32) -> bool {
    // SAFETY: `sigaction` with no new action only reads the current one into `current`, a
    // zeroed `sigaction`, which is a valid value of that plain C struct.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

/// How CMD is tied to the lock.
pub enum Tie<'a> {
    /// CMD inherits this locked descriptor (and its children from it): the job holds the lock.
    Inherit(BorrowedFd<'a>),
    /// CMD holds nothing; the kernel kills it (SIGKILL) when the wrapper dies, so that it never
    /// runs without the lock (`--no-inherit`).
    DieWithWrapper,
}

/// CMD, running as a job.
pub struct Job {
    child: Child,
    pid: Pid,
    /// CMD is in the wrapper's process group, the terminal's foreground: the terminal's own
    /// signals reach it directly, and are not passed on.
    in_terminal_group: bool,
}

impl Job {
    /// CMD's PID, which is also the job's process group unless CMD shares the wrapper's
    /// group on a terminal.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether CMD leads a process group of its own (it does unless it shares the wrapper's
    /// on a terminal): the group that holds its children too, and that the wrapper may signal
    /// as a whole without signalling itself.
    pub fn own_group(&self) -> bool {
        !self.in_terminal_group
    }
}

/// Starts `argv` tied to the lock as `tie` says: in a process group of its own, or in the
/// wrapper's own if that is a terminal's foreground (see the module docs).
///
/// Call this on the main thread: the kernel ties the death signal to the thread that forked,
/// not to the process, and any other thread may end before CMD does.
pub fn spawn(argv: &[OsString], tie: Tie<'_>) -> Result<Job, Failure> {
    let (program, args) = argv.split_first().ok_or(Failure::NoCommand)?;
    let mut command = Command::new(program);
    command.args(args);
    let in_terminal_group = in_terminal_foreground();
    if !in_terminal_group {
        command.process_group(0);
    }
    // A copy of the locked descriptor without close-on-exec, for CMD alone: it is closed here
    // as soon as CMD runs, and no other thread of the wrapper starts processes.
    let inherited: Option<OwnedFd> = match tie {
        Tie::Inherit(fd) => Some(rustix::io::dup(fd).map_err(|e| {
            Failure::Refused(format!("cannot pass the lock on to the command: {e}"))
        })?),
        Tie::DieWithWrapper => {
            die_with_parent(&mut command);
            None
        }
    };
    let child = command.spawn().map_err(|e| Failure::Spawn {
        command: program.to_string_lossy().into_owned(),
        reason: match e.kind() {
            io::ErrorKind::NotFound => "no such command".to_owned(),
            io::ErrorKind::PermissionDenied => {
                "it is not executable (permission denied)".to_owned()
            }
            _ => e.to_string(),
        },
    })?;
    drop(inherited);
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Failure::Refused("the command has no valid PID".to_owned()))?;
    Ok(Job {
        child,
        pid,
        in_terminal_group,
    })
}

/// Whether the wrapper's process group is the foreground of the terminal on its standard
/// input, output or error. A group this process cannot see (its leader is outside this PID
/// namespace: `unshare --pid --fork`) counts as not: no terminal's foreground is known to be it.
fn in_terminal_foreground() -> bool {
    let Some(me) = holder::own_process_group() else {
        return false;
    };
    [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ]
    .into_iter()
    .any(|fd| {
        rustix::termios::tcgetpgrp(fd)
            .is_ok_and(|foreground| u32::try_from(foreground.as_raw_nonzero().get()) == Ok(me))
    })
}

/// Has the kernel kill the command (SIGKILL) when this process dies. The kernel forgets this
/// when CMD `exec`s a set-user-ID or set-group-ID program (`sudo`, say): only an inherited lock
/// keeps such a CMD from running without it.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn die_with_parent(command: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the hook runs in the forked child before `exec`, where only async-signal-safe
    // functions may be called. It makes two system calls (`prctl`/`procctl`, `getppid`) and
    // allocates nothing: the errors are raw errno values.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between the fork and the prctl, and then the death
            // signal would never come: the child has been reparented already.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere (macOS) there is no death signal: the command outlives a wrapper killed with
/// SIGKILL, though not its lock's release.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn die_with_parent(_command: &mut Command) {}

/// Passes the caught signals on to the job's CMD until it exits, and returns how it ended.
///
/// A stop of CMD (Ctrl-Z, SIGSTOP) is not an end: on a terminal the wrapper stops with it, in
/// the same group; elsewhere a stopped job is continued by whoever stopped it.
pub fn supervise(job: &mut Job, signals: &mut Signals) -> io::Result<ExitStatus> {
    let pid = job.pid;
    loop {
        // Only this loop reaps CMD, so until it does, `pid` cannot name another process.
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG | WaitOptions::UNTRACED)? {
            Some((_, status)) if status.stopped() => {}
            Some((_, status)) => return Ok(ExitStatus::from_raw(status.as_raw())),
            None => {}
        }
        for caught in signals.wait() {
            if caught.si_signo == SIGCHLD {
                continue;
            }
            // The terminal's signal to its foreground group reached CMD in that group already.
            if job.in_terminal_group && caught.si_code == libc::SI_KERNEL {
                continue;
            }
            if let Some(signal) = Signal::from_named_raw(caught.si_signo) {
                // Fails only if CMD is a zombie already: the next waitpid reaps it.
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    }
}

/// The exit status a shell would report for `status`: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        // Only the low 8 bits of a status reach the parent anyway.
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signal)) => (128 + (signal & 0x7f)) as u8,
        (None, None) => 1,
    }
}
