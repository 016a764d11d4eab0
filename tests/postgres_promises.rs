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
use pidlockfile::{LockError, PgLock};

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

/// A guarded function that takes `name` on `conninfo` and returns at once: a nested call in
/// a guarded body (or task) is refused at once if that body holds the lock already.
#[pidlockfile::single_instance(postgres = conninfo, name = name, timeout = 10, quiet)]
fn guarded(conninfo: &str, name: &str) -> Result<(), pidlockfile::Error> {
    Ok(())
}

/// Holds `name` on `holding` in a guarded body, and calls [`guarded`] for each of `others`
/// from inside it.
#[pidlockfile::single_instance(postgres = holding, name = name, timeout = 10, quiet)]
fn holding_then(
    holding: &str,
    others: &[String],
    name: &str,
) -> Result<Vec<Result<(), pidlockfile::Error>>, pidlockfile::Error> {
    Ok(others.iter().map(|other| guarded(other, name)).collect())
}

/// [`guarded`] for an async task.
#[pidlockfile::single_instance(postgres = conninfo, name = name, timeout = 10, quiet)]
async fn guarded_task(conninfo: &str, name: &str) -> Result<(), pidlockfile::Error> {
    Ok(())
}

/// [`holding_then`] for an async task: the nested calls are awaited by the task that holds.
#[pidlockfile::single_instance(postgres = holding, name = name, timeout = 10, quiet)]
async fn holding_then_task(
    holding: &str,
    others: &[String],
    name: &str,
) -> Result<Vec<Result<(), pidlockfile::Error>>, pidlockfile::Error> {
    let mut results = Vec::new();
    for other in others {
        results.push(guarded_task(other, name).await);
    }
    Ok(results)
}

/// Runs `holding_then_task` (on a runtime of its own) and `holding_then`: one result per
/// spelling in `others`, for the task, then for the plain body, with what was called.
fn nested_both_ways(
    holding: &str,
    others: &[String],
    name: &str,
) -> Vec<(String, Result<(), pidlockfile::Error>)> {
    // The task first: its check must decide for a spelling this process has never connected
    // with (nothing to go by but what the session reached).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let task = runtime
        .block_on(holding_then_task(holding, others, name))
        .unwrap();
    let plain = holding_then(holding, others, name).unwrap();
    let mut outcomes = Vec::new();
    for (how, results) in [("async", task), ("plain", plain)] {
        for (other, result) in others.iter().zip(results) {
            outcomes.push((format!("{how} {other}"), result));
        }
    }
    outcomes
}

/// Whether `outcome` is "refused at once as its own": `AlreadyLocked` naming this process,
/// never a `LockTimeout` after waiting for itself.
fn refused_as_its_own(outcome: &Result<(), pidlockfile::Error>) -> bool {
    matches!(
        outcome,
        Err(pidlockfile::Error::Lock(LockError::AlreadyLocked { pid, .. }))
            if *pid == Some(std::process::id())
    )
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
        // The socket's directory spelt with a final `/`: a spelling no other test uses.
        format!(
            "host={}/ port={} user={user} dbname=postgres",
            pg.dir.display(),
            pg.port
        ),
    ];
    // A guarded body or task holding the lock under one spelling is refused at once under
    // every spelling, on the plain and the async path.
    for holding in &spellings {
        for (call, outcome) in nested_both_ways(holding, &spellings, &name) {
            assert!(
                refused_as_its_own(&outcome),
                "holding {holding:?}, {call}: a wait for its own lock: {outcome:?}"
            );
        }
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
fn one_server_is_one_server_whatever_the_session_s_settings() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("settings");
    let base = format!(
        "host=127.0.0.1 port={} user={} dbname=postgres sslmode=disable",
        pg.port,
        pg_support::PLAIN_USER
    );
    // Settings that change how a timestamp, a number or a date reads as text.
    let others: Vec<String> = [
        "-c TimeZone=Asia/Tokyo",
        "-c DateStyle=SQL,DMY",
        "-c IntervalStyle=iso_8601 -c extra_float_digits=-15 -c lc_numeric=C",
    ]
    .iter()
    .map(|options| format!("{base} options='{options}'"))
    .chain([base.clone()])
    .collect();
    for (call, outcome) in nested_both_ways(&base, &others, &name) {
        assert!(
            refused_as_its_own(&outcome),
            "{call}: one server counted as two: {outcome:?}"
        );
    }
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
    // The same body or task, the same host text, another server: free, and taken; the same
    // server again is still a wait for itself.
    let others = [at("127.0.0.2"), at("127.0.0.1")];
    let outcomes = nested_both_ways(&at("127.0.0.1"), &others, &name);
    for (call, outcome) in &outcomes {
        if call.ends_with(&others[0]) {
            assert!(
                outcome.is_ok(),
                "{call}: another server refused: {outcome:?}"
            );
        } else {
            assert!(refused_as_its_own(outcome), "{call}: {outcome:?}");
        }
    }
    // Plain locks too: both servers hold the lock at once.
    let (_on_first, _) = take(&at("127.0.0.1"), &name);
    let mut on_second = PgLock::new(at("127.0.0.2"), &name);
    on_second.acquire(Some(BOUND)).unwrap();
    assert!(first.is_held(on_second.key()) && second.is_held(on_second.key()));
}

#[test]
fn a_guard_moved_to_another_thread_is_waited_for_like_any_holder() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let url = pg.url();
    let name = unique("moved-guard");
    let guard = PgLock::lock(&url, &name, Some(BOUND)).unwrap();
    // The guard moves to a keeper thread, which lets go once this thread waits for it.
    let (give, take_guard) = mpsc::channel::<pidlockfile::PgLockGuard>();
    let keeper = thread::spawn(move || {
        let guard = take_guard.recv_timeout(BOUND).unwrap();
        let deadline = std::time::Instant::now() + BOUND;
        while !pg.waits(std::process::id()) && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        guard.release().unwrap();
    });
    give.send(guard).unwrap();
    // The thread that took it no longer holds it: it waits for the keeper, and gets in.
    let mut again = PgLock::new(&url, &name);
    let taken = again.acquire(Some(BOUND));
    keeper.join().unwrap();
    taken.unwrap();
    assert!(again.i_am_locking());
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
        // A host value that swallowed other keys, the password among them.
        format!("host='127.0.0.1 password={MARKER}' port=1 user=u"),
        format!("host='127.0.0.1,x password={MARKER}' port=1,2 user=u"),
        format!("host='127.0.0.1\t{MARKER}' port=1 user=u"),
        format!("postgres://u@127.0.0.1:1/db?host=127.0.0.1%20password%3D{MARKER}"),
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
    for (round, env) in [
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
    ]
    .into_iter()
    .enumerate()
    {
        // A name of its own each time: the last holder's session may not be gone from the
        // server yet when the next one asks.
        let line = hold_with_env("service=pidlock-test", &format!("{name}-{round}"), &env);
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
/// primary: the session's socket is made by pidlockfile, host by host, as libpq does.
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

/// Every malformed form the review tried, without a server (port 1 refuses): the marker
/// shows in no `Debug`, no `server()` and no error.
#[test]
fn no_password_shows_for_any_malformed_form() {
    const M: &str = MARKER;
    let forms = [
        format!("postgres://u:{M}@127.0.0.1:1/db"),
        format!("postgres://u:{M}/x@127.0.0.1:1/db"),
        format!("postgres://u:{M}?x@127.0.0.1:1/db"),
        format!("postgres://u:{M}?x=1@127.0.0.1:1/db"),
        format!("postgres://u:{M}#x@127.0.0.1:1/db"),
        format!("postgres://u:{M}%@127.0.0.1:1/db"),
        format!("postgres://u:{M}%zz@127.0.0.1:1/db"),
        format!("postgres://u:{M}%ff@127.0.0.1:1/db"),
        format!("postgres://u:{M}:x@127.0.0.1:1/db"),
        format!("postgres://u:{M}]@127.0.0.1:1/db"),
        format!("postgres://u:[{M}@127.0.0.1:1/db"),
        format!("postgres://u@x:{M}/abc@127.0.0.1:1/db"),
        format!("postgres://u@x:{M}@127.0.0.1:1/db"),
        format!("postgres://u@srv:12345/{M}@127.0.0.1:1/db"),
        format!("postgres://u:{M}@127.0.0.1:1,/db"),
        format!("postgres://u:{M}@127.0.0.1:1/db?password"),
        format!("postgres://u:{M}"),
        format!("postgres://u:{M}/"),
        format!("postgresql://:{M}@127.0.0.1:1"),
        format!("postgres://u@127.0.0.1:1/db?password={M}&sslmode=bogus"),
        format!("postgres://u@127.0.0.1:1/db?password={M}&bogus=1"),
        format!("postgres://u@127.0.0.1:1/db?password={M}&port=x"),
        format!("postgres://u@127.0.0.1:1/db?password={M}&host="),
        format!("postgres://u@127.0.0.1:1/db?password={M}%"),
        format!("postgres://u@127.0.0.1:1/db?password=a%20{M}"),
        format!("postgres://u@127.0.0.1:1/db?password={M}&ssl=false"),
        format!("postgres://u@127.0.0.1:1/db?{M}"),
        format!(" postgres://u:{M}@127.0.0.1:1/db"),
        format!("POSTGRES://u:{M}@127.0.0.1:1/db"),
        format!("postgres:/u:{M}@127.0.0.1:1/db"),
        format!("postgres://u:{M}@[::1:1/db"),
        format!("postgres://u:{M}@[::1]x/db"),
        format!("host=127.0.0.1 port=1 user=u password={M}"),
        format!("host=127.0.0.1 port=1 user=u password=a {M}"),
        format!("host=127.0.0.1 port=1 user=u password='{M}"),
        format!("host=127.0.0.1 port=1 user=u password={M}'"),
        format!("host=127.0.0.1 port=1 user=u password='a b' {M}"),
        format!("host=127.0.0.1 port=1 user=u password='a'{M}"),
        format!("host=127.0.0.1 port=1 user=u password {M}"),
        format!("host=127.0.0.1 port=1 user=u password={M}\\"),
        format!("host=127.0.0.1 port=1 user=u password={M} sslmode={M}"),
        format!("host=127.0.0.1 port=1 user=u password={M} port={M}"),
        format!("host=127.0.0.1 port=1 user=u password={M} hostaddr={M}"),
        format!("host=127.0.0.1 port=1 user=u password={M} connect_timeout={M}"),
        format!("host=127.0.0.1 port=1 user=u password={M} channel_binding={M}"),
        format!("host=127.0.0.1 port=1 user=u password={M} target_session_attrs={M}"),
        format!("host=127.0.0.1 port=1 user=u password = {M} x"),
        format!("host=127.0.0.1 port=1 user=u {M}=x"),
        format!("host=127.0.0.1 port=1 user=u password={M}=x y"),
        format!("host=127.0.0.1 port=1 user=u password=\"{M} x\""),
        format!("host=127.0.0.1 port=1 user=u password={M}\u{a0}x"),
        format!("host=127.0.0.1 port=1 user=u\npassword={M}\nbad"),
        format!("host=127.0.0.1,x port=1,2,3 user=u password={M}"),
        format!("host=127.0.0.1 hostaddr=1.1.1.1,2.2.2.2 port=1 user=u password={M}"),
        format!("host='127.0.0.1 password={M}' port=1 user=u"),
        format!("host='127.0.0.1 password={M}',localhost port=1 user=u"),
    ];
    let mut leaks = Vec::new();
    for form in &forms {
        let mut lock = PgLock::new(form.as_str(), "job");
        let shown = format!("{lock:?} {}", lock.server());
        let error = lock.acquire(Some(Duration::ZERO)).err();
        let text = match &error {
            Some(e) => format!("{e} {e:?} {lock:?}"),
            None => "no error".to_owned(),
        };
        if shown.contains(M) || text.contains(M) {
            leaks.push(format!("{form:?}\n    -> {shown}\n    -> {text}"));
        }
    }
    assert!(leaks.is_empty(), "marker shown:\n{}", leaks.join("\n"));
}

/// libpq's multi-host strings with one port, which applies to every host: the `key=value`
/// form, a URL with the port as a parameter, and `PGHOST=a,b` with `PGPORT` (in a child
/// process, whose environment is its own). Each connects to the first host.
#[test]
fn several_hosts_with_one_port_in_each_form() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("multihost");
    for conninfo in [
        format!(
            "host=127.0.0.1,localhost port={} user=postgres dbname=postgres sslmode=disable",
            pg.port
        ),
        format!(
            "postgres://postgres@127.0.0.1,localhost/postgres?port={}&sslmode=disable",
            pg.port
        ),
    ] {
        let mut lock = PgLock::new(conninfo.as_str(), &name);
        lock.acquire(Some(BOUND))
            .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
        assert!(pg.is_held(lock.key()));
        lock.release().unwrap();
    }
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pg-helper"));
    command
        .env("PGHOST", "127.0.0.1,localhost")
        .env("PGPORT", pg.port.to_string())
        .env_remove("PGHOSTADDR")
        .env_remove("PGSERVICE")
        .args([
            "hold",
            "user=postgres dbname=postgres sslmode=disable",
            &name,
            "0",
        ]);
    let mut child = common::Proc::spawn(command);
    let line = child.next_report();
    assert!(line.starts_with("locked "), "PGHOST=a,b: {line}");
    assert!(pg.is_held(PgLock::new("", &name).key()));
}

/// A lock lost because its fencing token could not be made (its commit waits for a
/// synchronous standby that is gone) lets go on the server too: the backend stuck in
/// `SyncRep` gets a cancel request, and the next holder gets in. The request goes the way the
/// session went, on a socket pidlockfile opens itself (tokio-postgres knows no host for a session
/// over a socket of ours): plain TCP, TLS (`verify-full`, so by the certificate's name), and
/// the Unix socket.
#[test]
fn a_lock_lost_by_its_token_lets_go_on_the_server() {
    let Some(pg) =
        pg_support::own_cluster("127.0.0.1", None, "synchronous_standby_names = 'gone'\n")
    else {
        return;
    };
    let routes = [
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            pg.port
        ),
        format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full \
             sslrootcert={}",
            pg.port,
            pg.ca.display()
        ),
        pg.socket_conninfo(),
    ];
    for conninfo in routes {
        let name = unique("syncrep");
        let mut holder = PgLock::new(&conninfo, &name).lost_after(Duration::from_secs(2));
        holder
            .acquire(Some(BOUND))
            .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
        assert_eq!(
            holder.fencing_token(),
            0,
            "{conninfo}: a commit that waits cannot be a token"
        );
        assert!(holder.is_lost() && !holder.i_am_locking(), "{conninfo}");
        // Not dropped: the lock is free for another holder all the same (here another thread,
        // as another host would).
        let taker = {
            let (conninfo, name) = (conninfo.clone(), name.clone());
            thread::spawn(move || {
                let mut other = PgLock::new(conninfo, name);
                other.acquire(Some(BOUND)).map(|()| other)
            })
        };
        let taken = taker.join().unwrap();
        let stuck = pg.psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name LIKE 'pidlockfile %' AND wait_event = 'SyncRep'",
        );
        drop(holder);
        let other =
            taken.unwrap_or_else(|e| panic!("{conninfo}: the lost lock kept the server's: {e}"));
        assert!(other.i_am_locking(), "{conninfo}");
        assert_eq!(stuck, "0", "{conninfo}: a backend still waits in SyncRep");
    }
}
