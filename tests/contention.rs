//! 8 processes × 100 acquisitions of one lock (× 50 on Windows, where it runs under Wine), with
//! holders SIGKILLed (`TerminateProcess`d) along the way. Every hold interval is recorded on
//! CLOCK_MONOTONIC (the performance counter on Windows; shared by all processes) and no two may
//! overlap.

mod common;

use std::collections::HashMap;
use std::fs;
use std::sync::mpsc;

use common::{PATIENCE, Proc, Scratch, now_ns};
use pidlockfile::PidLockFile;

const PROCESSES: usize = 8;
#[cfg(unix)]
const ROUNDS: u32 = 100;
// Under Wine every round costs several wineserver round trips.
#[cfg(windows)]
const ROUNDS: u32 = 50;
/// Each contender stops every this many rounds while it holds the lock.
const PAUSE_EVERY: u32 = 25;
/// How many paused holders get SIGKILL (the others are let go on).
const KILLS: usize = 5;

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
    let (tx, rx) = mpsc::channel::<(u32, String)>();
    let mut contenders: HashMap<u32, Contender> = HashMap::new();
    let spawn = |index: usize, rounds: u32, contenders: &mut HashMap<u32, Contender>| {
        let log = scratch.path(&format!("log-{index}"));
        let mut proc = Proc::helper(&[
            "contend",
            lock_path.to_str().unwrap(),
            &rounds.to_string(),
            log.to_str().unwrap(),
            &PAUSE_EVERY.to_string(),
        ]);
        let pid = proc.id();
        // Forward this child's reports to one channel, tagged with its PID.
        let lines = std::mem::replace(proc.lines_mut(), mpsc::channel().1);
        let tx = tx.clone();
        std::thread::spawn(move || {
            while let Ok(line) = lines.recv() {
                if tx.send((pid, line)).is_err() {
                    break;
                }
            }
            let _ = tx.send((pid, "closed".to_owned()));
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

    let mut acquired_by: HashMap<u32, u32> = HashMap::new();
    let mut open = PROCESSES;
    let mut kills = 0;
    let mut replacements = PROCESSES;
    while open > 0 {
        let (pid, line) = rx.recv_timeout(PATIENCE).expect("contenders went quiet");
        match line.as_str() {
            "acquired" => *acquired_by.entry(pid).or_default() += 1,
            "paused" if kills < KILLS => {
                // This process holds the lock right now: kill it mid-hold.
                let victim = contenders.get_mut(&pid).unwrap();
                victim.killed_at = Some(now_ns());
                victim.proc.kill();
                kills += 1;
                // A replacement does the rest of the victim's share, so the total is 8 × 100.
                let done = acquired_by.get(&pid).copied().unwrap_or(0);
                spawn(replacements, ROUNDS - done, &mut contenders);
                replacements += 1;
                open += 1;
            }
            "paused" => contenders.get_mut(&pid).unwrap().proc.send("go"),
            "closed" => open -= 1,
            "done" => {}
            other => panic!("contender {pid}: {other}"),
        }
    }
    for (pid, contender) in &mut contenders {
        if contender.killed_at.is_none() {
            let status = contender.proc.wait();
            assert!(status.success(), "contender {pid} failed ({status})");
        }
    }
    assert_eq!(kills, KILLS);

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
