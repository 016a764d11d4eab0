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

mod child;
mod cli;
mod failure;
mod file_lock;
mod holder;
mod kill;
mod lock;
#[cfg(feature = "postgres")]
mod pg_lock;
mod progress;
mod run;
mod signal;
mod status;
mod wait;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::failure::Failure;

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
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message = rendered.split("\n\n").next().unwrap_or_default();
    let joined: Vec<&str> = message.lines().map(str::trim).collect();
    let joined = joined.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// Prints a failure as pidlock's one-line error.
fn report(failure: &Failure) {
    eprintln!("pidlock: {failure}");
}
