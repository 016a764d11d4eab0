//! Side-by-side ratios of pidlock against the kernel floor, measured in one run.
//!
//! - Handoff: from the holder's release to the waiter's return, for `acquire(Some(10 s))` and
//!   `acquire(None)`, against a plain blocking `flock(2)` waiter on a file that is never
//!   unlinked. Holder and waiter are threads with descriptors of their own, which the kernel
//!   treats exactly as two processes.
//! - Uncontended acquire + release cycles per second, against the bare calls
//!   (open O_CREAT, flock, write, unlink, close).
//! - CPU time used by a waiter blocked for 5 s, with and without a timeout.
//!
//! `cargo bench -p pidlock-tests --bench handoff` for the full run, `-- --quick` for a short one.

#[cfg(unix)]
use std::fs::{self, File};
#[cfg(unix)]
use std::io::Write;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
#[cfg(unix)]
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::sync::mpsc;
#[cfg(unix)]
use std::thread;
#[cfg(unix)]
use std::time::{Duration, Instant};

#[cfg(unix)]
use pidlock::PidLockFile;
#[cfg(unix)]
use rustix::time::{ClockId, clock_gettime};

#[cfg(unix)]
struct Config {
    handoffs: usize,
    cycle_batches: usize,
    cycles_per_batch: usize,
    blocked_for: Duration,
}

#[cfg(unix)]
fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let config = if quick {
        Config {
            handoffs: 60,
            cycle_batches: 15,
            cycles_per_batch: 300,
            blocked_for: Duration::from_secs(1),
        }
    } else {
        Config {
            handoffs: 400,
            cycle_batches: 15,
            cycles_per_batch: 2000,
            blocked_for: Duration::from_secs(5),
        }
    };
    let dir = std::env::temp_dir().join(format!("pidlock-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create bench dir");

    println!(
        "pidlock benchmark ({} run)",
        if quick { "quick" } else { "full" }
    );
    println!();
    handoff(&dir, &config);
    println!();
    cycles(&dir, &config);
    println!();
    blocked_cpu(&dir, &config);
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Handoff latency

#[cfg(unix)]
#[derive(Clone, Copy)]
enum Waiter {
    Flock,
    PidlockNone,
    PidlockTimeout,
}

#[cfg(unix)]
impl Waiter {
    fn name(self) -> &'static str {
        match self {
            Waiter::Flock => "blocking flock (floor)",
            Waiter::PidlockNone => "pidlock acquire(None)",
            Waiter::PidlockTimeout => "pidlock acquire(Some(10 s))",
        }
    }
}

#[cfg(unix)]
/// One handoff: the holder has the lock, a waiter thread blocks on it, the holder releases.
/// Returns the time from just before the release call to the waiter's return.
fn one_handoff(path: &Path, waiter: Waiter) -> Duration {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    match waiter {
        Waiter::Flock => {
            let holder = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .expect("open");
            holder.lock().expect("lock");
            let path = path.to_owned();
            let t = thread::spawn(move || {
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("open");
                ready_tx.send(()).expect("send");
                file.lock().expect("lock");
                done_tx.send(Instant::now()).expect("send");
            });
            ready_rx.recv().expect("ready");
            // Give the waiter time to block in the kernel; this is a benchmark, not a test.
            thread::sleep(Duration::from_millis(2));
            let released = Instant::now();
            holder.unlock().expect("unlock");
            let admitted = done_rx.recv().expect("done");
            t.join().expect("join");
            admitted - released
        }
        Waiter::PidlockNone | Waiter::PidlockTimeout => {
            let mut holder = PidLockFile::new(path);
            holder.acquire(None).expect("acquire");
            let path = path.to_owned();
            let timeout = matches!(waiter, Waiter::PidlockTimeout).then(|| Duration::from_secs(10));
            let t = thread::spawn(move || {
                let mut lock = PidLockFile::new(&path);
                ready_tx.send(()).expect("send");
                lock.acquire(timeout).expect("waiter acquire");
                done_tx.send(Instant::now()).expect("send");
                lock.release().expect("release");
            });
            ready_rx.recv().expect("ready");
            thread::sleep(Duration::from_millis(2));
            let released = Instant::now();
            holder.release().expect("release");
            let admitted = done_rx.recv().expect("done");
            t.join().expect("join");
            admitted - released
        }
    }
}

#[cfg(unix)]
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(unix)]
fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(unix)]
fn handoff(dir: &Path, config: &Config) {
    let kinds = [Waiter::Flock, Waiter::PidlockNone, Waiter::PidlockTimeout];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    // Interleave the kinds so that machine noise hits them alike.
    for _ in 0..config.handoffs {
        for (i, kind) in kinds.iter().enumerate() {
            let path = dir.join(format!("handoff-{i}.pid"));
            samples[i].push(one_handoff(&path, *kind));
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let floor_median = percentile(&samples[0], 0.5);
    let floor_p99 = percentile(&samples[0], 0.99);
    println!(
        "handoff latency, release -> waiter returns ({} handoffs each)",
        config.handoffs
    );
    println!(
        "  {:<30} {:>10} {:>10} {:>14} {:>11}",
        "waiter", "median µs", "p99 µs", "median ratio", "p99 ratio"
    );
    for (kind, s) in kinds.iter().zip(&samples) {
        let (median, p99) = (percentile(s, 0.5), percentile(s, 0.99));
        println!(
            "  {:<30} {:>10.1} {:>10.1} {:>13.2}x {:>10.2}x",
            kind.name(),
            micros(median),
            micros(p99),
            median.as_secs_f64() / floor_median.as_secs_f64(),
            p99.as_secs_f64() / floor_p99.as_secs_f64(),
        );
    }
    println!("  targets: median <= 5x the floor, p99 < 1000 µs");
}

// ---------------------------------------------------------------------------------------------
// Uncontended cycles

#[cfg(unix)]
/// The bare system calls of one cycle, as a hand-written PID file lock would make them.
fn bare_cycle(path: &Path, pid_line: &[u8]) {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .expect("open");
    file.try_lock().expect("flock");
    file.write_all(pid_line).expect("write");
    fs::remove_file(path).expect("unlink");
    drop(file);
}

#[cfg(unix)]
fn pidlock_cycle(path: &Path, timeout: Option<Duration>) {
    let mut lock = PidLockFile::new(path);
    lock.acquire(timeout).expect("acquire");
    lock.release().expect("release");
}

#[cfg(unix)]
fn batch_time(cycles: usize, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..cycles {
        f();
    }
    start.elapsed()
}

#[cfg(unix)]
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(unix)]
fn cycles(dir: &Path, config: &Config) {
    let path: PathBuf = dir.join("cycle.pid");
    let pid_line = format!("{}\n", std::process::id());
    let n = config.cycles_per_batch;
    let (mut bare, mut zero, mut none) = (Vec::new(), Vec::new(), Vec::new());
    let (mut zero_ratio, mut none_ratio) = (Vec::new(), Vec::new());
    for _ in 0..config.cycle_batches {
        // Back-to-back batches, compared pairwise: the machine's load drifts, and a ratio of
        // neighbours cancels most of it.
        let b = batch_time(n, || bare_cycle(&path, pid_line.as_bytes()));
        let z = batch_time(n, || pidlock_cycle(&path, Some(Duration::ZERO)));
        let w = batch_time(n, || pidlock_cycle(&path, None));
        zero_ratio.push(z.as_secs_f64() / b.as_secs_f64());
        none_ratio.push(w.as_secs_f64() / b.as_secs_f64());
        for (v, t) in [(&mut bare, b), (&mut zero, z), (&mut none, w)] {
            v.push(n as f64 / t.as_secs_f64());
        }
    }
    println!(
        "uncontended acquire + release ({} batches of {n}, medians)",
        config.cycle_batches
    );
    println!(
        "  {:<40} {:>12} {:>22}",
        "cycle", "cycles/s", "time ratio to bare"
    );
    println!(
        "  {:<40} {:>12.0} {:>21.2}x",
        "bare open+flock+write+unlink+close",
        median(bare),
        1.0
    );
    println!(
        "  {:<40} {:>12.0} {:>21.2}x",
        "pidlock acquire(Some(0)) + release",
        median(zero),
        median(zero_ratio)
    );
    println!(
        "  {:<40} {:>12.0} {:>21.2}x",
        "pidlock acquire(None) + release",
        median(none),
        median(none_ratio)
    );
    println!("  target: within 1.5x of the bare calls");
}

// ---------------------------------------------------------------------------------------------
// CPU use of a blocked waiter

#[cfg(unix)]
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(unix)]
fn blocked_cpu(dir: &Path, config: &Config) {
    let path = dir.join("blocked.pid");
    let mut holder = PidLockFile::new(&path);
    holder.acquire(None).expect("acquire");
    let secs = config.blocked_for;
    println!("CPU time of a waiter blocked for {secs:?}");

    // With a timeout: the waiter gives up at the deadline.
    let waiter_path = path.clone();
    let timed = thread::spawn(move || {
        let before = thread_cpu();
        let started = Instant::now();
        let result = PidLockFile::new(&waiter_path).acquire(Some(secs));
        assert!(result.is_err(), "the holder never let go");
        (thread_cpu() - before, started.elapsed())
    })
    .join()
    .expect("join");
    println!(
        "  acquire(Some({secs:?})), times out:   {:>8.3} ms CPU over {:.3} s",
        timed.0.as_secs_f64() * 1e3,
        timed.1.as_secs_f64()
    );

    // Without: the holder lets go after the same time.
    let (tx, rx) = mpsc::channel();
    let waiter_path = path.clone();
    let untimed = thread::spawn(move || {
        let before = thread_cpu();
        let mut lock = PidLockFile::new(&waiter_path);
        tx.send(()).expect("send");
        lock.acquire(None).expect("acquire");
        thread_cpu() - before
    });
    rx.recv().expect("ready");
    thread::sleep(secs);
    holder.release().expect("release");
    let untimed = untimed.join().expect("join");
    println!(
        "  acquire(None), admitted after {secs:?}: {:>8.3} ms CPU",
        untimed.as_secs_f64() * 1e3
    );
    println!("  target: under 20 ms for a 5 s wait");
}

/// `flock(2)` is the floor this measures, so it runs on Unix only.
#[cfg(not(unix))]
fn main() {
    eprintln!("the handoff benchmark measures flock(2), and runs on Unix only");
}
