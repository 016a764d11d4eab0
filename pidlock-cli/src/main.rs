//! `pidlock`: run a program under a PID-file lock (or a PostgreSQL fleet-wide lock), see who
//! holds it, stop the holder safely.
//!
//! Each subcommand lives in its own module and returns its documented exit status; errors are
//! one line on stderr, prefixed with `pidlock:`.

// Input from users and other processes must never panic the command.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

// Output that cannot be written (a closed pipe, a full disk) must not panic the command: that
// would skip its exit status, and in `run` could skip stopping CMD. These shadow std's macros
// for the whole crate, and drop write errors instead.
#[cfg(unix)]
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
#[cfg(unix)]
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
#[cfg(unix)]
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

// The command is built on Unix process control (signals, process groups, `/proc`, pidfds): on
// other systems it is a stub that says so, so that the workspace still builds there.
#[cfg(unix)]
mod backend;
#[cfg(unix)]
mod child;
#[cfg(unix)]
mod cli;
#[cfg(unix)]
mod failure;
#[cfg(unix)]
mod file_lock;
#[cfg(unix)]
mod holder;
#[cfg(unix)]
mod kill;
#[cfg(unix)]
mod lock;
#[cfg(feature = "postgres")]
#[cfg(unix)]
mod pg_lock;
#[cfg(unix)]
mod progress;
#[cfg(unix)]
mod run;
#[cfg(unix)]
mod signal;
#[cfg(unix)]
mod status;
#[cfg(unix)]
mod wait;

#[cfg(unix)]
use std::process::ExitCode;

#[cfg(unix)]
use clap::error::ErrorKind;
#[cfg(unix)]
use clap::{CommandFactory, Parser};

#[cfg(unix)]
use crate::cli::{Cli, Command};
#[cfg(unix)]
use crate::failure::Failure;

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "pidlock: this command runs on Unix only (Linux, macOS, FreeBSD); elsewhere, use the \
         pidlock crate from Rust"
    );
    std::process::ExitCode::from(2)
}

#[cfg(unix)]
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("pidlock: {} (see pidlock --help)", one_line(&e));
                return ExitCode::from(2);
            }
        },
    };
    let code = match &cli.command {
        Command::Run(args) => run::run(args),
        Command::Status(args) => status::status(args),
        Command::Kill(args) => kill::kill(args),
        Command::Wait(args) => wait::wait(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "pidlock",
                &mut std::io::stdout(),
            );
            0
        }
    };
    ExitCode::from(code)
}

/// clap's message without its `error: ` prefix, on one line: its first paragraph, whose
/// continuation lines (the missing arguments) are indented. The usage and tips that follow are
/// what `--help` is for.
#[cfg(unix)]
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message = rendered.split("\n\n").next().unwrap_or_default();
    let joined: Vec<&str> = message.lines().map(str::trim).collect();
    let joined = joined.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// Prints a failure as pidlock's one-line error.
#[cfg(unix)]
fn report(failure: &Failure) {
    eprintln!("pidlock: {failure}");
}
