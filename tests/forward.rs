//! `forward = handler`: a second launch hands its arguments to the running instance. Real
//! processes throughout: the `si-forward*` fixtures (see `tests/fixtures/forward_common.rs`),
//! `forward-send` for what a command line cannot carry, and raw clients on the endpoint.
//!
//! The same tests run on Windows against the named pipe (`scripts/test-windows.sh`, under
//! Wine), except what has no Windows counterpart: the socket file's mode and its stale file
//! (a pipe goes with its last handle), a FIFO, a half-closed connection, and another user
//! (Wine runs every process as one user; see the README's platform notes). Arguments travel
//! as UTF-16 there, so the fixtures' hex is of UTF-16LE, and a command line holds at most
//! 32,767 characters.

mod common;
#[path = "fixtures/forward_common.rs"]
#[allow(dead_code)]
mod fixture;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
#[cfg(unix)]
use std::time::Duration;

use common::{PATIENCE, Proc, Scratch};

const FORWARD: &str = env!("CARGO_BIN_EXE_si-forward");
const FORWARD_ASYNC: &str = env!("CARGO_BIN_EXE_si-forward-async");
const FORWARD_QUIET: &str = env!("CARGO_BIN_EXE_si-forward-quiet");
const SEND: &str = env!("CARGO_BIN_EXE_forward-send");

/// How the fixtures report an argument: its bytes (UTF-16LE on Windows) in hex.
fn hex(arg: impl AsRef<OsStr>) -> String {
    fixture::hex(arg.as_ref())
}

/// Raw bytes in hex, for a raw client's frame.
#[cfg(unix)]
fn hex_bytes(bytes: &[u8]) -> String {
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

impl Holder {
    /// Closes the holder's stdin and waits for its end: every stderr line it wrote.
    #[cfg(unix)]
    fn finish(mut self) -> Vec<String> {
        self.proc.close_stdin();
        let (_, rest) = self.proc.finish();
        let mut lines = self.stderr;
        lines.extend(
            rest.iter()
                .map(|l| l.strip_prefix("stderr: ").unwrap_or(l).to_owned()),
        );
        lines
    }

    /// Its stderr lines saying it does not listen: one, with `why`.
    #[cfg(unix)]
    fn said_once_not_listening(self, why: &str) {
        let lines = self.finish();
        let said: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("not listening"))
            .collect();
        assert_eq!(said.len(), 1, "{lines:?}");
        assert!(said[0].contains(why), "{lines:?}");
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

#[cfg(unix)]
fn socket(lock: &Path) -> std::path::PathBuf {
    let mut path = lock.as_os_str().to_owned();
    path.push(".sock");
    std::path::PathBuf::from(path)
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
    assert_eq!(args, [hex("a.txt"), hex("--line=3")]);
    assert_eq!(cwd, hex(std::env::current_dir().unwrap()));
    // The socket sits beside the PID file, the user's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(socket(&lock))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The release removes it with the PID file (on Windows the pipe goes with its handles).
    holder.proc.close_stdin();
    assert!(holder.proc.wait().success());
    assert!(!lock.exists());
    #[cfg(unix)]
    assert!(!socket(&lock).exists());
    // Nobody listens any more.
    let mut send = Proc::spawn({
        let mut c = Command::new(SEND);
        c.arg(&lock).arg("late");
        c
    });
    let line = send.next_report();
    assert!(line.starts_with("err NotListening: "), "{line}");
}

#[test]
fn non_utf8_empty_and_many_arguments_arrive_intact() {
    let scratch = Scratch::new("forward-args");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);

    // Not Unicode: bytes that are not UTF-8 on Unix, an unpaired surrogate on Windows.
    #[cfg(unix)]
    let not_unicode =
        <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff\xfe-not-utf8").to_owned();
    #[cfg(windows)]
    let not_unicode = <OsString as std::os::windows::ffi::OsStringExt>::from_wide(&[
        0xd800,
        u16::from(b'-'),
        u16::from(b'x'),
    ]);
    let odd = vec![
        not_unicode,
        OsString::new(),
        OsString::from("ünïcode with spaces"),
    ];
    let (status, out) = second(FORWARD, &lock, &odd);
    assert!(status.success(), "{out:?}");
    let (_, args, _) = holder.next_message();
    let expected: Vec<String> = odd.iter().map(hex).collect();
    assert_eq!(args, expected);

    let (status, out) = second(FORWARD, &lock, &[]);
    assert!(status.success(), "{out:?}");
    assert_eq!(holder.next_message().1, Vec::<String>::new());

    // A Windows command line holds 32,767 characters: 10,000 one-letter arguments fit.
    let many: Vec<OsString> = (0..10_000u32)
        .map(|i| {
            if cfg!(windows) {
                OsString::from(char::from(b'a' + u8::try_from(i % 26).unwrap()).to_string())
            } else {
                OsString::from(format!("f{i}"))
            }
        })
        .collect();
    let (status, out) = second(FORWARD, &lock, &many);
    assert!(status.success(), "{out:?}");
    let (_, args, _) = holder.next_message();
    assert_eq!(args.len(), 10_000);
    assert!(args.iter().zip(&many).all(|(got, sent)| *got == hex(sent)));
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
    // behaves as without `forward`: the conflict line and the exit code. (Not on Windows,
    // whose command lines stop at 32,767 characters.)
    #[cfg(unix)]
    big_command_line_falls_back_to_the_conflict(&lock);
    // The holder handled neither, and still serves.
    let (status, _) = second(FORWARD, &lock, &os(&["after"]));
    assert!(status.success());
    assert_eq!(holder.next_message().1, [hex("after")]);
}

#[cfg(unix)]
fn big_command_line_falls_back_to_the_conflict(lock: &Path) {
    let big: Vec<OsString> = (0..10)
        .map(|_| OsString::from("y".repeat(120 * 1024)))
        .collect();
    let (status, out) = second(FORWARD, lock, &big);
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
    let mut expected: Vec<String> = (0..50).map(|i| hex(format!("msg-{i}"))).collect();
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
    #[cfg(unix)]
    drop(std::os::unix::net::UnixListener::bind(socket(&lock)).unwrap());
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
    assert_eq!(holder.next_message().1, [hex("q")]);
}

#[test]
fn async_handler_runs_on_the_programs_own_runtime() {
    let scratch = Scratch::new("forward-async");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD_ASYNC, &lock);
    for name in ["one", "two"] {
        let (status, out) = second(FORWARD_ASYNC, &lock, &os(&[name]));
        assert!(status.success(), "{out:?}");
        assert_eq!(holder.next_message().1, [hex(name)]);
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
    // On Windows its pipe went with its process.
    #[cfg(unix)]
    assert!(
        socket(&lock).exists(),
        "SIGKILL leaves the socket file behind"
    );
    // The next launch takes the lock at once and replaces the socket (creates the pipe)...
    let mut next = Holder::start(FORWARD, &lock);
    // ...on which it is reached.
    let (status, out) = second(FORWARD, &lock, &os(&["after-crash"]));
    assert!(status.success(), "{out:?}");
    assert_eq!(next.next_message().1, [hex("after-crash")]);
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

#[cfg(unix)]
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
    assert_eq!(holder.next_message().1, [hex("after")]);
}

/// A raw client of the holder's endpoint: its socket on Unix, its named pipe on Windows.
#[cfg(unix)]
fn raw_client(lock: &Path) -> std::os::unix::net::UnixStream {
    std::os::unix::net::UnixStream::connect(socket(lock)).unwrap()
}

/// A raw client of the holder's endpoint: its socket on Unix, its named pipe on Windows
/// (retried while all its instances are busy: the holder makes the next one after a connect).
#[cfg(windows)]
fn raw_client(lock: &Path) -> std::fs::File {
    const ERROR_PIPE_BUSY: i32 = 231;
    let name = pipe_name(lock);
    let give_up = std::time::Instant::now() + PATIENCE;
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)
        {
            Ok(pipe) => return pipe,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                assert!(std::time::Instant::now() < give_up, "{name} stayed busy");
                thread::yield_now();
            }
            Err(e) => panic!("cannot open {name}: {e}"),
        }
    }
}

/// The holder's pipe, as the library names it: `\\.\pipe\pidlock-VOLUME-INDEX`, from the
/// lock file's volume serial number and file index.
#[cfg(windows)]
fn pipe_name(lock: &Path) -> String {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
    };
    let file = std::fs::File::open(lock).unwrap();
    // SAFETY: a plain C struct, for which all zeroes is a valid value.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open for the call, `info` is live and writable.
    assert_ne!(
        unsafe { GetFileInformationByHandle(file.as_raw_handle(), &raw mut info) },
        0
    );
    let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
    format!(
        r"\\.\pipe\pidlock-{:016x}-{index:016x}",
        info.dwVolumeSerialNumber
    )
}

/// Everything the holder writes back before it hangs up, waiting at most `PATIENCE`.
fn answer(mut raw: impl Read + Send + 'static) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        let _ = tx.send(answer);
    });
    rx.recv_timeout(PATIENCE)
        .expect("the holder neither answered nor hung up")
}

#[test]
fn garbage_and_half_frames_from_raw_clients_are_dropped_and_serving_goes_on() {
    let scratch = Scratch::new("forward-garbage");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);

    // Garbage.
    let mut raw = raw_client(&lock);
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let reply = answer(raw);
    assert_eq!(&reply[..4], b"PLSA");
    assert_eq!(reply[5], 1, "malformed");
    holder.wait_for_log("does not start like a pidlockfile message");

    // A header announcing 2 MiB.
    let mut raw = raw_client(&lock);
    let mut header = b"PLSI\x01".to_vec();
    header.extend_from_slice(&(2u32 << 20).to_le_bytes());
    raw.write_all(&header).unwrap();
    assert_eq!(answer(raw)[5], 2, "too large");
    holder.wait_for_log("over the 1048576-byte limit");

    // Half a frame, then the writer stalls: dropped at the holder's read deadline.
    let mut raw = raw_client(&lock);
    let mut half = b"PLSI\x01".to_vec();
    half.extend_from_slice(&100u32.to_le_bytes());
    half.extend_from_slice(&[0; 10]);
    raw.write_all(&half).unwrap();
    assert_eq!(answer(raw)[5], 5, "too slow");
    holder.wait_for_log("did not arrive within");

    // Half a frame, then the writer closes: its side only on Unix, its whole end on Windows
    // (a pipe has no half-close).
    let mut raw = raw_client(&lock);
    raw.write_all(&half).unwrap();
    #[cfg(unix)]
    {
        raw.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = answer(raw);
    }
    #[cfg(windows)]
    drop(raw);
    holder.wait_for_log("truncated");

    // A body whose lengths lie.
    let mut raw = raw_client(&lock);
    let mut lying = b"PLSI\x01".to_vec();
    lying.extend_from_slice(&12u32.to_le_bytes());
    lying.extend_from_slice(&1u32.to_le_bytes());
    lying.extend_from_slice(&u32::MAX.to_le_bytes());
    lying.extend_from_slice(&0u32.to_le_bytes());
    raw.write_all(&lying).unwrap();
    assert_eq!(answer(raw)[5], 1, "malformed");
    holder.wait_for_log("malformed");

    // A connection that closes at once.
    drop(raw_client(&lock));

    // Still serving, and none of the above reached the handler.
    let (status, out) = second(FORWARD, &lock, &os(&["still-here"]));
    assert!(status.success(), "{out:?}");
    assert_eq!(holder.next_message().1, [hex("still-here")]);
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
    assert_eq!(holder.next_message().1, [hex("next")]);
}

#[cfg(unix)]
#[test]
fn a_holder_leaving_while_a_second_instance_connects_hands_it_the_lock() {
    use std::os::unix::net::UnixListener;
    let scratch = Scratch::new("forward-race");
    let lock = scratch.path("app.pid");
    // Play the holder in this process: hold the lock, accept the connection, then release
    // and hang up without an answer, as a holder exiting at that moment does.
    let mut held = pidlockfile::PidLockFile::new(&lock);
    held.acquire(Some(std::time::Duration::ZERO)).unwrap();
    let listener = UnixListener::bind(socket(&lock)).unwrap();
    let mut second = Proc::spawn(command(FORWARD, &lock, &os(&["racing"])));
    let (conn, _) = listener.accept().unwrap();
    std::fs::remove_file(socket(&lock)).unwrap();
    held.release().unwrap();
    drop(conn);
    // The second instance tries the lock once more, and holds it now.
    let line = second.next_report();
    assert!(line.starts_with("holding "), "{line}");
    assert!(pidlockfile::PidLockFile::new(&lock).is_locked());
    // And listens: a third launch is handed to it.
    let (status, out) = self::second(FORWARD, &lock, &os(&["third"]));
    assert!(status.success(), "{out:?}");
}

/// Runs `exe args` as user and group 65534 (nobody), through setpriv.
#[cfg(unix)]
fn as_nobody(exe: &str, args: &[&OsStr]) -> Proc {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", exe])
        .args(args);
    Proc::spawn(c)
}

#[cfg(unix)]
#[test]
fn another_users_message_is_refused_and_never_handled() {
    pidlock_test_support::require_root!("runs a sender as another user");
    let scratch = Scratch::new("forward-other-user");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    // The socket's mode keeps the other user out altogether.
    let mut other = as_nobody(SEND, &[lock.as_os_str(), OsStr::new("intruder")]);
    let line = other.next_report();
    assert!(line.starts_with("err "), "{line}");
    assert!(!line.starts_with("err NotListening"), "{line}");
    other.wait();
    assert!(line.starts_with("err Untrusted: "), "{line}");
    other.wait();
    // With the mode opened up (as in the instant between bind and chmod), a raw client of
    // another user (the library's sender would not even talk to another user's socket) is
    // refused by the peer's credentials, and the refusal is counted.
    pidlock_test_support::require_program!("python3", "python3");
    std::fs::set_permissions(socket(&lock), std::fs::Permissions::from_mode(0o777)).unwrap();
    // The holder answers before it reads, and may hang up while the frame is still going.
    let client = "import socket, sys\n\
                  c = socket.socket(socket.AF_UNIX)\n\
                  c.connect(sys.argv[1])\n\
                  try:\n    c.sendall(bytes.fromhex(sys.argv[2]))\n\
                  except OSError:\n    pass\n\
                  print('answer', c.recv(64).hex(), flush=True)\n";
    let mut other = as_nobody(
        "/usr/bin/env",
        &[
            OsStr::new("python3"),
            OsStr::new("-c"),
            OsStr::new(client),
            socket(&lock).as_os_str(),
            OsStr::new(&hex_bytes(&frame(1, &["intruder"]))),
        ],
    );
    let line = other.next_report();
    // "PLSA", version 1, status 4 (another user).
    assert!(line.starts_with("answer 504c53410104"), "{line}");
    other.wait();
    let log = holder.wait_for_log("it comes from another user");
    assert!(
        log.contains("of user 65534") && log.contains("1 refused so far"),
        "{log}"
    );
    // The handler saw none of it: the next message it reports is ours.
    let (status, _) = second(FORWARD, &lock, &os(&["mine"]));
    assert!(status.success());
    assert_eq!(holder.next_message().1, [hex("mine")]);
}

/// The SDDL of `descriptor`'s DACL, or of this process's user SID with `sid`.
#[cfg(windows)]
mod sddl {
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use std::ptr;

    use windows_sys::Win32::Foundation::{HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
        GetSecurityInfo, SDDL_REVISION_1, SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, GetTokenInformation, PSECURITY_DESCRIPTOR, TOKEN_QUERY,
        TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    /// Takes a LocalAlloc'd wide string, and frees it.
    fn take(text: *mut u16) -> String {
        let mut n = 0;
        // SAFETY: the string is NUL-terminated; it is read up to the NUL, then freed once.
        unsafe {
            while *text.add(n) != 0 {
                n += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
            LocalFree(text.cast());
            s
        }
    }

    /// The DACL of the kernel object `handle` has open, as SDDL ("D:P(A;;FA;;;S-1-5-...)").
    pub fn dacl(handle: &impl AsRawHandle) -> String {
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `handle` is open; `descriptor` receives a LocalAlloc'd copy, freed below.
        let err = unsafe {
            GetSecurityInfo(
                handle.as_raw_handle(),
                SE_KERNEL_OBJECT,
                DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &raw mut descriptor,
            )
        };
        assert_eq!(err, 0, "GetSecurityInfo failed: {err}");
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: `descriptor` is valid (above); `text` receives a LocalAlloc'd string.
        let ok = unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                descriptor,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &raw mut text,
                ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: allocated by GetSecurityInfo, no longer used.
        unsafe { LocalFree(descriptor) };
        take(text)
    }

    /// This process's user SID ("S-1-5-21-...").
    pub fn current_user() -> String {
        let mut token: HANDLE = ptr::null_mut();
        // SAFETY: the pseudo-handle needs no closing; `token` receives a new handle.
        let ok = unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &raw mut token) };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a handle just returned to us, owned by nothing else.
        let token = unsafe { OwnedHandle::from_raw_handle(token) };
        // u64s, so the TOKEN_USER and the SID in it are aligned.
        let mut buffer = vec![0u64; 128];
        let mut len = 0u32;
        // SAFETY: `buffer` is live, aligned, and 1 KiB long.
        let ok = unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                buffer.as_mut_ptr().cast(),
                1024,
                &raw mut len,
            )
        };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: the call succeeded: the buffer starts with a TOKEN_USER whose SID is in it.
        let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: `sid` is valid; `text` receives a LocalAlloc'd string.
        let ok = unsafe { ConvertSidToStringSidW(sid, &raw mut text) };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        take(text)
    }
}

#[cfg(windows)]
#[test]
fn the_pipe_is_named_from_the_lock_and_open_to_this_user_alone() {
    let scratch = Scratch::new("forward-dacl");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    // The pipe named from the lock file's identity is the holder's.
    let pipe = raw_client(&lock);
    // One entry, allowing everything to this user; protected, so nothing is inherited.
    // (Windows stores GENERIC_ALL mapped to the pipe's FILE_ALL_ACCESS.)
    let dacl = sddl::dacl(&pipe);
    let me = sddl::current_user();
    assert!(
        dacl == format!("D:P(A;;FA;;;{me})") || dacl == format!("D:P(A;;GA;;;{me})"),
        "{dacl}"
    );
    // Our raw connection sends nothing: the holder drops it at its read deadline.
    drop(answer(pipe));
    holder.wait_for_log("did not arrive within");
    let (status, out) = second(FORWARD, &lock, &os(&["after"]));
    assert!(status.success(), "{out:?}");
    assert_eq!(holder.next_message().1, [hex("after")]);
}

#[cfg(unix)]
/// The line a second launch of `name` prints when `pid` holds `lock` and nothing is handed over.
fn conflict(name: &str, pid: u32, lock: &Path) -> String {
    format!(
        "stderr: error: {name} is already running (pid {pid}, lock file {})",
        lock.display()
    )
}

#[cfg(unix)]
/// A directory of mode `mode` inside the test's scratch directory, reachable by every user.
fn shared_dir(scratch: &Scratch, name: &str, mode: u32) -> PathBuf {
    let dir = scratch.path(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(scratch.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[cfg(unix)]
/// Runs `exe` with `args` as user 65534 against `lock`: a second launch of that user.
fn second_as_nobody(exe: &str, lock: &Path, args: &[&str]) -> (ExitStatus, Vec<String>) {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", exe])
        .args(args)
        .env("PIDLOCK_FIXTURE_LOCK", lock);
    let mut proc = Proc::spawn(c);
    proc.close_stdin();
    proc.finish()
}

#[cfg(unix)]
/// Whatever connected to `listener` so far (non-blocking): the bytes each sent.
fn what_reached(listener: &UnixListener) -> Vec<Vec<u8>> {
    listener.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    while let Ok((mut conn, _)) = listener.accept() {
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bytes = Vec::new();
        let _ = conn.read_to_end(&mut bytes);
        got.push(bytes);
    }
    got
}

#[cfg(unix)]
#[test]
fn another_users_socket_at_the_name_never_receives_a_message() {
    pidlock_test_support::require_root!("runs the holder and second launches as another user");
    let scratch = Scratch::new("forward-squat");
    // A sticky directory everybody writes into, like /tmp: another user (root, here) created
    // `app.pid.sock` before the holder (user 65534) started, and listens on it.
    let dir = shared_dir(&scratch, "shared", 0o1777);
    let lock = dir.join("app.pid");
    let squatter = UnixListener::bind(socket(&lock)).unwrap();
    std::fs::set_permissions(socket(&lock), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut holder = {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", FORWARD])
            .env("PIDLOCK_FIXTURE_LOCK", &lock);
        Proc::spawn(c)
    };
    // The holder cannot take the name over, and says so.
    let mut lines = Vec::new();
    let pid: u32 = loop {
        let line = holder.next_line();
        if let Some(pid) = line.strip_prefix("holding ") {
            break pid.parse().unwrap();
        }
        lines.push(line);
    };
    // A second launch of the holder's user: exactly the usual conflict, nothing sent.
    let (status, out) = second_as_nobody(FORWARD, &lock, &["secret-token"]);
    assert_eq!(status.code(), Some(1), "{out:?}");
    assert_eq!(out, [conflict("si-forward", pid, &lock)]);
    let (_, out) = second_as_nobody(SEND, &lock, &[lock.to_str().unwrap(), "secret"]);
    assert!(
        out[0].starts_with("err Untrusted: ") && out[0].contains("belongs to user 0, not to us"),
        "{out:?}"
    );
    assert_eq!(what_reached(&squatter), Vec::<Vec<u8>>::new());
    // The socket file made to look like the sender's own: the listening process is still
    // another user's, and the sender sees it on the connection before it writes a byte.
    rustix::fs::chown(
        socket(&lock),
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let (_, out) = second_as_nobody(SEND, &lock, &[lock.to_str().unwrap(), "secret"]);
    assert!(
        out[0].starts_with("err Untrusted: ") && out[0].contains("runs as user 0"),
        "{out:?}"
    );
    assert_eq!(what_reached(&squatter), [Vec::<u8>::new()]);
    holder.close_stdin();
    let (_, rest) = holder.finish();
    lines.extend(rest);
    let said: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("not listening"))
        .collect();
    assert_eq!(said.len(), 1, "{lines:?}");
    assert!(
        said[0].contains("is a socket of user 0, not ours"),
        "{lines:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_directory_others_may_write_into_is_refused_even_when_it_is_ours() {
    let scratch = Scratch::new("forward-own-0777");
    let dir = shared_dir(&scratch, "open", 0o777);
    let lock = dir.join("app.pid");
    let holder = Holder::start(FORWARD, &lock);
    let pid = holder.pid;
    assert!(!socket(&lock).exists());
    let (status, out) = second(FORWARD, &lock, &os(&["a.txt"]));
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, [conflict("si-forward", pid, &lock)]);
    holder.said_once_not_listening("is writable by other users and not sticky");
}

/// Waits (bounded) until a thread of this process named `pidlock-second*` sleeps reading a
/// Unix socket.
#[cfg(target_os = "linux")]
fn a_listener_thread_is_reading() {
    let until = std::time::Instant::now() + PATIENCE;
    loop {
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let wchan = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            if comm.starts_with("pidlock-second") && wchan.contains("unix_stream_read") {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "the listener never started reading"
        );
        std::thread::yield_now();
    }
}

#[cfg(unix)]
/// A valid version-1 frame for `args` from `pid` (see pidlock/src/forward/frame.rs).
fn frame(pid: u32, args: &[&str]) -> Vec<u8> {
    let mut body = pid.to_le_bytes().to_vec();
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&u32::try_from(args.len()).unwrap().to_le_bytes());
    for a in args {
        body.extend_from_slice(&u32::try_from(a.len()).unwrap().to_le_bytes());
        body.extend_from_slice(a.as_bytes());
    }
    let mut f = b"PLSI\x01".to_vec();
    f.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    f.extend_from_slice(&body);
    f
}

#[test]
#[cfg(target_os = "linux")]
fn a_holder_that_has_begun_its_release_never_answers_accepted() {
    use pidlockfile::{PidLockFile, SecondInstance};
    let scratch = Scratch::new("forward-release-race");
    let lock = scratch.path("app.pid");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut old = PidLockFile::new(&lock).on_second_instance(move |m: SecondInstance| {
        let _ = tx.send(m.args);
    });
    old.acquire(Some(Duration::ZERO)).unwrap();
    assert!(old.listens_for_second_instances());
    // A sender that has connected and sent part of its frame when the release begins.
    let whole = frame(4242, &["late.txt"]);
    let mut sender = UnixStream::connect(socket(&lock)).unwrap();
    sender.set_read_timeout(Some(PATIENCE)).unwrap();
    sender.write_all(&whole[..12]).unwrap();
    a_listener_thread_is_reading();
    old.release().unwrap();
    // Another process could hold the lock now; we take it, to show it.
    let mut next = PidLockFile::new(&lock);
    next.acquire(Some(Duration::ZERO)).unwrap();
    sender.write_all(&whole[12..]).unwrap();
    let mut answer = Vec::new();
    let _ = sender.read_to_end(&mut answer);
    // No answer at all: the sender sees the holder gone, and tries the lock again.
    assert_eq!(answer, Vec::<u8>::new());
    assert!(rx.try_recv().is_err());
    next.release().unwrap();
}

#[cfg(unix)]
#[test]
fn a_sender_in_another_pid_namespace_is_handed_over_by_its_user() {
    pidlock_test_support::require_root!("makes a new PID namespace");
    pidlock_test_support::require_program!("unshare", "util-linux");
    let scratch = Scratch::new("forward-pidns");
    let lock = scratch.path("app.pid");
    // The holder in a PID namespace of its own (as in a sandbox sharing the lock's directory):
    // `SO_PEERCRED` tells it PID 0 for senders outside, and their user.
    let mut holder = {
        let mut c = Command::new("unshare");
        c.args(["-pf", FORWARD]).env("PIDLOCK_FIXTURE_LOCK", &lock);
        Proc::spawn(c)
    };
    let line = holder.next_report();
    assert!(line.starts_with("holding "), "{line}");
    let (status, out) = second(FORWARD, &lock, &os(&["from-outside"]));
    assert!(status.success(), "{out:?}");
    let line = holder.next_report();
    // The PID is the one the sender gave in its message.
    assert!(
        line.starts_with("got ") && line.ends_with(&hex_bytes(b"from-outside")),
        "{line}"
    );
    holder.close_stdin();
    let (_, rest) = holder.finish();
    assert!(!rest.iter().any(|l| l.contains("dropped")), "{rest:?}");
}

#[cfg(unix)]
#[test]
fn what_is_not_a_stale_socket_of_ours_is_never_removed() {
    let scratch = Scratch::new("forward-clobber");
    // A lock path without `.pid`: `app.sock` is a common name for a program's own socket.
    let lock = scratch.path("app");
    let service = UnixListener::bind(socket(&lock)).unwrap();
    let notes = scratch.path("notes.pid");
    std::fs::write(socket(&notes), "some user data").unwrap();
    let linked = scratch.path("linked.pid");
    std::os::unix::fs::symlink(scratch.path("elsewhere"), socket(&linked)).unwrap();
    for (lock, why) in [
        (&lock, "is a live socket another process listens on"),
        (&notes, "exists and is not a socket (a regular file)"),
        (&linked, "exists and is not a socket (a symlink)"),
    ] {
        Holder::start(FORWARD, lock).said_once_not_listening(why);
    }
    // The service still listens on its own socket, and the data is still there.
    drop(UnixStream::connect(socket(&lock)).unwrap());
    assert_eq!(
        what_reached(&service).len(),
        2,
        "our probe, then this connection"
    );
    assert_eq!(
        std::fs::read_to_string(socket(&notes)).unwrap(),
        "some user data"
    );
    assert!(
        std::fs::symlink_metadata(socket(&linked))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[cfg(unix)]
#[test]
fn a_holder_that_cannot_listen_leaves_the_second_launch_exactly_as_without_forward() {
    let scratch = Scratch::new("forward-long-path");
    // `<lock>.sock` over the socket-name limit: the holder cannot listen, says so once.
    let lock = scratch.path(&format!("{}.pid", "x".repeat(110)));
    for exe in [FORWARD, FORWARD_QUIET] {
        let holder = Holder::start(exe, &lock);
        let pid = holder.pid;
        let (status, out) = second(exe, &lock, &os(&["a.txt"]));
        assert_eq!(status.code(), Some(1), "{out:?}");
        let name = Path::new(exe).file_name().unwrap().to_str().unwrap();
        assert_eq!(out, [conflict(name, pid, &lock)]);
        holder.said_once_not_listening("cannot bind");
    }
}

#[cfg(unix)]
#[test]
fn a_refusal_by_a_listening_holder_gets_a_note_unless_quiet() {
    let scratch = Scratch::new("forward-refusal-note");
    let lock = scratch.path("app.pid");
    let mut held = pidlockfile::PidLockFile::new(&lock);
    held.acquire(Some(Duration::ZERO)).unwrap();
    // A listener of ours that refuses every message ("could not read it").
    let listener = UnixListener::bind(socket(&lock)).unwrap();
    let refuser = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"PLSA\x01\x01").unwrap();
            conn.write_all(&std::process::id().to_le_bytes()).unwrap();
        }
    });
    let me = std::process::id();
    let (status, out) = second(FORWARD, &lock, &os(&["a"]));
    assert_eq!(status.code(), Some(1));
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out[0].starts_with("stderr: note: si-forward could not hand its arguments")
            && out[0].contains("refused"),
        "{out:?}"
    );
    assert_eq!(out[1], conflict("si-forward", me, &lock));
    let (status, out) = second(FORWARD_QUIET, &lock, &os(&["a"]));
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, [conflict("si-forward-quiet", me, &lock)]);
    refuser.join().unwrap();
    held.release().unwrap();
}

#[cfg(unix)]
#[test]
fn silent_connections_do_not_hold_a_real_sender_back() {
    let scratch = Scratch::new("forward-silent");
    let lock = scratch.path("app.pid");
    let mut holder = Holder::start(FORWARD, &lock);
    // Five same-user connections that send nothing: read one at a time, they would cost the
    // listener 5 x 1 s, past the sender's 2 s bound.
    let silent: Vec<_> = (0..5)
        .map(|_| UnixStream::connect(socket(&lock)).unwrap())
        .collect();
    let (status, out) = second(FORWARD, &lock, &os(&["real"]));
    assert!(status.success(), "{out:?}");
    assert_eq!(holder.next_message().1, [hex_bytes(b"real")]);
    drop(silent);
}

#[test]
#[cfg(target_os = "linux")]
fn an_async_handler_handles_every_message_accepted_before_the_body_returned() {
    use pidlockfile::__private::{Options, acquire, forward_async};
    let scratch = Scratch::new("forward-async-finish");
    let lock = scratch.path("app.pid");
    let (tx, rx) = std::sync::mpsc::channel();
    let (forward, pump) = forward_async(move |m: pidlockfile::SecondInstance| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(m.args);
        }
    });
    let options = Options {
        path: Some(lock.clone()),
        timeout: Some(Duration::ZERO),
        quiet: true,
        program: Some("forward-test"),
        fleet: None,
        forward,
    };
    let guard = acquire(&options).unwrap();
    // A sender halfway through its frame while the program's body returns.
    let whole = frame(4242, &["late.txt"]);
    let mut sender = UnixStream::connect(socket(&lock)).unwrap();
    sender.set_read_timeout(Some(PATIENCE)).unwrap();
    sender.write_all(&whole[..12]).unwrap();
    a_listener_thread_is_reading();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(pump.serve_while(async {}));
    // The lock is still held (the guard is not dropped yet) when the rest arrives: the body
    // has returned, so nothing may be accepted any more, or it would never be handled.
    sender.write_all(&whole[12..]).unwrap();
    let mut answer = [0; 10];
    let answered = sender.read_exact(&mut answer).is_ok();
    drop(guard);
    assert!(
        !answered || answer[5] != 0,
        "accepted after the body returned, handled: {:?}",
        rx.try_recv()
    );
    assert!(rx.try_recv().is_err());
}
