//! The connection code pidlockfile owns (socket.rs), against libpq (from the review of issue 14).
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use pidlock_test_support::pg as pg_support;

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::Duration;

use pidlockfile::PgLock;

/// A port on 127.0.0.2 that drops every SYN (its accept queue is full and never drained): a
/// host that does not answer, on loopback. Kept open while the returned descriptors live.
fn blackhole() -> (u16, Vec<OwnedFd>, Vec<TcpStream>) {
    use rustix::net::{AddressFamily, SocketType, bind, listen, socket};
    let listener = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&listener, &"127.0.0.2:0".parse::<SocketAddr>().unwrap()).unwrap();
    listen(&listener, 0).unwrap();
    let SocketAddr::V4(at) = rustix::net::getsockname(&listener)
        .unwrap()
        .try_into()
        .unwrap()
    else {
        panic!("not IPv4")
    };
    // Fill the queue: with a backlog of 0 one connection is queued, and later SYNs are dropped.
    let fill: Vec<TcpStream> = (0..2)
        .filter_map(|_| {
            TcpStream::connect_timeout(&SocketAddr::V4(at), Duration::from_millis(200)).ok()
        })
        .collect();
    (at.port(), vec![listener], fill)
}

/// libpq's `connect_timeout` is per host: a first host that does not answer is given up after
/// it, and the next host is tried. `psql` connects with this string; so must `PgLock` (before
/// the fix it spent the whole timeout on the first host and never tried the second).
#[test]
fn connect_timeout_is_per_host_as_in_libpq() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let (dead, _listener, _fill) = blackhole();
    let conninfo = format!(
        "host=127.0.0.2,127.0.0.1 port={dead},{} user=postgres dbname=postgres \
         sslmode=disable connect_timeout=2",
        pg.port
    );
    let psql = Command::new(pg.bin.join("psql"))
        .args([conninfo.as_str(), "-Atc", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "1",
        "control: libpq reaches the second host ({})",
        String::from_utf8_lossy(&psql.stderr)
    );
    let mut lock = PgLock::new(conninfo, "review14f-per-host");
    let taken = lock.acquire(Some(Duration::ZERO));
    assert!(
        taken.is_ok(),
        "PgLock did not reach the second host: {taken:?}"
    );
}

/// libpq (and tokio-postgres, which pidlockfile used to connect with before 8b6241e) refuse a
/// string whose `host` and `hostaddr` lists differ in length: "could not match 2 host names to
/// 1 hostaddr values". So does pidlockfile's own `targets()` (it used to pair them up silently),
/// and the message names no secret.
#[test]
fn host_and_hostaddr_lists_of_different_lengths_are_refused_as_in_libpq() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let conninfo = format!(
        "host=nothing.invalid,localhost hostaddr=127.0.0.1 port={} user=postgres \
         dbname=postgres sslmode=disable",
        pg.port
    );
    let psql = Command::new(pg.bin.join("psql"))
        .args([conninfo.as_str(), "-Atc", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!psql.status.success(), "control: libpq refuses the string");
    let mut lock = PgLock::new(conninfo, "review14f-hostaddr-count");
    let taken = lock.acquire(Some(Duration::ZERO));
    assert!(
        taken.is_err(),
        "PgLock took the lock with a malformed string"
    );
}
