//! On a terminal, `pidlock run --wait` keeps one live line up to date and erases it when the
//! lock is taken. The terminal is a pty that `script(1)` provides.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

#[test]
fn the_live_waiting_line_is_rewritten_in_place_and_erased_when_the_lock_is_taken() {
    let scratch = Scratch::new("terminal");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    let inner = format!(
        "{PIDLOCK} run --file {} --wait 60 -- echo taken",
        path.display()
    );
    let mut script = Reaped(
        Command::new("script")
            .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start script(1)"),
    );
    let output = chunks_of(script.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + BOUND;
    // The line is redrawn as the seconds waited go up: wait for a redraw with "1s waited".
    while !String::from_utf8_lossy(&seen).contains("1s waited") {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.extend(output.recv_timeout(left).expect("the live line"));
    }
    assert!(held.release().success());
    while let Ok(chunk) = output.recv_timeout(BOUND) {
        seen.extend(chunk);
    }
    assert!(script.wait().success());
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.starts_with("\rpidlock: waiting for job (pid "),
        "{text:?}"
    );
    assert!(text.contains(": 0s waited, limit 1m00s\x1b[K"), "{text:?}");
    assert!(text.contains(": 1s waited, limit 1m00s\x1b[K"), "{text:?}");
    // Erased, then the command's own output on a clean line.
    assert!(text.ends_with("\r\x1b[Ktaken\r\n"), "{text:?}");
    assert_eq!(text.matches('\n').count(), 1, "{text:?}");
}
