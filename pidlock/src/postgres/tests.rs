//! Unit tests of what needs no server: identities, parsing, and messages without secrets.

use std::process;
use std::time::Duration;

use super::PgLock;
use super::holder::{host_name, identity, parse_identity};

#[test]
fn identities_round_trip_and_fit_in_application_name() {
    let id = identity();
    assert!(id.len() <= 63);
    let (pid, host) = parse_identity(&id).unwrap();
    assert_eq!(pid, process::id());
    assert!(host_name().starts_with(&host));
    assert_eq!(parse_identity("psql"), None);
    assert_eq!(parse_identity("pidlock x@y"), None);
}

#[test]
fn a_malformed_connection_string_fails_without_io() {
    let mut lock = PgLock::new("host=db bogus=1", "job");
    let error = lock.acquire(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot lock job on PostgreSQL: bad connection string: invalid connection option (the key after \"host\")"
    );
}

#[test]
fn debug_never_shows_the_password() {
    let lock = PgLock::new("postgres://u:hunter2@db:5432/x", "job");
    let shown = format!("{lock:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("PostgreSQL at db:5432"), "{shown}");
}
