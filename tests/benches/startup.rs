//! Start-up cost of `#[single_instance]`: a minimal binary with the attribute against the same
//! binary without it, run as whole processes, alternating, median over many runs in one session.
//!
//! `cargo bench -p pidlock-tests --bench startup` (`-- --quick` for fewer runs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(exe: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new(exe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the binary");
    let took = started.elapsed();
    assert!(status.success(), "{exe} failed: {status}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 100 } else { 1000 };
    let plain = env!("CARGO_BIN_EXE_startup-plain");
    let guarded = env!("CARGO_BIN_EXE_startup-guarded");
    // Warm the page cache and the dynamic loader for both.
    for _ in 0..10 {
        run(plain);
        run(guarded);
    }
    let (mut base, mut with) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        base.push(run(plain));
        with.push(run(guarded));
    }
    let (base, with) = (median(base), median(with));
    let added = with.as_secs_f64() - base.as_secs_f64();
    println!("start-up of a minimal binary, spawn to exit, median of {runs} runs each");
    println!(
        "  without #[single_instance]: {:>8.1} µs",
        base.as_secs_f64() * 1e6
    );
    println!(
        "  with    #[single_instance]: {:>8.1} µs",
        with.as_secs_f64() * 1e6
    );
    println!(
        "  added: {:>8.1} µs ({:.3}x the baseline); target: under 100 µs",
        added * 1e6,
        with.as_secs_f64() / base.as_secs_f64()
    );
}
