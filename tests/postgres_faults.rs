//! `PgLock` under faults that disturb the whole server, on a cluster of their own: a restart
//! (`pg_ctl restart -m fast`) and a network partition (the holder's client in a network
//! namespace whose link goes down, so that its packets vanish without a reset). They run one
//! at a time.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;
use pidlock_test_support::pg as pg_support;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{Proc, now_ns};

/// One fault at a time: each disturbs every session on the cluster.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn pg_helper(prefix: &[&str], args: &[&str]) -> Proc {
    let (program, rest) = match prefix.split_first() {
        Some((program, rest)) => (*program, rest),
        None => (env!("CARGO_BIN_EXE_pg-helper"), &[][..]),
    };
    let mut command = Command::new(program);
    command.args(rest);
    if !prefix.is_empty() {
        command.arg(env!("CARGO_BIN_EXE_pg-helper"));
    }
    command.args(args);
    Proc::spawn(command)
}

/// The parts of a `locked TOKEN NS` or `lost NS REASON` report.
fn report<'a>(line: &'a str, kind: &str) -> Vec<&'a str> {
    let parts: Vec<&str> = line.splitn(3, ' ').collect();
    assert_eq!(parts[0], kind, "{line}");
    parts
}

#[test]
fn a_restart_is_reported_as_a_loss_and_a_waiter_reconnects_and_gets_in() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let url = pg.url();
    let name = format!("restart-{}", std::process::id());
    let mut holder = pg_helper(&[], &["hold", &url, &name, "0"]);
    let token: u64 = report(&holder.next_report(), "locked")[1].parse().unwrap();
    let mut waiter = pg_helper(&[], &["hold", &url, &name, "60000"]);
    pg.wait_until("the waiter waits", || pg.waits(waiter.id()));

    pg.restart();

    let lost = holder.next_report();
    report(&lost, "lost");
    holder.send("status");
    assert_eq!(holder.next_report(), "status false true");
    // The waiter's session dropped with the restart; it reconnected and waited on, and the
    // lock is free now that the holder's session is gone.
    let line = waiter.next_report();
    let next: u64 = report(&line, "locked")[1].parse().unwrap();
    assert!(
        next > token,
        "fencing tokens survive a restart: {next} > {token}"
    );
}

/// A network namespace with a veth pair to the root namespace, removed on drop.
struct Netns {
    name: String,
    outside: String,
    inside: String,
    server_ip: String,
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id() % 100_000;
        let octet = std::process::id() % 250 + 1;
        let netns = Netns {
            name: format!("pidlock-{id}"),
            outside: format!("plo{id}"),
            inside: format!("pli{id}"),
            server_ip: format!("10.213.{octet}.1"),
        };
        let client_ip = format!("10.213.{octet}.2");
        netns.cleanup();
        for command in [
            vec!["ip", "netns", "add", &netns.name],
            vec![
                "ip",
                "link",
                "add",
                &netns.outside,
                "type",
                "veth",
                "peer",
                "name",
                &netns.inside,
            ],
            vec!["ip", "link", "set", &netns.inside, "netns", &netns.name],
            vec![
                "ip",
                "addr",
                "add",
                &format!("{}/24", netns.server_ip),
                "dev",
                &netns.outside,
            ],
            vec!["ip", "link", "set", &netns.outside, "up"],
            vec![
                "ip",
                "netns",
                "exec",
                &netns.name,
                "ip",
                "addr",
                "add",
                &format!("{client_ip}/24"),
                "dev",
                &netns.inside,
            ],
            vec![
                "ip",
                "netns",
                "exec",
                &netns.name,
                "ip",
                "link",
                "set",
                &netns.inside,
                "up",
            ],
            vec![
                "ip",
                "netns",
                "exec",
                &netns.name,
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ],
        ] {
            let output = Command::new(command[0])
                .args(&command[1..])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{command:?}: {} (the partition test needs root and iproute2)",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        netns
    }

    /// Cuts the holder off: its side of the link goes down, and every packet between it and
    /// the server is lost without a word, both ways.
    fn partition(&self) {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "ip",
                "link",
                "set",
                &self.inside,
                "down",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }

    fn cleanup(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.outside])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[test]
fn a_partitioned_holder_gives_up_within_lost_after_and_before_the_server_frees_the_lock() {
    pidlock_test_support::require_root!("makes a network namespace with ip(8)");
    pidlock_test_support::require_program!("ip", "iproute2");
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    const LOST_AFTER: Duration = Duration::from_secs(2);
    let netns = Netns::new();
    let name = format!("partition-{}", std::process::id());
    let remote = format!(
        "postgres://postgres@{}:{}/postgres?sslmode=disable",
        netns.server_ip, pg.port
    );
    let lost_after_ms = LOST_AFTER.as_millis().to_string();
    let mut holder = pg_helper(
        &["ip", "netns", "exec", &netns.name],
        &["hold", &remote, &name, "0", &lost_after_ms],
    );
    report(&holder.next_report(), "locked");
    let mut waiter = pg_helper(&[], &["hold", &pg.url(), &name, "60000"]);
    pg.wait_until("the waiter waits", || pg.waits(waiter.id()));

    let cut = now_ns();
    netns.partition();

    let lost = holder.next_report();
    let lost_at: u128 = report(&lost, "lost")[1].parse().unwrap();
    let taken = waiter.next_report();
    let taken_at: u128 = report(&taken, "locked")[2].parse().unwrap();
    let gave_up = Duration::from_nanos((lost_at - cut) as u64);
    let freed = Duration::from_nanos((taken_at - cut) as u64);
    eprintln!(
        "partition with lost_after = {LOST_AFTER:?}: the holder gave up after {gave_up:?}, \
         the server freed the lock after {freed:?}"
    );
    // Within lost_after of the last answered ping, which came before the cut; a little slack
    // for a loaded machine.
    assert!(
        gave_up <= LOST_AFTER + Duration::from_millis(500),
        "{gave_up:?}"
    );
    assert!(
        lost_at < taken_at,
        "the holder must give up first: {lost} / {taken}"
    );
    // The server's bound: about 2 × lost_after after it last heard from the holder, at most
    // about 2.25 × (see `session.rs`), plus the time to hand the lock over.
    assert!(freed >= LOST_AFTER, "{freed:?}");
    assert!(
        freed <= LOST_AFTER * 3 + Duration::from_secs(2),
        "{freed:?}"
    );
}

#[test]
fn review_a_waiter_rides_out_two_outages_in_a_row() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    // A holder that survives restarts: a prepared transaction's advisory lock.
    let name = format!("outages-{}", std::process::id());
    let key = pidlockfile::PgLock::new("", &name).key();
    let gid = format!("pidlock-outages-{}", std::process::id());
    pg.psql_all(&[
        "BEGIN",
        &format!("SELECT pg_advisory_xact_lock({key})"),
        &format!("PREPARE TRANSACTION '{gid}'"),
    ]);
    let conninfo = format!("{}?connect_timeout=5", pg.url());
    let mut waiter = pg_helper(&[], &["hold", &conninfo, &name, "none"]);
    let waiting = |waiter: &Proc| pg.waits(waiter.id());
    pg.wait_until("the waiter waits", || waiting(&waiter));
    pg.restart();
    pg.wait_until("the waiter waits again", || waiting(&waiter));
    pg.restart();
    pg.wait_until("the waiter waits a third time", || waiting(&waiter));
    pg.psql(&format!("ROLLBACK PREPARED '{gid}'"));
    let line = waiter.next_report();
    report(&line, "locked");
}

#[test]
fn review_a_holder_whose_server_stops_answering_is_told_in_bounded_time() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = format!("stopped-{}", std::process::id());
    let conninfo = format!("{}?connect_timeout=2", pg.url());
    let mut lock = pidlockfile::PgLock::new(&conninfo, &name).lost_after(Duration::from_secs(2));
    lock.acquire(Some(Duration::ZERO)).unwrap();
    let me = std::process::id();
    let backends = pg.backends(&format!("pidlock {me}@"));
    assert_eq!(backends.len(), 1, "{backends:?}");
    // The backend stops: its socket stays open, and nothing answers.
    let _resume = stop(backends[0]);
    let started = std::time::Instant::now();
    let lost = lock
        .loss_watch()
        .unwrap()
        .wait(Some(Duration::from_secs(20)));
    assert!(lost.is_some(), "a silent server was not noticed");
    assert!(lock.is_lost());
    // The stopped backend still holds the lock on the server: another session sees it.
    assert!(lock.try_is_locked().unwrap());
    assert!(lock.is_locked());
    assert!(lock.release().is_err());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A release whose unlock gets no answer (the session's server process is stopped) gives up
/// after `connect_timeout` and closes every copy this process has of the session's socket,
/// the one kept for `share` as well: a copy left open would keep the session, and the lock,
/// for as long as this process lives, since this process's kernel keeps answering the server.
/// By `release` and by a drop.
#[cfg(target_os = "linux")]
#[test]
fn review_a_release_that_gets_no_answer_closes_every_copy_of_the_socket() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let me = std::process::id();
    let conninfo = format!("{}?connect_timeout=2", pg.url());
    for drop_it in [false, true] {
        let name = format!("unanswered-{me}-{drop_it}");
        let mut lock =
            pidlockfile::PgLock::new(&conninfo, &name).lost_after(Duration::from_secs(60));
        lock.acquire(Some(Duration::ZERO)).unwrap();
        let backend = pg.backend(&format!("pidlock {me}@"));
        let port: u16 = pg
            .psql(&format!(
                "SELECT client_port FROM pg_stat_activity WHERE pid = {backend}"
            ))
            .trim()
            .parse()
            .unwrap();
        assert!(copies_of_socket(port) > 0, "no socket found on port {port}");
        let resume = stop(backend);
        if drop_it {
            drop(lock);
        } else {
            let released = lock.release();
            assert!(released.is_err(), "{released:?}");
        }
        assert_eq!(copies_of_socket(port), 0, "drop: {drop_it}");
        drop(resume);
        pg.wait_until("the session is gone", || {
            pg.backends(&format!("pidlock {me}@")).is_empty()
        });
    }
}

/// How many descriptors of this process refer to the TCP socket whose local port is `port`.
#[cfg(target_os = "linux")]
fn copies_of_socket(port: u16) -> usize {
    let local = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields.get(1)?.ends_with(&local))
                        .then(|| fields.get(9).map(|i| i.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            inodes
                .iter()
                .any(|inode| target.to_str() == Some(&format!("socket:[{inode}]")))
        })
        .count()
}

/// Stops the server process `backend` (`SIGSTOP`: its socket stays open, and nothing answers)
/// until the value returned is dropped, even by a failing test.
fn stop(backend: u32) -> impl Drop {
    struct Resume(String);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-CONT", &self.0]).status();
        }
    }
    let backend = backend.to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &backend])
            .status()
            .unwrap()
            .success()
    );
    Resume(backend)
}
