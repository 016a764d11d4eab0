//! `#[single_instance]` in real binaries (`tests/fixtures/si_*.rs`), each started twice.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Proc, Scratch};
use pidlock::PidLockFile;

fn start(bin: &str, lock: &Path) -> Proc {
    let exe = match bin {
        "si-plain" => env!("CARGO_BIN_EXE_si-plain"),
        "si-wait" => env!("CARGO_BIN_EXE_si-wait"),
        "si-timeout" => env!("CARGO_BIN_EXE_si-timeout"),
        "si-result" => env!("CARGO_BIN_EXE_si-result"),
        "si-tokio" => env!("CARGO_BIN_EXE_si-tokio"),
        "si-tokio-below" => env!("CARGO_BIN_EXE_si-tokio-below"),
        other => panic!("no fixture {other}"),
    };
    let mut command = Command::new(exe);
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
    // One line, the error's sentence: pidlock's errors print it from `Debug` too, which is
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
