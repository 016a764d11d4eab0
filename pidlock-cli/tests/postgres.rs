//! `--postgres`: the fleet lock from the shell, against a real PostgreSQL that the tests start
//! (the root package's throwaway cluster; `PIDLOCK_SKIP_POSTGRES=1` skips these tests).
//!
//! Every test uses a lock name of its own, so that they can share the one cluster.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]
#![cfg(feature = "postgres")]

mod common;
use pidlock_test_support::pg as pg_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{BOUND, PIDLOCK, Reaped, alive, bystander, exits_within, lines_of, one_line, pidlock};
use pg_support::Cluster;
use serde_json::Value;

/// The exit status of a `pidlock run` whose fleet lock was lost (documented in `--help`).
const LOST: i32 = 75;

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// A `pidlock run --postgres` holding the lock `name` in the background, with a command (a
/// shell script of the caller's) that prints `$$` once it runs, and so once the lock is held.
struct FleetHeld {
    wrapper: Reaped,
    /// The command's PID.
    cmd: u32,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

/// Holds the lock until stdin closes: the command becomes `cat`.
const UNTIL_STDIN_CLOSES: &str = r#"echo "$$"; exec cat"#;

fn hold(pg: &Cluster, name: &str, extra: &[&str], script: &str) -> FleetHeld {
    let mut wrapper = Reaped(
        Command::new(PIDLOCK)
            .args(["run", "--postgres", &pg.url(), "--name", name])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pidlock run"),
    );
    let stdin = wrapper.0.stdin.take();
    let stdout = lines_of(wrapper.0.stdout.take().expect("stdout"));
    let stderr = lines_of(wrapper.0.stderr.take().expect("stderr"));
    let line = stdout
        .recv_timeout(BOUND)
        .expect("the command starts under the lock and names itself");
    FleetHeld {
        wrapper,
        cmd: line.trim().parse().expect("a PID"),
        stdin,
        stdout,
        stderr,
    }
}

impl FleetHeld {
    /// Lets the command finish normally, and returns the wrapper's exit status.
    fn release(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.wrapper.wait()
    }

    /// Everything the wrapper wrote to stderr, once it and its command have exited (and so
    /// closed the pipe).
    fn stderr_after_exit(&self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.stderr.recv_timeout(BOUND) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open: {lines:?}"),
            }
        }
    }
}

/// Ends the server session of the `pidlock run` whose wrapper is `wrapper`, as an
/// administrator (or a failover) would.
fn terminate_session(pg: &Cluster, wrapper: u32) {
    let ended = pg.psql(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'pidlock {wrapper}@%') AS t"
    ));
    assert_eq!(ended, "1", "one session to terminate");
}

fn status_json(pg: &Cluster, name: &str, code: i32) -> Value {
    let output = pidlock()
        .args(["status", "--postgres", &pg.url(), "--name", name, "--json"])
        .assert()
        .code(code)
        .get_output()
        .clone();
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "{text:?}");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn run_refuses_a_second_copy_with_one_line_naming_holder_and_server() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let held = hold(pg, "cli-conflict", &[], UNTIL_STDIN_CLOSES);
    let output = pidlock()
        .args(["run", "--postgres", &pg.url(), "--name", "cli-conflict"])
        .args(["--", "sh", "-c", "echo second copy ran"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(output.stdout.is_empty(), "the second copy must not run");
    let line = one_line(&output.stderr);
    let expected_start = format!(
        "pidlock: cli-conflict is already running (pid {} on {}",
        held.wrapper.id(),
        host_name()
    );
    let expected_end = format!(
        "; lock cli-conflict on PostgreSQL at 127.0.0.1:{})",
        pg.port
    );
    assert!(line.starts_with(&expected_start), "{line}");
    assert!(line.ends_with(&expected_end), "{line}");
    // On the holder's host, the command is what is shown (the shell, or `cat` once it has
    // exec'd), not the wrapper and its connection string.
    assert!(
        line.contains(": sh -c echo") || line.contains(": cat;"),
        "{line}"
    );

    // --conflict-exit-code and the name defaulting to CMD's program name.
    let defaulted = hold(pg, "true", &[], UNTIL_STDIN_CLOSES);
    pidlock()
        .args(["run", "--postgres", &pg.url(), "--conflict-exit-code", "9"])
        .args(["--", "/bin/true"])
        .assert()
        .code(9)
        .stderr(predicates::str::contains(
            "pidlock: true is already running",
        ));
    assert!(defaulted.release().success());
    assert!(held.release().success());
    // Free again: it runs, and passes CMD's status on.
    pidlock()
        .args(["run", "--postgres", &pg.url(), "--name", "cli-conflict"])
        .args(["--", "sh", "-c", "exit 6"])
        .assert()
        .code(6);
}

#[test]
fn status_is_0_held_and_3_free_in_words_and_in_json() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let free = status_json(pg, "cli-status", 3);
    assert_eq!(free["state"], "free");
    assert_eq!(free["lock"]["name"], "cli-status");
    assert_eq!(
        free["lock"]["postgres"],
        format!("PostgreSQL at 127.0.0.1:{}", pg.port)
    );
    pidlock()
        .args(["status", "--postgres", &pg.url(), "--name", "cli-status"])
        .assert()
        .code(3)
        .stdout("free\n");

    let held = hold(pg, "cli-status", &[], UNTIL_STDIN_CLOSES);
    let json = status_json(pg, "cli-status", 0);
    assert_eq!(json["state"], "held");
    assert_eq!(json["pid"], held.wrapper.id());
    assert_eq!(json["host"], host_name());
    assert_eq!(json["command_pid"], held.cmd);
    assert_eq!(
        json["application_name"],
        format!("pidlock {}@{}", held.wrapper.id(), host_name())
    );
    let backend = json["backend_pid"].as_u64().expect("a server process");
    assert_eq!(
        pg.backends(&format!("pidlock {}@", held.wrapper.id())),
        vec![u32::try_from(backend).expect("a PID")]
    );
    // The command is `cat` by now, or the shell just before its exec.
    let command = json["command"].as_array().expect("the command line");
    assert!(
        matches!(command.first().and_then(Value::as_str), Some("cat" | "sh")),
        "{command:?}"
    );
    let output = pidlock()
        .args(["status", "--postgres", &pg.url(), "--name", "cli-status"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let sentence = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        sentence.starts_with(&format!(
            "held by pid {} (host {}, ",
            held.wrapper.id(),
            host_name()
        )),
        "{sentence}"
    );
    assert!(
        sentence.contains(&format!("server process {backend}, ")),
        "{sentence}"
    );
    assert!(
        sentence.contains(&format!("command pid {}", held.cmd)),
        "{sentence}"
    );

    assert!(held.release().success());
    assert_eq!(status_json(pg, "cli-status", 3)["state"], "free");
}

#[test]
fn status_is_4_and_one_line_when_the_server_cannot_be_reached_and_2_without_a_name() {
    let Some(_pg) = pg_support::cluster() else {
        return;
    };
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=5");
    let output = pidlock()
        .args(["status", "--postgres", &url, "--name", "cli-down", "--json"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let json: Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(json["state"], "unknown");
    let error = json["error"].as_str().expect("the error");
    assert!(
        error.contains(&format!("cli-down on PostgreSQL at 127.0.0.1:{port}")),
        "{error}"
    );
    let output = pidlock()
        .args(["status", "--postgres", &url, "--name", "cli-down"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    assert!(one_line(&output.stderr).starts_with("pidlock: "));

    for subcommand in ["status", "kill", "wait"] {
        let output = pidlock()
            .args([subcommand, "--postgres", &url])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert!(
            one_line(&output.stderr).contains("--name NAME"),
            "{subcommand}"
        );
    }
}

#[test]
fn wait_returns_when_the_holder_ends_and_times_out_while_it_holds() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let held = hold(pg, "cli-wait", &[], UNTIL_STDIN_CLOSES);
    let started = Instant::now();
    let output = pidlock()
        .args(["wait", "--postgres", &pg.url(), "--name", "cli-wait"])
        .args(["--timeout", "0.3"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        one_line(&output.stderr),
        format!(
            "pidlock: the lock cli-wait on PostgreSQL at 127.0.0.1:{} is still held after 300ms",
            pg.port
        )
    );

    let mut waiter = Reaped(
        Command::new(PIDLOCK)
            .args(["wait", "--postgres", &pg.url(), "--name", "cli-wait"])
            .args(["--timeout", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start pidlock wait"),
    );
    // The waiter is queued on the server: its session waits for the advisory lock.
    let key = pidlockfile::PgLock::new("", "cli-wait").key() as u64;
    pg.wait_until("the waiter queues for the lock", || {
        pg.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND objsubid = 1 AND classid = {} AND objid = {}",
            key >> 32,
            key & 0xffff_ffff
        )) != "0"
    });
    assert!(waiter.running(), "wait must block while the lock is held");
    assert!(held.release().success());
    assert!(waiter.wait().success(), "wait ends when the holder lets go");
    // It did not keep the lock.
    status_json(pg, "cli-wait", 3);
}

#[test]
fn kill_signals_the_command_of_a_holder_on_this_host() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let mut held = hold(pg, "cli-kill", &[], UNTIL_STDIN_CLOSES);
    let output = pidlock()
        .args(["kill", "--postgres", &pg.url(), "--name", "cli-kill"])
        .args(["--wait", "20"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut lines = text.lines();
    let sent = lines.next().unwrap_or_default();
    assert!(
        sent.starts_with(&format!("pidlock: sent SIGTERM to pid {} (", held.cmd)),
        "{text}"
    );
    assert!(
        sent.ends_with(&format!(
            "which holds the lock cli-kill on PostgreSQL at 127.0.0.1:{}",
            pg.port
        )),
        "{text}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("pidlock: the lock cli-kill on PostgreSQL")),
        "{text}"
    );
    // The command died of the signal, and the wrapper reports that as a shell does.
    assert_eq!(held.wrapper.wait().code(), Some(128 + 15));
    // Nothing holds it now.
    pidlock()
        .args(["kill", "--postgres", &pg.url(), "--name", "cli-kill"])
        .assert()
        .code(1)
        .stderr(format!(
            "pidlock: nothing holds the lock cli-kill on PostgreSQL at 127.0.0.1:{}\n",
            pg.port
        ));
}

/// A psql session named `application_name` that holds the advisory lock `key`, once it says
/// so; the lock lasts until its stdin (returned) is dropped.
fn psql_holding(pg: &Cluster, application_name: &str, key: i64) -> (Reaped, ChildStdin) {
    let mut psql = Reaped(
        Command::new(pg.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-U", "postgres", "-d", "postgres"])
            .arg("-h")
            .arg(&pg.dir)
            .arg("-p")
            .arg(pg.port.to_string())
            .env("PGAPPNAME", application_name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql"),
    );
    let mut to_psql = psql.0.stdin.take().expect("stdin");
    let mut from_psql = BufReader::new(psql.0.stdout.take().expect("stdout"));
    writeln!(to_psql, "SELECT pg_advisory_lock({key}); SELECT 'locked';").expect("write");
    let mut line = String::new();
    while line.trim() != "locked" {
        line.clear();
        assert!(
            from_psql.read_line(&mut line).expect("read") > 0,
            "psql ended before taking the lock"
        );
    }
    (psql, to_psql)
}

#[test]
fn kill_never_signals_a_pid_it_cannot_tie_to_the_session() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    // A session that claims, in its application_name, to be a live process on this host that
    // has nothing to do with the lock: a `sleep`.
    let mut innocent = bystander();
    let key = pidlockfile::PgLock::new("", "cli-kill-untied").key();
    let (mut psql, to_psql) = psql_holding(
        pg,
        &format!("pidlock {}@{}", innocent.id(), host_name()),
        key,
    );
    let output = pidlock()
        .args(["kill", "--postgres", &pg.url(), "--name", "cli-kill-untied"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let line = one_line(&output.stderr);
    assert!(
        line.starts_with(&format!("pidlock: not signalling pid {}: ", innocent.id())),
        "{line}"
    );
    assert!(line.contains("not a `pidlock run` of this lock"), "{line}");
    assert!(innocent.running(), "the bystander must not be signalled");

    // A holder that says it is on another host is not signalled either.
    drop(to_psql);
    psql.wait();
    let (mut elsewhere, to_other) =
        psql_holding(pg, &format!("pidlock {}@not-this-host", innocent.id()), key);
    let output = pidlock()
        .args(["kill", "--postgres", &pg.url(), "--name", "cli-kill-untied"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let line = one_line(&output.stderr);
    assert!(
        line.contains(&format!(
            "is held, but by pid {} on not-this-host, and pidlock signals only processes on \
             this host",
            innocent.id()
        )),
        "{line}"
    );
    assert!(innocent.running(), "the bystander must not be signalled");
    drop(to_other);
    elsewhere.wait();
}

#[test]
fn a_lost_lock_stops_the_command_with_sigterm_and_exits_75() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    // The command says when SIGTERM reaches it, then exits 0: the wrapper's status must still
    // say that the lock was lost.
    let script =
        r#"trap 'echo got-term; kill $! 2>/dev/null; exit 0' TERM; echo "$$"; sleep 300 & wait"#;
    let mut held = hold(pg, "cli-lost", &[], script);
    terminate_session(pg, held.wrapper.id());
    assert_eq!(
        held.stdout.recv_timeout(BOUND).as_deref(),
        Ok("got-term"),
        "the command gets SIGTERM"
    );
    assert_eq!(held.wrapper.wait().code(), Some(LOST));
    let stderr = held.stderr_after_exit();
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    let expected = format!(
        "pidlock: lost the lock cli-lost on PostgreSQL at 127.0.0.1:{} (",
        pg.port
    );
    assert!(stderr[0].starts_with(&expected), "{stderr:?}");
    assert!(
        stderr[0].ends_with(&format!("); stopping sh (pid {})", held.cmd)),
        "{stderr:?}"
    );
    // Someone else can have it now.
    pidlock()
        .args(["run", "--postgres", &pg.url(), "--name", "cli-lost"])
        .args(["--", "true"])
        .assert()
        .code(0);
}

#[test]
fn a_command_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    // An ignored signal stays ignored across exec: `sleep` ignores SIGTERM too.
    let script = r#"trap "" TERM; echo "$$"; exec sleep 300"#;
    let grace = Duration::from_secs(2);
    let mut held = hold(pg, "cli-grace", &["--kill-grace", "2"], script);
    let cmd = held.cmd;
    terminate_session(pg, held.wrapper.id());
    let lost_line = held
        .stderr
        .recv_timeout(BOUND)
        .expect("the wrapper says it lost the lock");
    let told = Instant::now();
    assert!(
        lost_line.starts_with("pidlock: lost the lock cli-grace on PostgreSQL at "),
        "{lost_line}"
    );
    assert!(exits_within(cmd, BOUND), "the command is killed");
    // The SIGKILL comes `grace` after that line was written, which was before it was read.
    assert!(
        told.elapsed() >= grace / 2,
        "SIGKILL came before the grace ran out: {:?}",
        told.elapsed()
    );
    assert_eq!(held.wrapper.wait().code(), Some(LOST));
    assert!(!alive(cmd));
    let rest = held.stderr_after_exit();
    assert_eq!(
        rest,
        [format!(
            "pidlock: sh (pid {cmd}) still runs 2s after SIGTERM; sending SIGKILL"
        )]
    );
}

#[test]
fn fleet_only_options_are_usage_errors_with_a_file() {
    let scratch = common::Scratch::new("pg-usage");
    let path = scratch.path("job.pid");
    let path = path.to_str().expect("utf-8");
    let cases: [&[&str]; 3] = [
        &["run", "--file", path, "--kill-grace", "3", "--", "true"],
        &["status", "--file", path, "--name", "job"],
        &["run", "--postgres", "host=db", "--keep-file", "--", "true"],
    ];
    for args in cases {
        let output = pidlock().args(args).assert().code(2).get_output().clone();
        assert!(
            one_line(&output.stderr).contains("cannot be used with"),
            "{args:?}"
        );
    }
    // Nothing ran, nothing was created.
    assert!(!std::path::Path::new(path).exists());
}

#[test]
fn run_wait_takes_the_lock_when_the_holder_lets_go() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let held = hold(pg, "cli-run-wait", &[], UNTIL_STDIN_CLOSES);
    let mut second = Reaped(
        Command::new(PIDLOCK)
            .args(["run", "--postgres", &pg.url(), "--name", "cli-run-wait"])
            .args(["--wait", "60", "--", "sh", "-c", "echo second ran"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the second pidlock run"),
    );
    let stdout = lines_of(second.0.stdout.take().expect("stdout"));
    let stderr = lines_of(second.0.stderr.take().expect("stderr"));
    let waiting = stderr.recv_timeout(BOUND).expect("a waiting line");
    // The holder is on this host: its command (and start time) are shown too.
    let expected = format!(
        "pidlock: waiting for cli-run-wait (pid {} on {}, since ",
        held.wrapper.id(),
        host_name()
    );
    assert!(waiting.starts_with(&expected), "{waiting}");
    assert!(waiting.ends_with(", limit 1m00s"), "{waiting}");
    let key = pidlockfile::PgLock::new("", "cli-run-wait").key() as u64;
    pg.wait_until("the second run queues for the lock", || {
        pg.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND objsubid = 1 AND classid = {} AND objid = {}",
            key >> 32,
            key & 0xffff_ffff
        )) != "0"
    });
    assert!(second.running(), "it waits while the lock is held");
    assert!(held.release().success());
    assert_eq!(stdout.recv_timeout(BOUND).as_deref(), Ok("second ran"));
    assert!(second.wait().success());
}
