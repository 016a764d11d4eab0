//! Waiting for another instance, up to a timeout. The example starts a copy of itself that holds
//! the lock for a moment; this process then waits for it (saying so on stderr) and gets in as
//! soon as the copy lets go: it is woken by the release, not by polling.
//!
//! ```text
//! cargo run --example wait_timeout
//! ```
#![warn(clippy::pedantic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lock_path() -> std::path::PathBuf {
    std::env::temp_dir().join("pidlock-example-wait.pid")
}

mod app {
    /// Waits up to 10 s for the lock, then runs.
    #[pidlockfile::single_instance(path = super::lock_path(), timeout = 10)]
    pub fn main(started: std::time::Instant) {
        println!("got the lock after {:?}", started.elapsed());
    }
}

fn main() -> std::io::Result<()> {
    if std::env::args().any(|a| a == "--hold") {
        // The other instance: hold the lock for half a second.
        let _guard =
            pidlockfile::PidLockFile::lock(lock_path(), None).map_err(std::io::Error::other)?;
        println!("holding");
        std::thread::sleep(Duration::from_millis(500));
        return Ok(());
    }
    let mut holder = Command::new(std::env::current_exe()?)
        .arg("--hold")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = holder.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    println!("another instance (pid {}) is {}", holder.id(), line.trim());
    app::main(Instant::now());
    holder.wait()?;
    Ok(())
}
