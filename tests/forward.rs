//! `forward = handler`: a second launch hands its arguments to the running instance. Real
//! processes throughout: the `si-forward*` fixtures (see `tests/fixtures/forward_common.rs`),
//! `forward-send` for what a command line cannot carry, and raw clients on the socket.
#![cfg(unix)]

mod common;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use common::{PATIENCE, Proc, Scratch};

const FORWARD: &str = env!("CARGO_BIN_EXE_si-forward");
const FORWARD_ASYNC: &str = env!("CARGO_BIN_EXE_si-forward-async");
const FORWARD_QUIET: &str = env!("CARGO_BIN_EXE_si-forward-quiet");
const SEND: &str = env!("CARGO_BIN_EXE_forward-send");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn command(exe: &str, lock: &Path, args: &[OsString]) -> Command {
    let mut command = Command::new(exe);
    command.args(args).env("PIDLOCK_FIXTURE_LOCK", lock);
    command
}

/// A fixture that has reported holding the lock, with its stderr lines kept aside.
struct Holder {
    proc: Proc,
    pid: u32,
    stderr: Vec<String>,
}

impl Holder {
    fn start(exe: &str, lock: &Path) -> Holder {
        let mut proc = Proc::spawn(command(exe, lock, &[]));
        let mut stderr = Vec::new();
        loop {
            let line = proc.next_line();
            if let Some(pid) = line.strip_prefix("holding ") {
                let pid = pid.parse().unwrap();
                return Holder { proc, pid, stderr };
            }
            stderr.push(line);
        }
    }

    /// The next stdout line, keeping stderr lines aside.
    fn next(&mut self) -> String {
        loop {
            let line = self.proc.next_line();
            match line.strip_prefix("stderr: ") {
                Some(err) => self.stderr.push(err.to_owned()),
                None => return line,
            }
        }
    }

    /// The next message the handler reported: (sender's pid, args).
    fn next_message(&mut self) -> (u32, Vec<String>, String) {
        let line = self.next();
        let mut fields = line
            .strip_prefix("got ")
            .unwrap_or_else(|| panic!("expected a message, got {line}"))
            .split(' ');
        let pid = fields.next().unwrap().parse().unwrap();
        let count: usize = fields.next().unwrap().parse().unwrap();
        let cwd = fields.next().unwrap().to_owned();
        let args: Vec<String> = match fields.next().unwrap() {
            "" => Vec::new(),
            list => list.split(',').map(str::to_owned).collect(),
        };
        assert_eq!(args.len(), count, "{line}");
        (pid, args, cwd)
    }

    /// Waits (bounded) for a stderr line containing `text`.
    fn wait_for_log(&mut self, text: &str) -> String {
        loop {
            if let Some(line) = self.stderr.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let line = self.proc.next_line();
            match line.strip_prefix("stderr: ") {
                Some(err) => self.stderr.push(err.to_owned()),
                None => panic!("unexpected report while waiting for a log line: {line}"),
            }
        }
    }
}

/// Runs a second instance to its end (bounded): its status and its output lines.
fn second(exe: &str, lock: &Path, args: &[OsString]) -> (ExitStatus, Vec<String>) {
    let mut proc = Proc::spawn(command(exe, lock, args));
    proc.close_stdin();
    proc.finish()
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn socket(lock: &Path) -> PathBuf {
    let mut path = lock.as_os_str().to_owned();
    path.push(".sock");
    PathBuf::from(path)
}

#[test]
fn second_copy_hands_its_arguments_to_the_first_and_exits_0() {
    let scratch = Scratch::new("forward-basic");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    let (status, out) = second(FORWARD, &lock, &os(&["a.txt", "--line=3"]));
    assert!(status.success(), "{status}: {out:?}");
    assert_eq!(
        out,
        [format!(
            "stderr: handed to the running si-forward (pid {})",
            holder.pid
        )]
    );
    let (pid, args, cwd) = holder.next_message();
    assert_ne!(pid, holder.pid);
    assert_eq!(args, [hex(b"a.txt"), hex(b"--line=3")]);
    assert_eq!(
        cwd,
        hex(std::env::current_dir().unwrap().as_os_str().as_bytes())
    );
    // The socket sits beside the PID file, the user's alone.
    let mode = std::fs::metadata(socket(&lock))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The release removes it with the PID file.
    holder.proc.close_stdin();
    assert!(holder.proc.wait().success());
    assert!(!lock.exists());
    assert!(!socket(&lock).exists());
}

#[test]
fn non_utf8_empty_and_many_arguments_arrive_intact() {
    let scratch = Scratch::new("forward-args");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);

    let odd = vec![
        OsStr::from_bytes(b"\xff\xfe-not-utf8").to_owned(),
        OsString::new(),
        OsString::from("ünïcode with spaces"),
    ];
    let (status, out) = second(FORWARD, &lock, &odd);
    assert!(status.success(), "{out:?}");
    let (_, args, _) = holder.next_message();
    let expected: Vec<String> = odd.iter().map(|a| hex(a.as_bytes())).collect();
    assert_eq!(args, expected);

    let (status, out) = second(FORWARD, &lock, &[]);
    assert!(status.success(), "{out:?}");
    assert_eq!(holder.next_message().1, Vec::<String>::new());

    let many: Vec<OsString> = (0..10_000)
        .map(|i| OsString::from(format!("f{i}")))
        .collect();
    let (status, out) = second(FORWARD, &lock, &many);
    assert!(status.success(), "{out:?}");
    let (_, args, _) = holder.next_message();
    assert_eq!(args.len(), 10_000);
    assert!(
        args.iter()
            .zip(&many)
            .all(|(got, sent)| *got == hex(sent.as_bytes()))
    );
}

#[test]
fn a_message_over_one_mebibyte_is_refused_with_a_clear_error() {
    let scratch = Scratch::new("forward-large");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    // 2 MiB: more than a command line can carry, so through the library.
    let mut send = Proc::spawn({
        let mut c = Command::new(SEND);
        c.arg(&lock).args(["--big", &(2 << 20).to_string()]);
        c
    });
    let line = send.next_report();
    assert!(line.starts_with("err TooLarge: "), "{line}");
    assert!(line.contains("over the 1048576-byte limit"), "{line}");
    assert!(send.wait().success());
    // A guarded program whose own command line is over the limit (1.2 MiB) says why, then
    // behaves as without `forward`: the conflict line and the exit code.
    let big: Vec<OsString> = (0..10)
        .map(|_| OsString::from("y".repeat(120 * 1024)))
        .collect();
    let (status, out) = second(FORWARD, &lock, &big);
    assert_eq!(status.code(), Some(1), "{out:?}");
    assert!(
        out.iter()
            .any(|l| l.contains("could not hand its arguments") && l.contains("limit")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.contains("si-forward is already running")),
        "{out:?}"
    );
    // The holder handled neither, and still serves.
    let (status, _) = second(FORWARD, &lock, &os(&["after"]));
    assert!(status.success());
    assert_eq!(holder.next_message().1, [hex(b"after")]);
}

#[test]
fn fifty_second_instances_at_once_are_each_delivered_exactly_once() {
    let scratch = Scratch::new("forward-fifty");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    let mut senders: Vec<Proc> = (0..50)
        .map(|i| {
            let mut p = Proc::spawn(command(
                FORWARD,
                &lock,
                &[OsString::from(format!("msg-{i}"))],
            ));
            p.close_stdin();
            p
        })
        .collect();
    for (i, sender) in senders.iter_mut().enumerate() {
        let (status, out) = sender.finish();
        assert!(status.success(), "sender {i}: {status} {out:?}");
    }
    let mut got: Vec<String> = (0..50).map(|_| holder.next_message().1.join(",")).collect();
    got.sort();
    let mut expected: Vec<String> = (0..50)
        .map(|i| hex(format!("msg-{i}").as_bytes()))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    // Nothing more arrives: the holder exits on EOF, and its output ends without messages.
    holder.proc.close_stdin();
    let (status, rest) = holder.proc.finish();
    assert!(status.success());
    assert!(rest.iter().all(|l| !l.starts_with("got ")), "{rest:?}");
}

#[test]
fn a_holder_that_does_not_listen_gets_exactly_the_usual_conflict() {
    let scratch = Scratch::new("forward-not-listening");
    let lock = scratch.path("app.pid");
    // si-plain's lock has no listener; a stale socket from some crash lies beside it.
    let mut plain = Proc::spawn(command(env!("CARGO_BIN_EXE_si-plain"), &lock, &[]));
    let line = plain.next_report();
    let pid: u32 = line.strip_prefix("running ").unwrap().parse().unwrap();
    drop(UnixListener::bind(socket(&lock)).unwrap());
    let (status, out) = second(FORWARD, &lock, &os(&["a.txt"]));
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        out,
        [format!(
            "stderr: error: si-forward is already running (pid {pid}, lock file {})",
            lock.display()
        )]
    );
}

#[test]
fn quiet_hands_over_without_a_word() {
    let scratch = Scratch::new("forward-quiet");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD_QUIET, &lock);
    let (status, out) = second(FORWARD_QUIET, &lock, &os(&["q"]));
    assert!(status.success());
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(holder.next_message().1, [hex(b"q")]);
}

#[test]
fn async_handler_runs_on_the_programs_own_runtime() {
    let scratch = Scratch::new("forward-async");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD_ASYNC, &lock);
    for name in ["one", "two"] {
        let (status, out) = second(FORWARD_ASYNC, &lock, &os(&[name]));
        assert!(status.success(), "{out:?}");
        assert_eq!(holder.next_message().1, [hex(name.as_bytes())]);
        // current_thread runtime: the runtime's thread is main's.
        assert_eq!(holder.next(), "handled on main");
    }
}

#[test]
fn a_killed_holders_socket_never_stops_the_next_launch() {
    let scratch = Scratch::new("forward-stale");
    let lock = scratch.path("app.pid");
    let mut first = Holder::start(FORWARD, &lock);
    first.proc.kill();
    assert!(
        socket(&lock).exists(),
        "SIGKILL leaves the socket file behind"
    );
    // The next launch takes the lock at once and replaces the socket...
    let mut next = Holder::start(FORWARD, &lock);
    // ...on which it is reached.
    let (status, out) = second(FORWARD, &lock, &os(&["after-crash"]));
    assert!(status.success(), "{out:?}");
    assert_eq!(next.next_message().1, [hex(b"after-crash")]);
}

#[test]
fn a_blocked_handler_makes_the_next_sender_fall_back_to_the_conflict() {
    let scratch = Scratch::new("forward-blocked");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    let (status, _) = second(FORWARD, &lock, &os(&["block"]));
    assert!(status.success(), "the blocking message itself was taken");
    holder.next_message();
    assert_eq!(holder.next(), "blocking");
    // The next one gets no answer within its bound, and says what it says without forward.
    let (status, out) = second(FORWARD, &lock, &os(&["late"]));
    assert_eq!(status.code(), Some(1), "{out:?}");
    assert_eq!(
        out,
        [format!(
            "stderr: error: si-forward is already running (pid {}, lock file {})",
            holder.pid,
            lock.display()
        )]
    );
    // Through the library the sender learns it timed out.
    let mut send = Proc::spawn({
        let mut c = Command::new(SEND);
        c.arg(&lock).args(["--timeout-ms", "300", "late-too"]);
        c
    });
    let line = send.next_report();
    assert!(line.starts_with("err TimedOut: "), "{line}");
}

#[test]
fn a_sender_that_gave_up_is_never_handled_behind_its_back() {
    let scratch = Scratch::new("forward-gave-up");
    let lock = scratch.path("app.pid");
    let fifo = scratch.path("resume");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut holder = Holder::start(FORWARD, &lock);
    let (status, _) = second(
        FORWARD,
        &lock,
        &[OsString::from("pause"), fifo.clone().into()],
    );
    assert!(status.success());
    holder.next_message();
    assert_eq!(holder.next(), "pausing");
    // This one times out while the handler is busy, and reports the conflict.
    let (status, _) = second(FORWARD, &lock, &os(&["gave-up"]));
    assert_eq!(status.code(), Some(1));
    // Let the handler return: the listener then meets the abandoned connection, whose frame
    // it can still read, but whose sender has gone.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    assert_eq!(holder.next(), "resumed");
    holder.wait_for_log("its sender left before it was accepted");
    let (status, _) = second(FORWARD, &lock, &os(&["after"]));
    assert!(status.success());
    // The next message handled is the one after: the abandoned one never was.
    assert_eq!(holder.next_message().1, [hex(b"after")]);
}

#[test]
fn garbage_and_half_frames_from_raw_clients_are_dropped_and_serving_goes_on() {
    let scratch = Scratch::new("forward-garbage");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    let sock = socket(&lock);
    let answer = |stream: &mut UnixStream| {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    };

    // Garbage.
    let mut raw = UnixStream::connect(&sock).unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let reply = answer(&mut raw);
    assert_eq!(&reply[..4], b"PLSA");
    assert_eq!(reply[5], 1, "malformed");
    holder.wait_for_log("does not start like a pidlock message");

    // A header announcing 2 MiB.
    let mut raw = UnixStream::connect(&sock).unwrap();
    let mut header = b"PLSI\x01".to_vec();
    header.extend_from_slice(&(2u32 << 20).to_le_bytes());
    raw.write_all(&header).unwrap();
    assert_eq!(answer(&mut raw)[5], 2, "too large");
    holder.wait_for_log("over the 1048576-byte limit");

    // Half a frame, then the writer stalls: dropped at the holder's read deadline.
    let mut raw = UnixStream::connect(&sock).unwrap();
    let mut half = b"PLSI\x01".to_vec();
    half.extend_from_slice(&100u32.to_le_bytes());
    half.extend_from_slice(&[0; 10]);
    raw.write_all(&half).unwrap();
    assert_eq!(answer(&mut raw)[5], 5, "too slow");
    holder.wait_for_log("did not arrive within");

    // Half a frame, then the writer closes.
    let mut raw = UnixStream::connect(&sock).unwrap();
    raw.write_all(&half).unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = answer(&mut raw);
    holder.wait_for_log("truncated");

    // A body whose lengths lie.
    let mut raw = UnixStream::connect(&sock).unwrap();
    let mut lying = b"PLSI\x01".to_vec();
    lying.extend_from_slice(&12u32.to_le_bytes());
    lying.extend_from_slice(&1u32.to_le_bytes());
    lying.extend_from_slice(&u32::MAX.to_le_bytes());
    lying.extend_from_slice(&0u32.to_le_bytes());
    raw.write_all(&lying).unwrap();
    assert_eq!(answer(&mut raw)[5], 1, "malformed");
    holder.wait_for_log("malformed");

    // A connection that closes at once.
    drop(UnixStream::connect(&sock).unwrap());

    // Still serving, and none of the above reached the handler.
    let (status, out) = second(FORWARD, &lock, &os(&["still-here"]));
    assert!(status.success(), "{out:?}");
    assert_eq!(holder.next_message().1, [hex(b"still-here")]);
}

#[test]
fn a_panicking_handler_leaves_the_listener_serving() {
    let scratch = Scratch::new("forward-panic");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    let (status, _) = second(FORWARD, &lock, &os(&["panic"]));
    assert!(status.success());
    holder.next_message();
    holder.wait_for_log("handler of lock file");
    let (status, _) = second(FORWARD, &lock, &os(&["next"]));
    assert!(status.success());
    assert_eq!(holder.next_message().1, [hex(b"next")]);
}

#[test]
fn a_holder_leaving_while_a_second_instance_connects_hands_it_the_lock() {
    let scratch = Scratch::new("forward-race");
    let lock = scratch.path("app.pid");
    // Play the holder in this process: hold the lock, accept the connection, then release
    // and hang up without an answer, as a holder exiting at that moment does.
    let mut held = pidlock::PidLockFile::new(&lock);
    held.acquire(Some(Duration::ZERO)).unwrap();
    let listener = UnixListener::bind(socket(&lock)).unwrap();
    let mut second = Proc::spawn(command(FORWARD, &lock, &os(&["racing"])));
    let (conn, _) = listener.accept().unwrap();
    std::fs::remove_file(socket(&lock)).unwrap();
    held.release().unwrap();
    drop(conn);
    // The second instance tries the lock once more, and holds it now.
    let line = second.next_report();
    assert!(line.starts_with("holding "), "{line}");
    assert!(pidlock::PidLockFile::new(&lock).is_locked());
    // And listens: a third launch is handed to it.
    let (status, out) = self::second(FORWARD, &lock, &os(&["third"]));
    assert!(status.success(), "{out:?}");
}

/// Runs `exe args` as user and group 65534 (nobody), through setpriv.
fn as_nobody(exe: &str, args: &[&OsStr]) -> Proc {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", exe])
        .args(args);
    Proc::spawn(c)
}

#[test]
fn another_users_message_is_refused_and_never_handled() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: dropping to another user needs root");
        return;
    }
    let scratch = Scratch::new("forward-other-user");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    // The socket's mode keeps the other user out altogether.
    let mut other = as_nobody(SEND, &[lock.as_os_str(), OsStr::new("intruder")]);
    let line = other.next_report();
    assert!(line.starts_with("err "), "{line}");
    assert!(!line.starts_with("err NotListening"), "{line}");
    other.wait();
    // With the mode opened up (as in the instant between bind and chmod), the peer's
    // credentials refuse it, and the refusal is counted.
    std::fs::set_permissions(socket(&lock), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut other = as_nobody(SEND, &[lock.as_os_str(), OsStr::new("intruder")]);
    let line = other.next_report();
    assert!(
        line.starts_with("err Refused: ") && line.contains("another user"),
        "{line}"
    );
    other.wait();
    let log = holder.wait_for_log("it comes from another user");
    assert!(
        log.contains("of user 65534") && log.contains("1 refused so far"),
        "{log}"
    );
    // The handler saw none of it: the next message it reports is ours.
    let (status, _) = second(FORWARD, &lock, &os(&["mine"]));
    assert!(status.success());
    assert_eq!(holder.next_message().1, [hex(b"mine")]);
}
