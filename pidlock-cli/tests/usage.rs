//! `pidlock run`'s command line: a word that looks like a flag before CMD is a (misspelt) flag of
//! pidlock's, a usage error (exit 2) that runs nothing; after `--`, or once CMD has started,
//! every word is CMD's.
#![cfg(unix)]

mod common;

use common::*;

#[test]
fn an_unknown_flag_before_cmd_is_a_usage_error_2_and_runs_nothing() {
    let scratch = Scratch::new("usage-flag");
    let path = scratch.path("job.pid");
    let ran = scratch.path("ran");
    let touch = ran.to_str().expect("a UTF-8 path");
    for extra in [
        &["--no-inherrit", "--"][..],
        &["--no-inherrit"][..],
        &["-x", "--"][..],
    ] {
        let out = pidlock()
            .arg("run")
            .arg("--file")
            .arg(&path)
            .args(extra)
            .args(["touch", touch])
            .output()
            .expect("pidlock run");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {said}");
        assert!(said.contains(extra[0]), "{extra:?}: {said}");
        assert!(!ran.exists(), "{extra:?} ran CMD");
        assert!(!path.exists(), "{extra:?} took the lock");
    }
}

#[test]
fn after_the_double_dash_or_cmd_every_word_is_cmds() {
    let scratch = Scratch::new("usage-cmd");
    let path = scratch.path("job.pid");
    let echo = [
        "sh",
        "-c",
        r#"echo "$*""#,
        "sh",
        "--quiet",
        "-x",
        "--",
        "--file",
    ];
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .arg("--")
        .args(echo)
        .assert()
        .success()
        .stdout("--quiet -x -- --file\n");
    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(echo)
        .assert()
        .success()
        .stdout("--quiet -x -- --file\n");
    // A program whose name starts with `-` is CMD after `--`: no such program here.
    let out = pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--", "-no-such-program"])
        .output()
        .expect("pidlock run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run `-no-such-program`"));
}
