//! Starting CMD as a job of its own, passing on the signals meant for it exactly once, and
//! turning its end into an exit status as shells do.
//!
//! # The job and its process group
//!
//! CMD runs in a process group of its own, the job's group: its PGID is CMD's PID, the PID that
//! the PID file names. That is what makes every signal reach CMD exactly once:
//! - a signal sent to the wrapper alone, or to the wrapper's group (`kill -INT -<wrapper's
//!   pgid>`, a supervisor stopping its child's group), reaches the wrapper only, which passes it
//!   on to CMD: once;
//! - a signal sent to the job's group (`kill -INT -<CMD's pid>`, or `pidlock kill --group`)
//!   reaches CMD and its children, not the wrapper: once;
//! - on a terminal, the job's group gets the foreground (CMD takes it before it `exec`s, and
//!   the wrapper makes sure once it runs, as shells do), so Ctrl-C and Ctrl-\ go to the job
//!   alone, once, and the job may read the terminal.
//!   When the job stops (Ctrl-Z), the wrapper takes the terminal back and stops itself, so the
//!   shell sees a stopped job; at `fg` it hands the terminal over again and continues the job.
//!   At exit it takes the terminal back before the shell does.
//!
//! The alternative, CMD in the wrapper's group, cannot work: a signal to the group reaches both,
//! and the wrapper cannot tell it from one sent to itself alone (both are `SI_USER`), so it
//! either forwards it a second time or drops a signal meant for CMD.
//!
//! # Passing the lock on
//!
//! CMD inherits the locked descriptor through a duplicate without close-on-exec
//! (`rustix::io::dup`), made just before the spawn and closed just after: no code runs between
//! `fork` and `exec` for it. The only such code (`pre_exec`, SAFETY-commented) is the
//! parent-death signal of `--no-inherit` and the terminal handoff.
//!
//! `kill -KILL -<CMD's pid>` ends the whole job at once; the wrapper sees CMD gone and exits,
//! and with it the lock's last holder. SIGKILL of the wrapper's group (or the wrapper alone)
//! leaves the job running, holding its lock (see `run.rs`): safe, as with `flock(1)`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::failure::Failure;

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
    Signals::new(wanted)
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

/// CMD, running as a job of its own.
pub struct Job {
    child: Child,
    pid: Pid,
    /// The terminal whose foreground the job has, to take back at the end.
    terminal: Option<BorrowedFd<'static>>,
}

impl Job {
    /// CMD's PID, which is also the job's process group.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `argv` in a process group of its own, tied to the lock as `tie` says, and gives it
/// the terminal's foreground if the wrapper has it.
///
/// Call this on the main thread: the kernel ties the death signal to the thread that forked,
/// not to the process, and any other thread may end before CMD does.
pub fn spawn(argv: &[OsString], tie: Tie<'_>) -> Result<Job, Failure> {
    let (program, args) = argv.split_first().ok_or(Failure::NoCommand)?;
    let mut command = Command::new(program);
    command.args(args).process_group(0);
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
    let terminal = foreground_terminal();
    if let Some(tty) = terminal {
        take_foreground_in_child(&mut command, tty.as_raw_fd());
    }
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
    // Again from this side, as shells do: `spawn` returns once CMD has exec'd, so its group
    // exists, and CMD's own call may have failed.
    let terminal = terminal.filter(|&tty| set_foreground(tty, pid).is_ok());
    Ok(Job {
        child,
        pid,
        terminal,
    })
}

/// A terminal on standard input, output or error whose foreground process group is the
/// wrapper's own: the job should have it instead.
fn foreground_terminal() -> Option<BorrowedFd<'static>> {
    let me = rustix::process::getpgrp();
    [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ]
    .into_iter()
    .find(|fd| rustix::termios::tcgetpgrp(fd).is_ok_and(|foreground| foreground == me))
}

/// Has CMD make its new process group the foreground of `tty` before it `exec`s, so that it
/// never runs a moment in the background of its terminal: a read of the terminal there would
/// stop it (SIGTTIN), and a Ctrl-Z would stop the wrapper instead of the job.
fn take_foreground_in_child(command: &mut Command, tty: RawFd) {
    // SAFETY: the hook runs in the forked child before `exec` (after std's `setpgid` for
    // `process_group` and its reset of the signal mask), where only async-signal-safe
    // functions may be called: `sigemptyset`, `sigaddset`, `sigprocmask`, `tcsetpgrp` and
    // `getpid` are, and nothing is allocated. The sigsets are zeroed locals, valid values of
    // that plain C type, filled in by `sigemptyset` and `sigprocmask`.
    unsafe {
        command.pre_exec(move || {
            // A process of a background group that changes the foreground gets SIGTTOU,
            // which stops it, unless that is blocked.
            let mut ttou: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, &ttou, &mut before);
            // A failure is not fatal: the wrapper tries again once CMD runs.
            libc::tcsetpgrp(tty, libc::getpid());
            libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Makes the wrapper's own group the foreground of `tty` again.
fn take_terminal_back(tty: BorrowedFd<'_>) {
    let _ = set_foreground(tty, rustix::process::getpgrp());
}

/// Makes `group` the foreground process group of `tty`. The wrapper may be in the background
/// at that point (CMD took the foreground before it exec'd), and a background process that
/// changes the foreground gets SIGTTOU, which stops it: it is ignored for the call.
fn set_foreground(tty: BorrowedFd<'_>, group: Pid) -> io::Result<()> {
    // SAFETY: `sigaction` reads and sets this process's disposition of SIGTTOU from and to
    // zeroed or previously read `sigaction` values, valid values of that plain C struct; the
    // old disposition is put back right after.
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        let mut before: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTTOU, &ignore, &mut before) != 0 {
            return Err(io::Error::last_os_error());
        }
        let set = rustix::termios::tcsetpgrp(tty, group);
        libc::sigaction(libc::SIGTTOU, &before, std::ptr::null_mut());
        Ok(set?)
    }
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

/// Passes the caught signals on to the job's CMD until it exits, follows it through stops on
/// a terminal, and returns how it ended. The terminal, if the job had it, is taken back.
pub fn supervise(job: &mut Job, signals: &mut Signals) -> io::Result<ExitStatus> {
    let ended = follow(job, signals);
    if let Some(tty) = job.terminal.take() {
        take_terminal_back(tty);
    }
    ended
}

fn follow(job: &mut Job, signals: &mut Signals) -> io::Result<ExitStatus> {
    let pid = job.pid;
    loop {
        // Only this loop reaps CMD, so until it does, `pid` cannot name another process.
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG | WaitOptions::UNTRACED)? {
            Some((_, status)) if status.stopped() => {
                if let Some(tty) = job.terminal {
                    stop_with_job(tty, pid);
                }
            }
            Some((_, status)) => return Ok(ExitStatus::from_raw(status.as_raw())),
            None => {}
        }
        for caught in signals.wait() {
            if caught == SIGCHLD {
                continue;
            }
            if let Some(signal) = Signal::from_named_raw(caught) {
                // Fails only if CMD is a zombie already: the next waitpid reaps it.
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    }
}

/// The job stopped on the terminal (Ctrl-Z): takes the terminal back and stops the wrapper too,
/// so that the shell sees a stopped job and gets its prompt back. Once continued (`fg` or
/// `bg`), hands the terminal to the job again if the wrapper is in the foreground, and
/// continues the job.
fn stop_with_job(tty: BorrowedFd<'_>, job: Pid) {
    take_terminal_back(tty);
    // SIGSTOP cannot be caught: this returns once someone continues the wrapper.
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::STOP);
    let me = rustix::process::getpgrp();
    if rustix::termios::tcgetpgrp(tty).is_ok_and(|foreground| foreground == me) {
        let _ = set_foreground(tty, job);
    }
    let _ = rustix::process::kill_process_group(job, Signal::CONT);
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
