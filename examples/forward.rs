//! A second launch hands its arguments to the running instance, as an editor opens a file in
//! the window that is already open.
//!
//! ```text
//! cargo run --example forward -- a.txt      # the first copy: runs for 30 s, printing what it gets
//! cargo run --example forward -- b.txt      # in another terminal: handed over, exits 0 at once
//! ```
//!
//! The first copy prints `opening ["b.txt"] (from pid 4243, in /home/me)`; the second prints
//! `handed to the running forward (pid 4242)` and exits with status 0. Run without arguments,
//! the example shows both sides by itself: it starts a second copy of itself with `b.txt`, waits
//! for the message, and exits.
#![warn(clippy::pedantic)]

use std::process::Command;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pidlockfile::SecondInstance;

/// Runs in the first copy, on pidlockfile's listener thread, once per second launch.
fn open(SecondInstance { args, cwd, pid, .. }: SecondInstance) {
    println!("opening {args:?} (from pid {pid}, in {})", cwd.display());
    if let Some(opened) = OPENED.get() {
        let _ = opened.lock().map(|tx| tx.send(()));
    }
}

/// Tells `main` that a message was handled (the self-demonstration waits for one).
static OPENED: OnceLock<Mutex<Sender<()>>> = OnceLock::new();

#[pidlockfile::single_instance(path = std::env::temp_dir().join("pidlock-example-forward.pid"), forward = open)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("running as pid {}, opening {args:?}", std::process::id());
    let (tx, rx) = channel();
    let _ = OPENED.set(Mutex::new(tx));
    if args.is_empty() {
        show_both_sides(&rx);
    } else {
        // Serve second launches for a while.
        std::thread::sleep(Duration::from_secs(30));
    }
}

/// Launches a second copy of this program, which hands `b.txt` over to us and exits 0.
fn show_both_sides(opened: &Receiver<()>) {
    let exe = std::env::current_exe().expect("the running program's path");
    let status = Command::new(exe)
        .arg("b.txt")
        .status()
        .expect("start a second copy");
    println!("the second copy exited with {status}");
    opened
        .recv_timeout(Duration::from_secs(10))
        .expect("the second copy's arguments arrive");
}
