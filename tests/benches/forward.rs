//! Handing a second instance's arguments to the running one (`forward = ...`): the latency from
//! the second process's start to the holder's handler being called, and what listening costs
//! the holder while nobody connects.
//!
//! `cargo bench -p pidlock-tests --bench forward` (`-- --quick` for fewer launches and a shorter idle window).
//!
//! Latency: a holder (`si-forward`) stamps CLOCK_MONOTONIC in its handler; each launch of a
//! second copy is stamped just before `spawn`. The baseline, measured in the same run, is a
//! refused second instance without `forward` (`si-plain`), from spawn to exit: the cost of
//! starting the program and meeting the conflict at all.
//!
//! Idle cost: the holder's CPU time (every thread, from `/proc/PID/task/*/stat`) over an idle
//! window, scaled to a minute. The listener sleeps in `accept`, so it must be 0.

/// It reads CPU time from `/proc`: Linux only.
#[cfg(target_os = "linux")]
mod linux {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn now_ns() -> i128 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
    }

    /// A holder whose stdout lines arrive on a channel.
    struct Holder {
        child: Child,
        lines: mpsc::Receiver<String>,
    }

    impl Holder {
        fn start(exe: &str, lock: &Path) -> Holder {
            let mut child = Command::new(exe)
                .env("PIDLOCK_FIXTURE_LOCK", lock)
                .env("PIDLOCK_FIXTURE_STAMP", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the holder");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let holder = Holder { child, lines };
            let first = holder.next();
            assert!(first.starts_with("holding "), "holder said {first}");
            holder
        }

        fn next(&self) -> String {
            self.lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the holder answers within 30 s")
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// CPU time (user + system) of every thread of `pid`, in clock ticks.
    fn cpu_ticks(pid: u32) -> u64 {
        let mut ticks = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc") {
            let stat = std::fs::read_to_string(task.expect("task").path().join("stat"))
                .unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
            ticks += fields
                .get(11)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
            ticks += fields
                .get(12)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
        ticks
    }

    fn percentile(sorted: &[Duration], p: f64) -> Duration {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i]
    }

    fn micros(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }

    pub fn main() {
        let quick = std::env::args().any(|a| a == "--quick");
        let launches = if quick { 50 } else { 200 };
        let idle = if quick {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(60)
        };
        let dir =
            std::env::temp_dir().join(format!("pidlock-bench-forward-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let lock: PathBuf = dir.join("bench.pid");

        // Delivery latency.
        let holder = Holder::start(env!("CARGO_BIN_EXE_si-forward"), &lock);
        let mut latencies = Vec::with_capacity(launches);
        for i in 0..launches {
            let started = now_ns();
            let status = Command::new(env!("CARGO_BIN_EXE_si-forward"))
                .arg(format!("file-{i}.txt"))
                .env("PIDLOCK_FIXTURE_LOCK", &lock)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run a second instance");
            assert!(
                status.success(),
                "second instance {i} was not handed over: {status}"
            );
            let stamp = holder.next();
            let called: i128 = stamp
                .strip_prefix("stamp ")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("expected a stamp, got {stamp}"));
            let got = holder.next();
            assert!(
                got.contains(
                    &format!("file-{i}.txt")
                        .bytes()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
                "{got}"
            );
            latencies.push(Duration::from_nanos(
                u64::try_from(called - started).expect("after the start"),
            ));
        }

        // The idle listener's CPU time.
        let pid = holder.child.id();
        let before = cpu_ticks(pid);
        let idle_started = Instant::now();
        std::thread::sleep(idle);
        let spent = cpu_ticks(pid) - before;
        let idle_took = idle_started.elapsed();
        drop(holder);

        // Baseline: a refused second instance without `forward`, spawn to exit.
        let mut plain = Command::new(env!("CARGO_BIN_EXE_si-plain"))
            .env("PIDLOCK_FIXTURE_LOCK", &lock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the plain holder");
        let mut first = String::new();
        BufReader::new(plain.stdout.as_mut().expect("stdout"))
            .read_line(&mut first)
            .expect("plain holder's first line");
        let mut baseline = Vec::with_capacity(launches);
        for _ in 0..launches {
            let started = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_si-plain"))
                .env("PIDLOCK_FIXTURE_LOCK", &lock)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run a refused instance");
            baseline.push(started.elapsed());
            assert_eq!(
                status.code(),
                Some(75),
                "the plain second instance was not refused"
            );
        }
        let _ = plain.kill();
        let _ = plain.wait();
        let _ = std::fs::remove_dir_all(&dir);

        latencies.sort();
        baseline.sort();
        let (median, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        let base = percentile(&baseline, 0.5);
        let tick = rustix::param::clock_ticks_per_second();
        let per_minute = spent as f64 / tick as f64 * 60.0 / idle_took.as_secs_f64();
        println!("forward: second process start -> holder's handler called, {launches} launches");
        println!(
            "  median {:>8.1} µs   p99 {:>8.1} µs",
            micros(median),
            micros(p99)
        );
        println!(
            "  baseline (refused second instance without forward, spawn -> exit): median {:>8.1} µs; forward median is {:.2}x it",
            micros(base),
            median.as_secs_f64() / base.as_secs_f64()
        );
        println!(
            "idle listener: {spent} ticks of CPU in {:.1} s = {:.3} s of CPU per minute (target: 0)",
            idle_took.as_secs_f64(),
            per_minute
        );
    }
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

/// The idle cost is read from `/proc`, so it runs on Linux only.
#[cfg(not(target_os = "linux"))]
fn main() {
    println!("tests/benches/forward.rs measures on Linux only");
}
