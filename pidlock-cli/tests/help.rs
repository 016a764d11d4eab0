//! `--help` shows an example for each subcommand and its exit codes, and completions come from
//! the same definitions.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn every_subcommand_has_an_example_and_its_exit_codes() {
    for (subcommand, example) in [
        (
            "run",
            "pidlock run --file /run/backup.pid -- backup.sh --full",
        ),
        ("status", "pidlock status --file /run/backup.pid"),
        ("kill", "pidlock kill --file /run/backup.pid"),
        ("wait", "pidlock wait --file /run/backup.pid"),
        ("completions", "pidlock completions bash"),
    ] {
        let help = pidlock()
            .args([subcommand, "--help"])
            .assert()
            .success()
            .stderr("")
            .get_output()
            .stdout
            .clone();
        let help = String::from_utf8(help).expect("utf-8");
        assert!(help.contains(example), "{subcommand}: {help}");
        if subcommand != "completions" {
            assert!(help.contains("Exit status"), "{subcommand}: {help}");
        }
    }
}

#[test]
fn completions_cover_the_subcommands() {
    pidlock()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("pidlock__subcmd__run")
                .and(predicate::str::contains("--keep-file"))
                .and(predicate::str::contains("--conflict-exit-code")),
        );
    pidlock()
        .args(["completions", "zsh"])
        .assert()
        .success()
        .stdout(predicate::str::contains("#compdef pidlock"));
    pidlock().args(["completions", "tcsh"]).assert().code(2);
}
