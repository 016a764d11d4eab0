//! Start-up cost of `#[single_instance]`: a minimal binary with the attribute against the same
//! binary without it, run as whole processes, alternating; the figure is the median of the
//! pairs' differences in one session (target, issue 15: <= +50 µs). A third binary makes only
//! the bare calls of a PID file (`fixtures/startup_bare.rs`), to show how much of the figure is
//! the file system's and how much the library's.
//!
//! `cargo bench -p pidlock-tests --bench startup` (`-- --quick` for fewer runs).
//!
//! # Where the time goes (profiled for issue 15)
//!
//! The bare calls alone add +38 to +45 µs on ext4 and +28 µs on tmpfs. Cold, in a fresh
//! process, the first `statx` of `/proc/self/ns/pid` costs 9.2 µs (2.1 warm) and the first
//! `memfd_create` 4.3 µs (1.6 warm). `strace -f` of the guarded binary shows 20 syscalls more
//! than the plain one, and
//! `perf stat -r 200` 8 more page faults and about 80 µs more CPU (0.95 against 0.87 ms):
//! - the default lock's directory: `geteuid`, `mkdir` (EEXIST), `lstat` of it and the owner
//!   check (`default_path.rs`; the directory is now looked at once, not twice);
//! - the process identity (`owner.rs`, issue 19): `getpid`, `memfd_create`, `F_SETLK`, `fstat`:
//!   made at the first acquire because it must exist before any fork;
//! - the cycle itself: open, flock, two `statx`, pwrite, and at exit the release's mark check,
//!   `statx`, unlink, unlock, `futimens`, close (see `handoff.rs`);
//! - the binary: about 530 KB larger (std's threads, formatting and file code that a bare
//!   `fn main() {}` never links, plus the lock-table code), whose pages are mapped and faulted
//!   in at start. The forwarding code is not linked without `forward` (it was: +84.5 µs then,
//!   +67.5 µs without it, in one run).
//!
//! No thread is started: the closer and the forwarding listener start only when a waiter or a
//! forwarding handler needs them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(exe: &str) -> Duration {
    run_with(exe, &[])
}

fn run_with(exe: &str, args: &[&std::ffi::OsStr]) -> Duration {
    let started = Instant::now();
    let status = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the binary");
    let took = started.elapsed();
    assert!(status.success(), "{exe} failed: {status}");
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 100 } else { 1000 };
    let plain = env!("CARGO_BIN_EXE_startup-plain");
    let guarded = env!("CARGO_BIN_EXE_startup-guarded");
    let bare = env!("CARGO_BIN_EXE_startup-bare");
    // The bare calls lock a file in the directory the guarded binary's default lock is in, so
    // that both pay for the same file system; the guarded binary, run first, makes it.
    let bare_path = pidlockfile::default_path("startup-bare");
    let bare_args = [bare_path.as_os_str()];
    // Warm the page cache and the dynamic loader for all three.
    for _ in 0..10 {
        run(plain);
        run(guarded);
        run_with(bare, &bare_args);
    }
    let (mut base, mut with) = (Vec::new(), Vec::new());
    let (mut pairs, mut bare_pairs, mut beyond) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (b, w, k) = (run(plain), run(guarded), run_with(bare, &bare_args));
        base.push(b.as_secs_f64());
        with.push(w.as_secs_f64());
        // Neighbours share the machine's load: the median of their differences is the figure.
        pairs.push(w.as_secs_f64() - b.as_secs_f64());
        bare_pairs.push(k.as_secs_f64() - b.as_secs_f64());
        beyond.push(w.as_secs_f64() - k.as_secs_f64());
    }
    let (added, bare_added, beyond) = (median(pairs), median(bare_pairs), median(beyond));
    let (base, with) = (median(base), median(with));
    println!("start-up of a minimal binary, spawn to exit, median of {runs} runs each");
    println!("  without #[single_instance]: {:>8.1} µs", base * 1e6);
    println!("  with    #[single_instance]: {:>8.1} µs", with * 1e6);
    println!(
        "  added (median of pairs): {:>+8.1} µs ({:.3}x the baseline); target: <= +50 µs",
        added * 1e6,
        with / base
    );
    println!(
        "  of which the bare calls (open, flock, write, unlink, close in {}): {:>+8.1} µs; \
         beyond them: {:>+8.1} µs",
        bare_path
            .parent()
            .map_or_else(String::new, |d| d.display().to_string()),
        bare_added * 1e6,
        beyond * 1e6
    );
    let size = |exe: &str| std::fs::metadata(exe).map_or(0, |m| m.len());
    println!(
        "  binary size: {} bytes plain, {} bytes guarded (+{} KB)",
        size(plain),
        size(guarded),
        size(guarded).saturating_sub(size(plain)) / 1024
    );
}
