//! The line `pidlock run --wait` shows while it waits: on a terminal one live line (holder,
//! time waited, limit) rewritten in place and erased when the lock is taken; elsewhere (logs,
//! cron mail) one plain line, since a log cannot be rewritten.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::holder::format_duration;

pub struct Progress {
    live: bool,
    quiet: bool,
    started: Instant,
    limit: Option<Duration>,
    shown: String,
}

impl Progress {
    pub fn new(quiet: bool, limit: Option<Duration>) -> Self {
        Progress {
            live: std::io::stderr().is_terminal(),
            quiet,
            started: Instant::now(),
            limit,
            shown: String::new(),
        }
    }

    /// How often the live line is worth redrawing.
    pub fn tick(&self) -> Duration {
        if self.live {
            Duration::from_millis(250)
        } else {
            // Nothing to redraw; the wait still wakes now and then to notice a new holder.
            Duration::from_secs(3600)
        }
    }

    /// Shows that the job waits for `holder` (a description of it).
    pub fn update(&mut self, name: &str, holder: &str) {
        if self.quiet {
            return;
        }
        let limit = self.limit.map_or_else(
            || "no limit".to_owned(),
            |l| format!("limit {}", format_duration(l)),
        );
        if self.live {
            let waited = format_duration(Duration::from_secs(self.started.elapsed().as_secs()));
            let line = format!("pidlock: waiting for {name} ({holder}): {waited} waited, {limit}");
            if line != self.shown {
                // Back to the start of the line, write, and erase what a longer line left.
                eprint!("\r{line}\x1b[K");
                let _ = std::io::stderr().flush();
                self.shown = line;
            }
        } else if self.shown.is_empty() {
            let line = format!("pidlock: waiting for {name} ({holder}), {limit}");
            eprintln!("{line}");
            self.shown = line;
        }
    }

    /// Erases the live line, so that CMD's output (or the final message) starts on a clean
    /// line.
    pub fn finish(&mut self) {
        if self.live && !self.shown.is_empty() {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
            self.shown.clear();
        }
    }
}
