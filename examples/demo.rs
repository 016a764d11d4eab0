//! The whole story in one terminal: a first instance runs, a second is refused, and once the
//! first has exited a new one gets in.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The demo starts copies of itself as the "instances" (with `--instance PATH`) and narrates;
//! each instance is an ordinary `#[single_instance]` main, in `mod app` below. The lock lives
//! where a program's lock lives by default ([`PidLockFile::for_program`]: `$XDG_RUNTIME_DIR`, or
//! a private directory in the temp dir that is made when missing), so the demo runs as any
//! user, with or without `XDG_RUNTIME_DIR`. The narrator checks how each instance ended: a
//! refusal must be the one-line "already running" refusal with exit status 1, and anything else
//! is reported as the error it is.
#![warn(clippy::pedantic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use pidlockfile::PidLockFile;

/// `println!`, except that a closed stdout (`demo | head -1`) ends the demo quietly instead of
/// panicking; the instances then see their stdin close, and exit.
macro_rules! say {
    ($($arg:tt)*) => {
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    };
}

mod app {
    use std::io::{BufRead, Write};

    /// The program itself. A conflict prints one line and exits with status 1. Its output goes
    /// to the narrator; if the narrator has gone, there is no one to tell, and `main` still
    /// returns normally, so that the lock is let go.
    #[pidlockfile::single_instance(path = super::instance_path())]
    pub fn main() {
        let _ = writeln!(std::io::stdout(), "running as pid {}", std::process::id());
        // Run until the narrator says stop (or closes our stdin).
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = writeln!(std::io::stdout(), "done, releasing the lock");
    }
}

/// The lock file the narrator gave this instance on its command line.
fn instance_path() -> PathBuf {
    std::env::args_os()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--instance") {
        app::main();
        return;
    }
    if let Err(e) = narrate() {
        eprintln!("[demo] failed: {e}");
        std::process::exit(2);
    }
}

/// What went wrong, in the narrator's words.
type Outcome<T> = Result<T, String>;

struct Instance {
    name: &'static str,
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl Instance {
    fn start(name: &'static str, path: &Path) -> Outcome<Instance> {
        say!("[demo] starting instance {name}");
        let mut child = instance_command(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start instance {name}: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| format!("instance {name} has no stdout"))?;
        Ok(Instance {
            name,
            child,
            lines: BufReader::new(stdout),
        })
    }

    /// Echoes the instance's next line of output; `None` once it has closed its output.
    fn echo_line(&mut self) -> Outcome<Option<String>> {
        let mut line = String::new();
        let read = self
            .lines
            .read_line(&mut line)
            .map_err(|e| format!("reading instance {}: {e}", self.name))?;
        if read == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_owned();
        say!("[{}] {line}", self.name);
        Ok(Some(line))
    }

    /// Waits for the instance to say it runs; if it exits instead, says why.
    fn running(&mut self) -> Outcome<()> {
        match self.echo_line()? {
            Some(line) if line.starts_with("running as pid") => Ok(()),
            _ => {
                let (status, stderr) = self.end()?;
                Err(format!(
                    "instance {} did not get the lock ({status}): {}",
                    self.name,
                    stderr.trim_end()
                ))
            }
        }
    }

    /// Tells the instance to stop and checks that it ended cleanly.
    fn stop(mut self) -> Outcome<()> {
        say!("[demo] stopping instance {}", self.name);
        if let Some(mut stdin) = self.child.stdin.take() {
            // An instance that already exited is reported below, with its status.
            let _ = writeln!(stdin, "stop");
        }
        while self.echo_line()?.is_some() {}
        let (status, stderr) = self.end()?;
        say!("[demo] instance {} exited: {status}", self.name);
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "instance {} failed ({status}): {}",
                self.name,
                stderr.trim_end()
            ))
        }
    }

    /// Waits for the exit; the status and what the instance wrote on stderr.
    fn end(&mut self) -> Outcome<(ExitStatus, String)> {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for instance {}: {e}", self.name))?;
        Ok((status, stderr))
    }
}

fn instance_command(path: &Path) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("demo"));
    let mut command = Command::new(exe);
    command.arg("--instance").arg(path);
    command
}

fn narrate() -> Outcome<()> {
    // The default place for a program's lock; its private directory is made here if missing.
    let lock = PidLockFile::for_program("pidlock-demo").map_err(|e| e.to_string())?;
    let path = lock.path().to_owned();
    say!("[demo] lock file: {}", path.display());

    let mut first = Instance::start("#1", &path)?;
    first.running()?; // #1 holds the lock now

    say!("[demo] starting instance #2 while #1 runs:");
    let second = instance_command(&path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start instance #2: {e}"))?;
    let stderr = String::from_utf8_lossy(&second.stderr);
    let refusal = stderr.trim_end();
    if second.status.code() == Some(1) && refusal.contains("is already running") {
        say!("[#2] {refusal}");
        say!("[demo] instance #2 was refused: {}", second.status);
    } else {
        return Err(format!(
            "instance #2 was expected to be refused, but ended with {}: {refusal}",
            second.status
        ));
    }

    first.stop()?;

    let mut third = Instance::start("#3", &path)?;
    third.running()?;
    third.stop()?;
    say!("[demo] #3 got in once #1 had exited. That is the whole story.");
    Ok(())
}
