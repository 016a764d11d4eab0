//! What `#[single_instance]` needs at run time: the default lock path, the messages, and what
//! to do on a conflict. The generated code calls these through `__private`.

mod conflict;
mod future;

pub use conflict::{
    ConflictError, Function, FutureReturned, Main, MainExitCode, NoUnwind, NotAFuture,
    OtherConflict, PlainReturned, ResultConflict, ResultContext, Returns, UnwindContext,
};
pub use future::{Acquire, acquire_async};

use std::path::{Path, PathBuf};
use std::task::Waker;
use std::time::Duration;
use std::{env, process};

use crate::{Error, LockError, PidLockFile, PidLockGuard};

/// The name of the running program: the binary's name as cargo built it, else the file name
/// of the executable.
fn program_name(built_as: Option<&'static str>) -> String {
    if let Some(name) = built_as {
        return name.to_owned();
    }
    env::current_exe()
        .ok()
        .or_else(|| env::args_os().next().map(PathBuf::from))
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "this program".to_owned())
}

/// The arguments of one `#[single_instance]`, as the generated code builds them.
#[derive(Debug)]
pub struct Options {
    /// `path = ...`, or `None` for [`default_path`](crate::default_path).
    pub path: Option<PathBuf>,
    /// `None` waits without a limit.
    pub timeout: Option<Duration>,
    /// No "waiting for" line.
    pub quiet: bool,
    /// `CARGO_BIN_NAME` where the function was compiled, if set.
    pub program: Option<&'static str>,
}

impl Options {
    fn program(&self) -> String {
        program_name(self.program)
    }

    /// The lock file: `path`, or the program's default, whose private directory is made and
    /// checked here (see [`PidLockFile::for_program`]).
    fn path(&self) -> Result<PathBuf, LockError> {
        match &self.path {
            Some(path) => Ok(path.clone()),
            None => Ok(PidLockFile::for_program(&self.program())?.path().to_owned()),
        }
    }
}

/// Turns any `AsRef<Path>` the user gave as `path` into a path. The generated code passes a
/// reference, so that `path = lock` leaves the parameter `lock` to the body.
pub fn path_from<P: AsRef<Path> + ?Sized>(path: &P) -> PathBuf {
    path.as_ref().to_owned()
}

/// The outcome of the first, non-blocking try.
enum FirstTry {
    /// Taken, or failed for good.
    Done(Result<PidLockGuard, Error>),
    /// Held by another holder, and the options allow waiting (`None`: without a limit). The
    /// "Blocking waiting" line has been printed, unless `quiet`.
    Wait {
        path: PathBuf,
        timeout: Option<Duration>,
    },
}

/// Tries once without waiting; says on stderr that it is going to wait, when it is. `task` is
/// the waker of the calling async task, if any: a lock that the caller itself holds (this
/// thread, or this task) is refused at once instead of waited for.
fn first_try(options: &Options, task: Option<&Waker>) -> FirstTry {
    let path = match options.path() {
        Ok(path) => path,
        Err(e) => return FirstTry::Done(Err(e.into())),
    };
    let wait = match options.timeout {
        Some(timeout) if timeout.is_zero() => {
            return FirstTry::Done(PidLockFile::lock(path, Some(timeout)).map_err(Error::from));
        }
        wait => wait,
    };
    match PidLockFile::lock(&path, Some(Duration::ZERO)) {
        Err(LockError::AlreadyLocked { pid, .. }) => {
            if PidLockFile::held_by_caller(&path, task) {
                return FirstTry::Done(Err(Error::Lock(LockError::AlreadyLocked {
                    path,
                    pid: Some(process::id()),
                })));
            }
            if !options.quiet {
                let holder =
                    pid.map_or_else(|| "another process".to_owned(), |p| format!("process {p}"));
                let limit =
                    wait.map_or_else(|| "no time limit".to_owned(), |t| format!("up to {t:?}"));
                eprintln!(
                    "Blocking waiting for {} ({holder}) to release lock file {} ({limit})",
                    options.program(),
                    path.display()
                );
            }
            FirstTry::Wait {
                path,
                timeout: wait,
            }
        }
        other => FirstTry::Done(other.map_err(Error::from)),
    }
}

/// Takes the lock as the options say, telling the user on stderr when it has to wait. Blocks
/// the calling thread while it waits: for a plain `fn`. An `async fn` uses [`acquire_async`].
pub fn acquire(options: &Options) -> Result<PidLockGuard, Error> {
    match first_try(options, None) {
        FirstTry::Done(result) => result,
        FirstTry::Wait { path, timeout } => Ok(PidLockFile::lock(path, timeout)?),
    }
}

/// The one-line message for a lock that could not be taken.
fn message(options: &Options, error: &Error) -> String {
    let program = options.program();
    let holder =
        |pid: Option<u32>| pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
    match error {
        Error::Lock(LockError::AlreadyLocked { path, pid }) => format!(
            "{program} is already running ({}, lock file {})",
            holder(*pid),
            path.display()
        ),
        Error::Lock(LockError::LockTimeout { path, pid, timeout }) => format!(
            "{program} is still running after waiting {timeout:?} ({}, lock file {})",
            holder(*pid),
            path.display()
        ),
        other => format!("{program} cannot take its lock: {other}"),
    }
}

/// A conflict in a `main` that cannot return an error: one line on stderr, then exit.
pub fn exit(options: &Options, error: Error, code: u8) -> ! {
    eprintln!("error: {}", message(options, &error));
    process::exit(i32::from(code))
}

/// A conflict in `function`, which cannot return an error: panic with the same message as
/// [`exit`] prints, naming the function, and located at it (the generated call carries the
/// attribute's span), not here.
#[allow(clippy::panic)]
#[track_caller]
pub fn panic(options: &Options, error: Error, function: &str) -> ! {
    panic!("`{function}` cannot run: {}", message(options, &error))
}
