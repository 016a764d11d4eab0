//! What can go wrong in a subcommand, as one line each. Each subcommand maps these to its own
//! documented exit codes.

use std::io;
use std::path::PathBuf;

use pidlockfile::{LockError, UnlockError};

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A combination of arguments that parses but cannot work here.
    #[error("{0}")]
    Usage(String),

    #[error(transparent)]
    Lock(#[from] LockError),

    #[error(transparent)]
    Unlock(#[from] UnlockError),

    #[error(
        "no command to run: give it after `--`, as in `pidlock run --file app.pid -- app --flag`"
    )]
    NoCommand,

    #[error("cannot run `{command}`: {reason}")]
    Spawn { command: String, reason: String },

    #[error("cannot read {}: {source}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not a PID file: {reason}", path.display())]
    NotAPidFile { path: PathBuf, reason: &'static str },

    #[error("{}", .0)]
    Refused(String),
}
