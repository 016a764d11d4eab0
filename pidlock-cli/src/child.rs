//! Starting CMD so that it can never outlive `pidlock run` (and so its lock), passing on the
//! signals meant for it, and turning its end into an exit status as shells do.

use std::ffi::OsString;
use std::io;
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};

use rustix::process::{Pid, Signal};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::failure::Failure;

/// The signals `pidlock run` passes on to CMD.
const FORWARDED: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

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

/// Starts `argv`, to be killed (SIGKILL) by the kernel as soon as this process dies, however
/// it dies.
///
/// Call this on the main thread: the kernel ties the death signal to the thread that forked,
/// not to the process, and any other thread may end before CMD does.
pub fn spawn(argv: &[OsString]) -> Result<Child, Failure> {
    let (program, args) = argv.split_first().ok_or(Failure::NoCommand)?;
    let mut command = Command::new(program);
    command.args(args);
    die_with_parent(&mut command);
    command.spawn().map_err(|e| Failure::Spawn {
        command: program.to_string_lossy().into_owned(),
        reason: match e.kind() {
            io::ErrorKind::NotFound => "no such command".to_owned(),
            io::ErrorKind::PermissionDenied => {
                "it is not executable (permission denied)".to_owned()
            }
            _ => e.to_string(),
        },
    })
}

/// Has the kernel kill the command (SIGKILL) when this process dies. The kernel forgets this
/// when CMD `exec`s a set-user-ID or set-group-ID program (`sudo`, say); run such a program
/// under a wrapper of its own (`pidlock run -- sudo pidlock run ...` keeps the guarantee
/// inside).
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

/// Passes the caught signals on to `child` until it exits, and returns how it ended.
pub fn supervise(child: &mut Child, signals: &mut Signals) -> io::Result<ExitStatus> {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    loop {
        // Only this loop reaps the child, so until it does, `pid` cannot name another process.
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        for caught in signals.wait() {
            if caught == SIGCHLD || terminal_sent_it_to_both(caught) {
                continue;
            }
            if let Some(signal) = Signal::from_named_raw(caught) {
                // Fails only if the child is a zombie already: the next try_wait reaps it.
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    }
}

/// Whether `signal` is a keyboard signal (Ctrl-C, Ctrl-\) that the terminal sent to the whole
/// foreground process group, CMD included: passing it on would deliver it twice, and some
/// programs take a second Ctrl-C as "stop cleaning up". A `kill` aimed at the wrapper alone
/// from elsewhere is then not passed on while it runs in the foreground of a terminal.
fn terminal_sent_it_to_both(signal: i32) -> bool {
    if signal != SIGINT && signal != SIGQUIT {
        return false;
    }
    let me = rustix::process::getpgrp();
    [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ]
    .into_iter()
    .any(|fd| rustix::termios::tcgetpgrp(fd).is_ok_and(|foreground| foreground == me))
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
