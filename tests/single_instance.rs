//! `#[single_instance]` in real binaries (`tests/fixtures/si_*.rs`), each started twice.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Proc, Scratch};
use pidlockfile::PidLockFile;

fn start(bin: &str, lock: &Path) -> Proc {
    start_with(bin, lock, &[])
}

fn start_with(bin: &str, lock: &Path, args: &[&str]) -> Proc {
    let exe = match bin {
        "si-plain" => env!("CARGO_BIN_EXE_si-plain"),
        "si-wait" => env!("CARGO_BIN_EXE_si-wait"),
        "si-timeout" => env!("CARGO_BIN_EXE_si-timeout"),
        "si-result" => env!("CARGO_BIN_EXE_si-result"),
        "si-tokio" => env!("CARGO_BIN_EXE_si-tokio"),
        "si-tokio-below" => env!("CARGO_BIN_EXE_si-tokio-below"),
        "si-async-turns" => env!("CARGO_BIN_EXE_si-async-turns"),
        "si-conflicts" => env!("CARGO_BIN_EXE_si-conflicts"),
        "si-result-pidlock" => env!("CARGO_BIN_EXE_si-result-pidlock"),
        other => panic!("no fixture {other}"),
    };
    let mut command = Command::new(exe);
    command.args(args);
    command.env("PIDLOCK_FIXTURE_LOCK", lock);
    Proc::spawn(command)
}

/// Starts `bin` and waits until its body runs.
fn running(bin: &str, lock: &Path) -> Proc {
    let mut proc = start(bin, lock);
    let line = proc.next_report();
    assert_eq!(
        line,
        format!("running {}", proc.id()),
        "{bin} did not get in"
    );
    proc
}

fn stderr_lines(output: &[String]) -> Vec<&str> {
    output
        .iter()
        .filter_map(|l| l.strip_prefix("stderr: "))
        .collect()
}

#[test]
fn a_second_main_is_refused_with_one_line_and_the_exit_code() {
    let scratch = Scratch::new("si-refuse");
    let lock = scratch.path("app.pid");
    let first = running("si-plain", &lock);
    let mut second = start("si-plain", &lock);
    let (status, output) = second.finish();
    assert_eq!(status.code(), Some(75));
    assert!(
        !output.iter().any(|l| l.starts_with("running")),
        "the body ran: {output:?}"
    );
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "error: si-plain is already running (pid {}, lock file {})",
            first.id(),
            lock.display()
        )]
    );
}

#[test]
fn a_waiting_main_says_so_and_gets_in_when_the_holder_exits() {
    let scratch = Scratch::new("si-wait");
    let lock = scratch.path("app.pid");
    let mut first = running("si-plain", &lock);
    let mut second = start("si-wait", &lock);
    let announced = second.next_line();
    assert_eq!(
        announced,
        format!(
            "stderr: Blocking waiting for si-wait (process {}) to release lock file {} (up to 30s)",
            first.id(),
            lock.display()
        )
    );
    first.send("return");
    assert_eq!(first.wait().code(), Some(0));
    assert_eq!(second.next_report(), format!("running {}", second.id()));
    second.close_stdin();
    assert_eq!(second.wait().code(), Some(0));
    assert!(!lock.exists(), "the lock file outlived a clean exit");
}

#[test]
fn a_timed_out_main_exits_with_the_default_code() {
    let scratch = Scratch::new("si-timeout");
    let lock = scratch.path("app.pid");
    let first = running("si-plain", &lock);
    let (status, output) = start("si-timeout", &lock).finish();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "error: si-timeout is still running after waiting 200ms (pid {}, lock file {})",
            first.id(),
            lock.display()
        )],
        "quiet: no waiting line"
    );
}

#[test]
fn a_result_main_returns_the_conflict_as_its_error() {
    let scratch = Scratch::new("si-result");
    let lock = scratch.path("app.pid");
    let first = running("si-plain", &lock);
    let (status, output) = start("si-result", &lock).finish();
    assert_eq!(
        status.code(),
        Some(1),
        "std reports an Err from main with status 1"
    );
    assert!(!output.iter().any(|l| l.starts_with("running")));
    // One line, the error's sentence: pidlockfile's errors print it from `Debug` too, which is
    // what std uses for an `Err` returned from `main`.
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "Error: {} is locked by process {}",
            lock.display(),
            first.id()
        )]
    );
    drop(first);

    let mut alone = running("si-result", &lock);
    alone.close_stdin();
    assert_eq!(alone.wait().code(), Some(0));
}

#[test]
fn a_main_returning_a_pidlock_error_prints_its_sentence() {
    let scratch = Scratch::new("si-result-pidlock");
    let lock = scratch.path("app.pid");
    let first = running("si-plain", &lock);
    let (status, output) = start("si-result-pidlock", &lock).finish();
    assert_eq!(status.code(), Some(1));
    assert!(!output.iter().any(|l| l.starts_with("running")));
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "Error: {} is locked by process {}",
            lock.display(),
            first.id()
        )]
    );
}

#[test]
fn two_tasks_of_one_thread_take_turns_at_a_guarded_async_fn() {
    let scratch = Scratch::new("si-async-turns");
    let lock = scratch.path("app.pid");
    let mut turns = start("si-async-turns", &lock);
    // Bounded: a wait that blocks the runtime's only thread never ends, and fails here.
    let (status, output) = turns.finish();
    assert_eq!(status.code(), Some(0), "{output:?}");
    let stdout: Vec<&str> = output
        .iter()
        .filter(|l| !l.starts_with("stderr: "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        stdout,
        [
            "first in",
            "first out",
            "second in",
            "second out",
            "done first second"
        ]
    );
    // The second task said once that it waits, for its own process.
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "Blocking waiting for si-async-turns (process {}) to release lock file {} (no time \
             limit)",
            turns.id(),
            lock.display()
        )]
    );
    assert!(!lock.exists(), "the lock file outlived both turns");
}

#[test]
fn a_conflict_in_a_function_returning_a_result_alias_is_its_err() {
    let scratch = Scratch::new("si-alias");
    let lock = scratch.path("app.pid");
    let mut alias = start_with("si-conflicts", &lock, &["alias"]);
    let pid = alias.id();
    let (status, output) = alias.finish();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert_eq!(
        output,
        [
            format!("inner err {} is locked by process {pid}", lock.display()),
            "outer Some(1)".to_owned()
        ]
    );
}

#[test]
fn a_conflict_panic_is_located_at_the_guarded_function() {
    let scratch = Scratch::new("si-panic-location");
    let lock = scratch.path("app.pid");
    let mut conflicts = start_with("si-conflicts", &lock, &["panic"]);
    let pid = conflicts.id();
    let (status, output) = conflicts.finish();
    assert_eq!(status.code(), Some(101), "{output:?}");
    let stderr = stderr_lines(&output);
    // `thread 'main' (ID) panicked at FILE:LINE:COLUMN:`, then the message.
    let at = stderr
        .iter()
        .find_map(|l| l.split_once(" panicked at ").map(|(_, at)| at))
        .unwrap_or_else(|| panic!("no panic: {output:?}"));
    // The line of the attribute on `fn plain`, which is the line above it.
    let attribute = include_str!("fixtures/si_conflicts.rs")
        .lines()
        .position(|l| l.starts_with("fn plain("))
        .unwrap();
    assert_eq!(at, format!("tests/fixtures/si_conflicts.rs:{attribute}:1:"));
    assert!(
        stderr.contains(
            &format!(
                "`plain` cannot run: si-conflicts is already running (pid {pid}, lock file {})",
                lock.display()
            )
            .as_str()
        ),
        "{output:?}"
    );
}

#[test]
fn tokio_mains_are_guarded_in_either_attribute_order() {
    let scratch = Scratch::new("si-tokio");
    let lock = scratch.path("app.pid");
    let mut first = running("si-tokio", &lock);
    let (status, output) = start("si-tokio", &lock).finish();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "error: si-tokio is already running (pid {}, lock file {})",
            first.id(),
            lock.display()
        )]
    );

    let mut below = start("si-tokio-below", &lock);
    assert!(
        below
            .next_line()
            .starts_with("stderr: Blocking waiting for si-tokio-below")
    );
    first.send("return");
    assert_eq!(first.wait().code(), Some(0));
    assert_eq!(below.next_report(), format!("running {}", below.id()));
    below.close_stdin();
    assert_eq!(below.wait().code(), Some(0));
}

#[test]
fn a_panicking_body_releases_the_lock_while_unwinding() {
    let scratch = Scratch::new("si-panic");
    let lock = scratch.path("app.pid");
    let mut first = running("si-plain", &lock);
    first.send("panic");
    let (status, output) = first.finish();
    assert_eq!(status.code(), Some(101), "{output:?}");
    assert!(!lock.exists(), "the guard did not run during unwinding");
    let mut next = running("si-plain", &lock);
    next.close_stdin();
    assert_eq!(next.wait().code(), Some(0));
}

#[test]
fn a_sigkilled_holder_does_not_block_the_next_start() {
    let scratch = Scratch::new("si-kill");
    let lock = scratch.path("app.pid");
    let mut first = running("si-plain", &lock);
    first.kill();
    assert!(lock.exists(), "SIGKILL skips the guard");
    assert!(!PidLockFile::new(&lock).is_locked());
    let mut next = running("si-plain", &lock);
    assert_eq!(PidLockFile::new(&lock).read_pid(), Some(next.id()));
    next.close_stdin();
    assert_eq!(next.wait().code(), Some(0));
}
