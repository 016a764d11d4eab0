//! What `#[single_instance]` needs at run time: the default lock path, the messages, and what
//! to do on a conflict. The generated code calls these through `__private`.

mod conflict;
#[cfg(feature = "postgres")]
mod fleet;
mod future;

pub use conflict::{
    ConflictError, Function, FutureReturned, Main, MainExitCode, NoUnwind, NotAFuture,
    OtherConflict, PlainReturned, ResultConflict, ResultContext, Returns, UnwindContext,
};
#[cfg(feature = "postgres")]
pub use fleet::{acquire_fleet, acquire_fleet_async};
pub use future::{Acquire, acquire_async};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;
use std::{env, process};

use crate::loss::OnLost;
use crate::{Error, LockError, Lost, PidLockFile, PidLockGuard};

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
#[derive(Debug, Clone)]
pub struct Options {
    /// `path = ...`, or `None` for [`default_path`](crate::default_path).
    pub path: Option<PathBuf>,
    /// `None` waits without a limit.
    pub timeout: Option<Duration>,
    /// No "waiting for" line.
    pub quiet: bool,
    /// `CARGO_BIN_NAME` where the function was compiled, if set.
    pub program: Option<&'static str>,
    /// `postgres = ...`: a fleet lock instead of a lock file.
    pub fleet: Option<Fleet>,
    /// `forward = ...`: hand a second instance's arguments to the running one.
    pub forward: Option<crate::forward::Forward>,
}

/// The fleet lock of `#[single_instance(postgres = ..., name = ..., on_lost = ...)]`.
#[derive(Clone)]
pub struct Fleet {
    /// The connection string, as evaluated at run time.
    pub conninfo: String,
    /// `name = ...`, or `None` for the program's name.
    pub name: Option<String>,
    /// `on_lost = ...`, or `None` to fail closed: one line on stderr, then exit.
    pub on_lost: Option<OnLost>,
    /// The exit status when failing closed.
    pub exit_code: u8,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connection string: it may hold a password.
        f.debug_struct("Fleet")
            .field("name", &self.name)
            .field("on_lost", &self.on_lost.is_some())
            .field("exit_code", &self.exit_code)
            .finish_non_exhaustive()
    }
}

/// Builds [`Fleet`] from the attribute's arguments; `conninfo` is any `AsRef<str>`.
pub fn fleet<C: AsRef<str> + ?Sized>(
    conninfo: &C,
    name: Option<&str>,
    on_lost: Option<OnLost>,
    exit_code: u8,
) -> Option<Fleet> {
    Some(Fleet {
        conninfo: conninfo.as_ref().to_owned(),
        name: name.map(str::to_owned),
        on_lost,
        exit_code,
    })
}

/// Boxes the user's `on_lost` handler, so that a closure's argument type is inferred.
pub fn on_lost<F: Fn(&Lost) + Send + Sync + 'static>(handler: F) -> OnLost {
    Arc::new(handler)
}

/// What the generated code holds while the function runs.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub enum Guard {
    /// A lock file.
    File(PidLockGuard),
    /// A fleet lock. Behind a trait object, so that a binary that only locks files never links
    /// the fleet lock's code (its client, TLS and runtime) through this type's drop.
    #[cfg(feature = "postgres")]
    Fleet(Box<dyn FleetGuard>),
}

/// What the generated code needs of a fleet lock's guard.
#[cfg(feature = "postgres")]
pub trait FleetGuard: std::fmt::Debug + Send {
    /// Records that the async task `task` wakes holds this lock.
    fn hand_to_task(&self, task: &Waker);
}

impl Guard {
    /// Records that the calling thread holds this lock until the guard is dropped. The
    /// generated code keeps the guard in the frame that runs the body, on this thread, so a
    /// nested guarded call on this thread would wait for itself, and is refused at once. (A
    /// fleet lock is pinned by `acquire_fleet`, which holds the `PgLock` itself.)
    fn pin_to_thread(&self) {
        match self {
            Guard::File(guard) => guard.lock_file().pin_to_thread(),
            #[cfg(feature = "postgres")]
            Guard::Fleet(_) => {}
        }
    }

    /// Records that the async task `task` wakes holds this lock (see `owner.rs`).
    fn hand_to_task(&self, task: &Waker) {
        match self {
            Guard::File(guard) => guard.lock_file().hand_to_task(task),
            #[cfg(feature = "postgres")]
            Guard::Fleet(guard) => guard.hand_to_task(task),
        }
    }
}

impl Options {
    pub(crate) fn program(&self) -> String {
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
pub(crate) enum FirstTry {
    /// Taken, or failed for good.
    Done(Result<Guard, Error>),
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
    if let Some(forward) = &options.forward
        && let Some(done) = (forward.first_try)(options, &path, task)
    {
        return FirstTry::Done(done);
    }
    let wait = match options.timeout {
        Some(timeout) if timeout.is_zero() => {
            return FirstTry::Done(
                PidLockFile::lock(path, Some(timeout))
                    .map(Guard::File)
                    .map_err(Error::from),
            );
        }
        wait => wait,
    };
    match PidLockFile::lock(&path, Some(Duration::ZERO)) {
        Err(LockError::AlreadyLocked { pid, .. }) => {
            if PidLockFile::held_by_caller(&path, task) {
                return FirstTry::Done(Err(Error::Lock(LockError::AlreadyLocked {
                    path,
                    pid: Some(process::id()),
                    host: None,
                    server: None,
                })));
            }
            if !options.quiet {
                let holder =
                    pid.map_or_else(|| "another process".to_owned(), |p| format!("process {p}"));
                eprintln!(
                    "Blocking waiting for {} ({holder}) to release lock file {} ({})",
                    options.program(),
                    path.display(),
                    limit(wait)
                );
            }
            FirstTry::Wait {
                path,
                timeout: wait,
            }
        }
        other => FirstTry::Done(other.map(Guard::File).map_err(Error::from)),
    }
}

/// Takes the lock as the options say, telling the user on stderr when it has to wait. Blocks
/// the calling thread while it waits: for a plain `fn`. An `async fn` uses [`acquire_async`].
pub fn acquire(options: &Options) -> Result<Guard, Error> {
    let guard = match first_try(options, None) {
        FirstTry::Done(result) => result?,
        FirstTry::Wait { path, timeout } => Guard::File(PidLockFile::lock(path, timeout)?),
    };
    guard.pin_to_thread();
    Ok(guard)
}

/// "no time limit" or "up to 5s", for the waiting notice.
pub(crate) fn limit(wait: Option<Duration>) -> String {
    wait.map_or_else(|| "no time limit".to_owned(), |t| format!("up to {t:?}"))
}

/// The one-line message for a lock that could not be taken.
fn message(options: &Options, error: &Error) -> String {
    let program = options.program();
    let holder =
        |pid: Option<u32>| pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
    // "lock file /run/app.pid", or "lock nightly-report on PostgreSQL at db:5432".
    let lock = |path: &Path, server: &Option<String>| match server {
        Some(server) => format!("lock {} on {server}", path.display()),
        None => format!("lock file {}", path.display()),
    };
    let who = |pid: Option<u32>, host: &Option<String>| match host {
        Some(host) => format!("{} on {host}", holder(pid)),
        None => holder(pid),
    };
    match error {
        Error::Lock(LockError::AlreadyLocked {
            path,
            pid,
            host,
            server,
        }) => format!(
            "{program} is already running ({}, {})",
            who(*pid, host),
            lock(path, server)
        ),
        Error::Lock(LockError::LockTimeout {
            path,
            pid,
            timeout,
            host,
            server,
        }) => format!(
            "{program} is still running after waiting {timeout:?} ({}, {})",
            who(*pid, host),
            lock(path, server)
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
