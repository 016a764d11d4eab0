//! The fleet lock's promises where they are easiest to break: a fencing token across server
//! crashes, a lost lock that lets go everywhere at once, the self-wait check across spellings
//! of one server and one spelling of two servers, and no password in any message.
//!
//! The crash test and the two-server test use clusters of their own (`own_cluster`), so that
//! crashing a server disturbs no other test.
// Unix only: the fleet lock's test server is a Unix program.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;
use pidlock_test_support::pg as pg_support;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pg_support::Cluster;
use pidlock::{LockError, PgLock};

/// A lock name of its own for each test, so that tests running at once never meet.
fn unique(name: &str) -> String {
    format!("promises-{name}-{}", std::process::id())
}

/// How long any one step may take before the test fails: generous, never a measurement.
const BOUND: Duration = Duration::from_secs(30);

/// Takes `name` with a fresh lock (the server is fresh too after a crash), reads its token,
/// and returns both.
fn take(conninfo: &str, name: &str) -> (PgLock, u64) {
    let mut lock = PgLock::new(conninfo, name);
    lock.acquire(Some(BOUND)).unwrap();
    let token = lock.fencing_token();
    assert!(token > 0, "no token");
    (lock, token)
}

/// Takes `name` by waiting for a holder of this process to release it: the waiting path.
fn take_after_a_wait(pg: &Cluster, conninfo: &str, name: &str) -> (PgLock, u64) {
    let (first, _) = take(conninfo, name);
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let (conninfo, name) = (conninfo.to_owned(), name.to_owned());
        thread::spawn(move || {
            let mut lock = PgLock::new(conninfo, name);
            let taken = lock.acquire(Some(BOUND));
            // Right after the grant, as a waiter that writes at once would.
            let token = taken.map(|()| lock.fencing_token());
            tx.send(()).unwrap();
            (lock, token)
        })
    };
    pg.wait_until("the waiter waits", || pg.waits(std::process::id()));
    let mut first = first;
    first.release().unwrap();
    rx.recv_timeout(BOUND).unwrap();
    let (lock, token) = waiter.join().unwrap();
    (lock, token.unwrap())
}

#[test]
fn a_fencing_token_never_repeats_after_a_crash_on_either_path_with_either_commit_setting() {
    // The server's defaults (fsync and synchronous_commit on), not the shared cluster's.
    let Some(pg) = pg_support::own_cluster(
        "127.0.0.1",
        None,
        "fsync = on\nsynchronous_commit = on\nfull_page_writes = on",
    ) else {
        return;
    };
    let conninfo = format!("{}?sslmode=disable", pg.url());
    let name = unique("crash");
    let mut last = 0;
    let mut seen = Vec::new();
    for setting in ["on", "off"] {
        pg.set("synchronous_commit", setting);
        for round in 0..10 {
            for waiting in [false, true] {
                let (lock, token) = if waiting {
                    take_after_a_wait(&pg, &conninfo, &name)
                } else {
                    take(&conninfo, &name)
                };
                seen.push((setting, round, waiting, token));
                assert!(
                    token > last,
                    "a token repeated or went back after a crash: {seen:?}"
                );
                last = token;
                // At once: the token's commit must already be on disk.
                pg.crash();
                pg.start_again();
                drop(lock);
            }
        }
    }
}

#[test]
fn a_lost_lock_lets_its_own_thread_take_it_again_before_it_is_dropped() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let url = pg.url();
    let name = unique("terminated");
    let (a, _) = take(&url, &name);
    let backend = pg.holding_backend(a.key()).unwrap();
    pg.psql(&format!("SELECT pg_terminate_backend({backend})"));
    assert!(a.loss_watch().unwrap().wait(Some(BOUND)).is_some());
    // `a` lives on; the same thread takes the lock anew, waiting or not.
    let mut b = PgLock::new(&url, &name);
    b.acquire(Some(BOUND)).unwrap();
    b.release().unwrap();
    b.acquire(Some(Duration::ZERO)).unwrap();
    assert!(a.is_lost() && !a.i_am_locking() && b.i_am_locking());
    drop(a);
    assert!(b.i_am_locking());
    assert!(pg.holding_backend(b.key()).is_some());
}

/// Sends SIGCONT to a stopped server process when dropped, so that a failing test never
/// leaves it stopped.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid, "-STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

#[test]
fn a_lock_lost_to_a_silent_server_is_freed_when_the_link_heals() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let url = pg.url();
    let name = unique("silent");
    let mut a = PgLock::new(&url, &name).lost_after(Duration::from_secs(2));
    a.acquire(Some(BOUND)).unwrap();
    let backend = pg.holding_backend(a.key()).unwrap();
    let stopped = Stopped::stop(backend);
    let lost = a.loss_watch().unwrap().wait(Some(BOUND));
    assert!(
        lost.is_some(),
        "no loss reported for a stopped server process"
    );
    drop(stopped);
    // The link heals; `a` is not dropped. Another thread gets in, and so does this one.
    let other = {
        let (url, name) = (url.clone(), name.clone());
        thread::spawn(move || {
            let mut b = PgLock::new(url, name);
            b.acquire(Some(BOUND)).map(|()| b.release())
        })
    };
    other.join().unwrap().unwrap().unwrap();
    let mut c = PgLock::new(&url, &name);
    c.acquire(Some(BOUND)).unwrap();
    assert!(a.is_lost());
    drop(a);
}

/// `acquire` by the thread that holds the lock through `holder`, under another spelling:
/// refused at once as its own (`AlreadyLocked`, never a `LockTimeout` after waiting).
fn refused_as_its_own(conninfo: &str, name: &str) {
    let mut again = PgLock::new(conninfo, name);
    match again.acquire(Some(BOUND)) {
        Err(LockError::AlreadyLocked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("{conninfo}: a wait for its own lock: {other:?}"),
    }
}

#[test]
fn two_spellings_of_one_server_are_one_server() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("spellings");
    // A role with no privilege: the server's identity must be readable by anyone.
    let user = pg_support::PLAIN_USER;
    let spellings = [
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            pg.port
        ),
        format!(
            "postgres://{user}@localhost:{}/postgres?sslmode=disable",
            pg.port
        ),
        format!(
            "host={} port={} user={user} dbname=postgres",
            pg.dir.display(),
            pg.port
        ),
    ];
    for holding in &spellings {
        let (mut held, _) = take(holding, &name);
        for other in &spellings {
            refused_as_its_own(other, &name);
        }
        held.release().unwrap();
    }
    // Another database of the same server is another lock.
    let (_held, _) = take(&spellings[0], &name);
    let mut elsewhere = PgLock::new(
        format!("host=localhost port={} user=postgres dbname=other", pg.port),
        &name,
    );
    elsewhere.acquire(Some(BOUND)).unwrap();
}

#[test]
fn two_servers_behind_one_host_name_never_refuse_each_other() {
    let Some(first) = pg_support::own_cluster("127.0.0.1", None, "") else {
        return;
    };
    let Some(second) = pg_support::own_cluster("127.0.0.2", Some(first.port), "") else {
        return;
    };
    let name = unique("two-servers");
    let at = |addr: &str| {
        format!(
            "host=db hostaddr={addr} port={} user=postgres dbname=postgres sslmode=disable",
            first.port
        )
    };
    let (_on_first, _) = take(&at("127.0.0.1"), &name);
    // The same thread, the same host text, another server: free, and taken.
    let mut on_second = PgLock::new(at("127.0.0.2"), &name);
    on_second.acquire(Some(BOUND)).unwrap();
    assert!(first.is_held(on_second.key()) && second.is_held(on_second.key()));
    // And a wait on the first, from this thread, is still a wait for itself.
    refused_as_its_own(&at("127.0.0.1"), &name);
}

/// A marker password that must show up nowhere.
const MARKER: &str = "Mk7SECRETPWqz";

#[test]
fn no_password_shows_in_any_message() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("secret");
    let port = pg.port;
    let malformed = [
        // An unencoded `/`, `?` or `@` in a URL's password.
        format!("postgres://u:{MARKER}/x@127.0.0.1:{port}/db"),
        format!("postgres://u:{MARKER}?x@127.0.0.1:{port}/db"),
        format!("postgres://u:{MARKER}/1@2@127.0.0.1:{port}/db"),
        format!("postgres://u:{MARKER}@127.0.0.1:5x/db"),
        format!("postgres://u:{MARKER}@[::1/db"),
        format!("postgres://u:{MARKER}@[::1]x/db"),
        format!("postgres://u:{MARKER}@127.0.0.1/db?{MARKER}"),
        format!("postgres://u:{MARKER}@127.0.0.1/db?sslmode={MARKER}"),
        // A space in an unquoted password: the rest becomes a key.
        format!("password=abc {MARKER}"),
        format!("password=abc {MARKER}=x"),
        format!("password='{MARKER}"),
        format!("port={MARKER}"),
        format!("password={MARKER} sslmode={MARKER}"),
        format!("password={MARKER} connect_timeout={MARKER}"),
        format!("password={MARKER} hostaddr={MARKER}"),
        format!("password={MARKER} channel_binding={MARKER}"),
        format!("password={MARKER} target_session_attrs={MARKER}"),
    ];
    let well_formed = [
        // A wrong password, an unknown host, a TLS failure.
        format!(
            "host=127.0.0.1 port={port} user={} password={MARKER} dbname=postgres sslmode=disable",
            pg_support::PASSWORD_USER
        ),
        format!("postgres://u:{MARKER}@no-such-host.invalid/db?connect_timeout=3"),
        format!(
            "postgres://postgres:{MARKER}@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            pg.wrong_ca.display()
        ),
    ];
    let clean = |what: &str, text: &str| {
        assert!(!text.contains(MARKER), "{what} shows the password: {text}");
    };
    for conninfo in malformed.iter().chain(&well_formed) {
        let mut lock = PgLock::new(conninfo.as_str(), &name);
        clean("PgLock's Debug", &format!("{lock:?}"));
        clean("server()", &lock.server());
        let error = lock.acquire(Some(Duration::ZERO)).unwrap_err();
        assert!(matches!(error, LockError::LockFailed { .. }), "{error}");
        clean("an error's Display", &error.to_string());
        clean("an error's Debug", &format!("{error:?}"));
        clean("PgLock's Debug after a failure", &format!("{lock:?}"));
        let error = lock.try_is_locked().unwrap_err();
        clean("try_is_locked's error", &format!("{error} {error:?}"));
        assert!(lock.is_locked(), "an unanswered question counts as locked");
    }
    // A holder that connected with the password: its description, and a loser's error.
    let holding = format!("postgres://postgres:{MARKER}@127.0.0.1:{port}/postgres?sslmode=disable");
    let (held, _) = take(&holding, &name);
    clean("a holder's Debug", &format!("{held:?}"));
    let mut loser = PgLock::new(holding.as_str(), &name);
    let error = loser.acquire(Some(Duration::ZERO)).unwrap_err();
    clean("AlreadyLocked", &format!("{error} {error:?}"));
    let holder = loser.holder().unwrap().unwrap();
    clean("the holder's description", &format!("{holder} {holder:?}"));
    clean("the server's log", &pg.log());
}

#[test]
fn a_holder_that_is_not_a_pglock_is_named_from_pg_stat_activity() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("psql-holder");
    let key = PgLock::new(pg.url(), &name).key();
    let mut psql = std::process::Command::new(pg.bin.join("psql"));
    psql.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
    ])
    .arg("-p")
    .arg(pg.port.to_string())
    .env("PGAPPNAME", "nightly-psql");
    let mut psql = common::Proc::spawn(psql);
    psql.send(&format!("SELECT pg_advisory_lock({key}); SELECT 'held';"));
    while psql.next_report() != "held" {}
    let backend = pg.holding_backend(key).unwrap();
    let mut lock = PgLock::new(pg.url(), &name);
    let error = lock.acquire(Some(Duration::ZERO)).unwrap_err();
    let expected = format!("a session on backend {backend} (\"nightly-psql\" from 127.0.0.1)");
    assert!(error.to_string().contains(&expected), "{error}");
    let error = lock.acquire(Some(Duration::from_millis(200))).unwrap_err();
    assert!(matches!(error, LockError::LockTimeout { .. }), "{error}");
    assert!(error.to_string().contains(&expected), "{error}");
    let holder = lock.holder().unwrap().unwrap();
    assert_eq!(holder.application_name, "nightly-psql");
    assert_eq!(holder.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(holder.backend_pid, backend);
    assert_eq!(lock.read_pid(), None, "psql is no pidlock: no PID to give");
    psql.close_stdin();
    lock.acquire(Some(BOUND)).unwrap();
}

#[test]
fn a_client_certificate_authenticates() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("client-cert");
    let base = format!(
        "host=localhost port={} user={} dbname=postgres sslmode=verify-full sslrootcert={}",
        pg.port,
        pg_support::CERT_USER,
        pg.ca.display()
    );
    // Without the certificate, the server refuses the role.
    let error = PgLock::new(base.as_str(), &name)
        .acquire(Some(Duration::ZERO))
        .unwrap_err();
    assert!(matches!(error, LockError::LockFailed { .. }), "{error}");
    let with_cert = format!(
        "{base} sslcert={} sslkey={} sslpassword=unused",
        pg.client_cert.display(),
        pg.client_key.display()
    );
    let (mut lock, _) = take(&with_cert, &name);
    lock.release().unwrap();
}

/// `pg-helper hold CONNINFO NAME 0` in an environment of its own; its first report.
fn hold_with_env(conninfo: &str, name: &str, env: &[(&str, &std::path::Path)]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pg-helper"));
    command.args(["hold", conninfo, name, "0"]);
    for (var, value) in env {
        command.env(var, value);
    }
    let mut helper = common::Proc::spawn(command);
    helper.next_report()
}

#[test]
fn sslrootcert_system_takes_the_system_s_roots_and_checks_the_name() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("system-roots");
    let conninfo = format!(
        "host=localhost port={} user=postgres dbname=postgres sslrootcert=system",
        pg.port
    );
    // The test CA as the system's bundle, as OpenSSL's SSL_CERT_FILE makes it.
    let line = hold_with_env(&conninfo, &name, &[("SSL_CERT_FILE", &pg.ca)]);
    assert!(line.starts_with("locked "), "{line}");
    let line = hold_with_env(&conninfo, &name, &[("SSL_CERT_FILE", &pg.wrong_ca)]);
    assert!(line.starts_with("failed "), "{line}");
    let weak = format!("{conninfo} sslmode=require");
    let line = hold_with_env(&weak, &name, &[("SSL_CERT_FILE", &pg.ca)]);
    assert!(
        line.contains("sslrootcert=system needs sslmode=verify-full"),
        "{line}"
    );
}

#[test]
fn a_service_from_each_of_libpq_s_service_files() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("service");
    let scratch = common::Scratch::new("pg-service");
    let section = format!(
        "[pidlock-test]\nhost=127.0.0.1\nport={}\nuser=postgres\ndbname=postgres\nsslmode=disable\n",
        pg.port
    );
    let user_file = scratch.path("services.conf");
    std::fs::write(&user_file, &section).unwrap();
    let home = scratch.path("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".pg_service.conf"), &section).unwrap();
    let sysconf = scratch.path("etc");
    std::fs::create_dir_all(&sysconf).unwrap();
    std::fs::write(sysconf.join("pg_service.conf"), &section).unwrap();
    let nowhere = scratch.path("nowhere");
    let empty = scratch.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for env in [
        vec![
            ("PGSERVICEFILE", user_file.as_path()),
            ("HOME", empty.as_path()),
        ],
        vec![("HOME", home.as_path())],
        vec![
            ("PGSERVICEFILE", nowhere.as_path()),
            ("HOME", empty.as_path()),
            ("PGSYSCONFDIR", sysconf.as_path()),
        ],
    ] {
        let line = hold_with_env("service=pidlock-test", &name, &env);
        assert!(line.starts_with("locked "), "{env:?}: {line}");
    }
    // The string's own keys win over the service's: a wrong port fails.
    let line = hold_with_env(
        "service=pidlock-test port=1",
        &name,
        &[("PGSERVICEFILE", user_file.as_path())],
    );
    assert!(line.starts_with("failed "), "{line}");
    let line = hold_with_env(
        "service=no-such-service",
        &name,
        &[
            ("PGSERVICEFILE", user_file.as_path()),
            ("HOME", empty.as_path()),
        ],
    );
    assert!(line.contains("connection service not found"), "{line}");
}

#[test]
fn a_fencing_token_never_repeats_after_a_failover_to_a_synchronous_standby() {
    let Some(primary) = pg_support::own_cluster(
        "127.0.0.1",
        None,
        "fsync = on\nsynchronous_commit = on\nfull_page_writes = on",
    ) else {
        return;
    };
    let standby = primary.standby();
    // Commits wait for the standby from now on: the token's among them.
    primary.set("synchronous_standby_names", "*");
    primary.wait_until("the standby is synchronous", || {
        primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1"
    });
    let name = unique("failover");
    let (lock, token) = take(&format!("{}?sslmode=disable", primary.url()), &name);
    // The primary dies at once, and the standby takes over.
    primary.crash();
    standby.promote();
    let (_lock, after) = take(&format!("{}?sslmode=disable", standby.url()), &name);
    assert!(
        after > token,
        "the promoted standby handed out {after} after {token}"
    );
    drop(lock);
}

/// `target_session_attrs=read-write` skips a standby listed first and takes the lock on the
/// primary: the session's socket is made by pidlock, host by host, as libpq does.
#[test]
fn read_write_skips_a_standby_for_the_primary() {
    let Some(primary) = pg_support::own_cluster("127.0.0.1", None, "") else {
        return;
    };
    let standby = primary.standby();
    let name = unique("read-write");
    let conninfo = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres sslmode=disable \
         target_session_attrs=read-write",
        standby.port, primary.port
    );
    let (lock, _) = take(&conninfo, &name);
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted";
    assert_eq!(primary.psql(held), "1", "the lock is on the primary");
    drop(lock);
}
