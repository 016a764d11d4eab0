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
    // A `read` that the trapped SIGINT interrupts is tried again.
    let job = r#"trap "echo INT" INT; echo ready; until read x; do :; done; echo "got $x""#;
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

/// Ctrl-Z in an interactive shell stops the job and the wrapper with it, so the shell gets its
/// prompt back; `fg` gives the job the terminal again, and CMD reads from it.
#[test]
fn ctrl_z_stops_the_job_and_fg_gives_it_the_terminal_back() {
    use std::io::Write as _;
    let scratch = Scratch::new("terminal-ctrl-z");
    let path = scratch.path("job.pid");
    let mut script = Reaped(
        Command::new("script")
            .args([
                "--quiet",
                "--command",
                "bash --norc --noprofile -i",
                "/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start script(1)"),
    );
    let mut keys = script.0.stdin.take().expect("stdin");
    let output = chunks_of(script.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    // Waits until `text` has been shown `times` times in all. Typing goes only to a shell that
    // shows its prompt, or to a command that said it reads: keys typed while the terminal
    // changes hands may be lost.
    let mut wait_for = |text: &str, times: usize| {
        let deadline = Instant::now() + BOUND;
        while String::from_utf8_lossy(&seen).matches(text).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.extend(output.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "waited for {text:?}, got {:?}",
                    String::from_utf8_lossy(&seen)
                )
            }));
        }
    };
    // The prompt, spelled so that the echo of what is typed does not show it.
    keys.write_all(b"PS1=\"P\"\"S> \"\n")
        .expect("set the prompt");
    wait_for("PS> ", 1);
    let command = format!(
        "{PIDLOCK} run --file {} -- sh -c 'echo re\"\"ady; read x; echo go\"\"t $x'\n",
        path.display()
    );
    keys.write_all(command.as_bytes())
        .expect("type the command");
    wait_for("ready", 1);
    keys.write_all(b"\x1a").expect("Ctrl-Z");
    wait_for("Stopped", 1);
    wait_for("PS> ", 2);
    keys.write_all(b"fg\n").expect("fg");
    // `fg` echoes the command line, which reads now.
    wait_for("sh -c", 3);
    keys.write_all(b"hello\n").expect("type a line");
    wait_for("got hello", 1);
    wait_for("PS> ", 3);
    keys.write_all(b"exit\n").expect("exit");
    drop(keys);
    assert!(script.wait().success());
}
