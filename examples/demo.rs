//! The whole story in one terminal: a first instance runs, a second is refused, and once the
//! first has exited a new one gets in.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The demo starts copies of itself as the "instances" (with `--instance`) and narrates; each
//! instance is an ordinary `#[single_instance]` main, in `mod app` below.
#![warn(clippy::pedantic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

mod app {
    use std::io::BufRead;

    /// The program itself. A conflict prints one line and exits with status 1.
    #[pidlock::single_instance(path = super::lock_path())]
    pub fn main() {
        println!("running as pid {}", std::process::id());
        // Run until the narrator says stop (or closes our stdin).
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        println!("done, releasing the lock");
    }
}

fn lock_path() -> std::path::PathBuf {
    pidlock::default_path("pidlock-demo")
}

fn main() {
    if std::env::args().any(|a| a == "--instance") {
        app::main();
        return;
    }
    if let Err(e) = narrate() {
        eprintln!("demo failed: {e}");
        std::process::exit(2);
    }
}

struct Instance {
    name: &'static str,
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Instance {
    fn start(name: &'static str) -> std::io::Result<Instance> {
        println!("[demo] starting instance {name}");
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--instance")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        Ok(Instance {
            name,
            child,
            lines: BufReader::new(stdout),
        })
    }

    /// Echoes the instance's next line of output; `None` once it has closed its output.
    fn echo_line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        if self.lines.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_owned();
        println!("[{}] {line}", self.name);
        Ok(Some(line))
    }

    fn stop(mut self) -> std::io::Result<()> {
        println!("[demo] stopping instance {}", self.name);
        if let Some(mut stdin) = self.child.stdin.take() {
            writeln!(stdin, "stop")?;
        }
        while self.echo_line()?.is_some() {}
        let status = self.child.wait()?;
        println!("[demo] instance {} exited: {status}", self.name);
        Ok(())
    }
}

fn narrate() -> std::io::Result<()> {
    println!("[demo] lock file: {}", lock_path().display());

    let mut first = Instance::start("#1")?;
    first.echo_line()?; // "running as pid N": #1 holds the lock now

    println!("[demo] starting instance #2 while #1 runs (its error goes to stderr):");
    let second = Command::new(std::env::current_exe()?)
        .arg("--instance")
        .stdin(Stdio::null())
        .status()?;
    println!("[demo] instance #2 was refused: {second}");

    first.stop()?;

    let mut third = Instance::start("#3")?;
    third.echo_line()?;
    third.stop()?;
    println!("[demo] #3 got in once #1 had exited. That is the whole story.");
    Ok(())
}
