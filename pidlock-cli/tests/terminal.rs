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

/// On a terminal, CMD's job has the foreground: the terminal's Ctrl-C reaches CMD once (not the
/// wrapper, which would pass it on a second time), and CMD can read the terminal.
#[test]
fn on_a_terminal_ctrl_c_reaches_cmd_once_and_cmd_reads_the_terminal() {
    use std::io::Write as _;
    let scratch = Scratch::new("terminal-ctrl-c");
    let path = scratch.path("job.pid");
    let job = r#"trap "echo INT" INT; sleep 300 </dev/null & p=$!; echo ready; wait $p; read x; echo "got $x"; kill $p"#;
    let inner = format!(
        "{PIDLOCK} run --file {} -- sh -c '{}'",
        path.display(),
        job.replace('\'', r"'\''")
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
    let mut keys = script.0.stdin.take().expect("stdin");
    let output = chunks_of(script.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    let wait_for = |text: &str, seen: &mut Vec<u8>| {
        let deadline = Instant::now() + BOUND;
        while !String::from_utf8_lossy(seen).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.extend(output.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "waited for {text:?}, got {:?}",
                    String::from_utf8_lossy(seen)
                )
            }));
        }
    };
    wait_for("ready", &mut seen);
    keys.write_all(b"\x03").expect("Ctrl-C");
    wait_for("INT", &mut seen);
    keys.write_all(b"hello\r").expect("type a line");
    wait_for("got hello", &mut seen);
    drop(keys);
    assert!(script.wait().success());
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert_eq!(text.matches("INT").count(), 1, "{text:?}");
}
