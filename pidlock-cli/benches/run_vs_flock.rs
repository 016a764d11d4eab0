//! The cost of `pidlock run` against util-linux `flock(1)`, its closest anchor: `pidlock run
//! --file FILE -- true` against `flock -n FILE true`, as whole processes, spawn to exit,
//! alternating which goes first, median over many runs in one session.
//!
//! `cargo bench -p pidlockfile-cli --bench run_vs_flock` (`-- --quick` for fewer runs). Target:
//! `pidlock run` at most 1.5 times `flock(1)`'s median.

fn main() {
    #[cfg(unix)]
    unix::main();
    #[cfg(not(unix))]
    eprintln!("this benchmark runs on Unix only");
}

/// The benchmark: Unix only, like what it measures.
#[cfg(unix)]
mod unix {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn time(command: &mut Command) -> Duration {
        let started = Instant::now();
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the command");
        let took = started.elapsed();
        assert!(status.success(), "{command:?} failed: {status}");
        took
    }

    fn median(mut runs: Vec<Duration>) -> Duration {
        runs.sort();
        runs[runs.len() / 2]
    }

    fn pidlock(file: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pidlock"));
        command
            .arg("run")
            .arg("--file")
            .arg(file)
            .args(["--", "true"]);
        command
    }

    fn flock(file: &Path) -> Command {
        let mut command = Command::new("flock");
        command.arg("-n").arg(file).arg("true");
        command
    }

    pub(super) fn main() {
        let quick = std::env::args().any(|a| a == "--quick");
        let runs = if quick { 100 } else { 1000 };
        let dir = std::env::temp_dir().join(format!("pidlock-bench-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the bench directory");
        let (ours, theirs) = (dir.join("pidlock.pid"), dir.join("flock.lock"));
        // Warm the page cache and the dynamic loader for both.
        for _ in 0..10 {
            time(&mut pidlock(&ours));
            time(&mut flock(&theirs));
        }
        let (mut with_pidlock, mut with_flock) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate the order, so that neither always runs on the other's warm caches.
            if run % 2 == 0 {
                with_pidlock.push(time(&mut pidlock(&ours)));
                with_flock.push(time(&mut flock(&theirs)));
            } else {
                with_flock.push(time(&mut flock(&theirs)));
                with_pidlock.push(time(&mut pidlock(&ours)));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let (ours, theirs) = (median(with_pidlock), median(with_flock));
        let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
        println!("a locked `true`, spawn to exit, median of {runs} runs each, interleaved");
        println!(
            "  flock -n FILE true:               {:>8.1} µs",
            theirs.as_secs_f64() * 1e6
        );
        println!(
            "  pidlock run --file FILE -- true:  {:>8.1} µs",
            ours.as_secs_f64() * 1e6
        );
        println!("  ratio: {ratio:.2}x flock(1); target: at most 1.5x");
    }
}
