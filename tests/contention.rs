//! 8 processes × 100 acquisitions of one lock, with holders SIGKILLed along the way. Every hold
//! interval is recorded on CLOCK_MONOTONIC (shared by all processes) and no two may overlap.

mod common;

use std::collections::HashMap;
use std::fs;
use std::sync::mpsc;
use std::time::Instant;

use common::{PATIENCE, Proc, Scratch, now_ns};
use pidlock::PidLockFile;

const PROCESSES: usize = 8;
const ROUNDS: u32 = 100;
/// Kill the current holder after this many acquisitions, and again each time as many more
/// have happened.
const KILL_EVERY: usize = 90;

struct Contender {
    proc: Proc,
    log: std::path::PathBuf,
    /// When the test sent SIGKILL, if it did.
    killed_at: Option<u128>,
}

#[test]
fn hold_intervals_never_overlap_even_when_holders_are_killed() {
    let scratch = Scratch::new("contention");
    let lock_path = scratch.path("app.pid");
    let (tx, rx) = mpsc::channel::<u32>();
    let mut contenders: HashMap<u32, Contender> = HashMap::new();
    let spawn = |index: usize, rounds: u32, contenders: &mut HashMap<u32, Contender>| {
        let log = scratch.path(&format!("log-{index}"));
        let mut proc = Proc::helper(&[
            "contend",
            lock_path.to_str().unwrap(),
            &rounds.to_string(),
            log.to_str().unwrap(),
        ]);
        let pid = proc.id();
        // Forward this child's reports to one channel, tagged with its PID.
        let lines = std::mem::replace(proc.lines_mut(), mpsc::channel().1);
        let tx = tx.clone();
        std::thread::spawn(move || {
            while let Ok(line) = lines.recv() {
                if line != "acquired" {
                    eprintln!("contender {pid}: {line}");
                } else if tx.send(pid).is_err() {
                    break;
                }
            }
        });
        contenders.insert(
            pid,
            Contender {
                proc,
                log,
                killed_at: None,
            },
        );
    };
    for index in 0..PROCESSES {
        spawn(index, ROUNDS, &mut contenders);
    }

    let mut acquisitions = 0;
    let mut acquired_by: HashMap<u32, u32> = HashMap::new();
    let mut kills = 0;
    let mut replacements = PROCESSES;
    let give_up = Instant::now() + PATIENCE * 2;
    loop {
        let running = contenders
            .values_mut()
            .filter(|c| c.killed_at.is_none())
            .any(|c| !c.proc.has_exited());
        if !running {
            break;
        }
        assert!(Instant::now() < give_up, "contention run did not finish");
        // Bounded so the exit check above runs even when nobody reports.
        let Ok(pid) = rx.recv_timeout(std::time::Duration::from_millis(50)) else {
            continue;
        };
        acquisitions += 1;
        *acquired_by.entry(pid).or_default() += 1;
        if acquisitions % KILL_EVERY == 0 {
            // Kill whoever holds the lock right now, as its PID file says.
            if let Some(holder) = PidLockFile::new(&lock_path).read_pid()
                && let Some(victim) = contenders.get_mut(&holder)
                && victim.killed_at.is_none()
            {
                victim.killed_at = Some(now_ns());
                victim.proc.kill();
                kills += 1;
                // A replacement does the rest of the victim's share, so the total is 8 × 100.
                let done = acquired_by.get(&holder).copied().unwrap_or(0);
                spawn(
                    replacements,
                    ROUNDS.saturating_sub(done).max(1),
                    &mut contenders,
                );
                replacements += 1;
            }
        }
    }
    for (pid, contender) in &mut contenders {
        if contender.killed_at.is_none() {
            let (status, output) = contender.proc.finish();
            assert!(
                status.success(),
                "contender {pid} failed ({status}): {output:?}"
            );
        }
    }
    assert!(kills >= 3, "only {kills} holders were killed");

    // Collect every interval. An interval still open in a killed process lasted at least until
    // the kill was sent.
    let mut intervals = Vec::new();
    for (pid, contender) in &contenders {
        let log = fs::read_to_string(&contender.log).unwrap_or_default();
        let mut open = None;
        for line in log.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["S", start] => open = Some(start.parse::<u128>().unwrap()),
                ["E", end, sane] => {
                    assert_eq!(
                        sane, "true",
                        "process {pid} held the lock but the file did not name it"
                    );
                    intervals.push((open.take().unwrap(), end.parse::<u128>().unwrap(), *pid));
                }
                _ => panic!("bad log line {line:?}"),
            }
        }
        if let (Some(start), Some(killed)) = (open, contender.killed_at) {
            intervals.push((start, killed.max(start), *pid));
        }
    }
    intervals.sort();
    let completed = intervals.len();
    assert!(
        completed >= PROCESSES * ROUNDS as usize,
        "only {completed} holds recorded"
    );
    for pair in intervals.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        assert!(
            end < start,
            "process {a} held until {end}, but process {b} got in at {start}"
        );
    }
    assert!(!PidLockFile::new(&lock_path).is_locked());
}
