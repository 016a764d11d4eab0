//! `PgLock` against a real PostgreSQL server that these tests start (see `pg_support`): the
//! seed's contract, crashes, sessions terminated by the server, contention with kills, sqlx
//! interop, TLS, bad input, and `#[single_instance(postgres = ...)]`.
//!
//! The server restart and the network partition live in `postgres_faults.rs`, with a cluster
//! of their own, because they disturb every session on it.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;
use pidlock_test_support::pg as pg_support;

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, now_ns};
use pg_support::Cluster;
use pidlockfile::{LockError, PgLock, UnlockError};

/// A lock name of its own for each test, so that tests running at once never meet.
fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn pg_helper(args: &[&str]) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pg-helper"));
    command.args(args);
    Proc::spawn(command)
}

/// `pg-helper hold` that has reported holding the lock; returns it and its token.
fn holder(conninfo: &str, name: &str) -> (Proc, u64) {
    let mut holder = pg_helper(&["hold", conninfo, name, "0"]);
    let line = holder.next_report();
    let token = line
        .strip_prefix("locked ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("holder did not lock: {line}"));
    (holder, token)
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Runs `sql` on a connection of the test's own, opened beforehand, so that timing it measures
/// the statement and not a `psql` start-up.
struct Admin {
    runtime: tokio::runtime::Runtime,
    connection: sqlx::PgConnection,
}

impl Admin {
    fn new(pg: &Cluster) -> Admin {
        use sqlx::Connection;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connection = runtime
            .block_on(sqlx::PgConnection::connect(&format!(
                "{}?sslmode=disable",
                pg.url()
            )))
            .unwrap();
        Admin {
            runtime,
            connection,
        }
    }

    /// Terminates the sessions whose `application_name` is pidlockfile's for `pid`; returns how
    /// many it terminated.
    fn terminate(&mut self, pid: u32) -> i64 {
        let sql = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE 'pidlock {pid}@%'"
        );
        self.runtime
            .block_on(sqlx::query_scalar::<_, i64>(&sql).fetch_one(&mut self.connection))
            .unwrap()
    }
}

#[test]
fn the_key_is_sqlx_s() {
    let lock = PgLock::new("host=db.invalid", "my first Postgres advisory lock!");
    assert_eq!(lock.key(), -5560419505042474287);
    assert_eq!(PgLock::with_key("host=db.invalid", 7).key(), 7);
}

#[test]
fn seed_contract_on_postgres() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("contract");
    let url = pg.url();
    let server = format!("PostgreSQL at 127.0.0.1:{}", pg.port);
    let me = std::process::id();

    let mut first = PgLock::new(&url, &name);
    assert!(!first.is_locked());
    assert!(!first.i_am_locking());
    assert_eq!(first.holder().unwrap(), None);
    assert!(matches!(
        first.release(),
        Err(UnlockError::NotLocked { .. })
    ));

    first.acquire(None).unwrap();
    assert!(first.is_locked());
    assert!(first.i_am_locking());
    assert!(!first.is_lost());
    assert!(pg.is_held(first.key()));
    let holder = first.holder().unwrap().unwrap();
    assert_eq!((holder.pid, holder.host.clone()), (me, host_name()));
    let token = first.fencing_token();
    assert!(token > 0);

    // Not reentrant, and never waits for itself.
    let started = Instant::now();
    assert!(matches!(
        first.acquire(Some(Duration::from_secs(60))),
        Err(LockError::AlreadyLocked { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Another instance waits its turn, on this thread as on any other: `first` (or a guard
    // around it) may have moved to another thread, which will release it. As for the file.
    let mut second = PgLock::new(&url, &name);
    assert!(matches!(
        second.acquire(Some(Duration::from_millis(300))),
        Err(LockError::LockTimeout { pid: Some(pid), .. }) if pid == me
    ));

    // Another instance: AlreadyLocked naming the holder, the host and the server.
    let error = second.acquire(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{name} is locked by pid {me} on {} ({server})", host_name())
    );
    assert_eq!(error.pid(), Some(me));
    assert_eq!(error.host(), Some(host_name().as_str()));
    assert_eq!(error.server(), Some(server.as_str()));
    assert!(second.is_locked());
    assert!(!second.i_am_locking());
    match second.release() {
        Err(UnlockError::NotMyLock { pid, host, .. }) => {
            assert_eq!((pid, host), (Some(me), Some(host_name())));
        }
        other => panic!("{other:?}"),
    }

    // A timeout is respected, on another thread (this one would be waiting for itself).
    let (url2, name2) = (url.clone(), name.clone());
    let timed = thread::spawn(move || {
        let started = Instant::now();
        let result = PgLock::new(url2, name2).acquire(Some(Duration::from_millis(300)));
        (result, started.elapsed())
    })
    .join()
    .unwrap();
    match timed {
        (Err(error @ LockError::LockTimeout { .. }), elapsed) => {
            assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
            assert!(error.to_string().contains("gave up after 300ms"), "{error}");
            assert!(error.to_string().contains(&server), "{error}");
        }
        (other, _) => panic!("{other:?}"),
    }

    // A waiter without a timeout is woken by the release.
    let (url3, name3) = (url.clone(), name.clone());
    let waiter = thread::spawn(move || {
        let mut lock = PgLock::new(url3, name3);
        lock.acquire(None).map(|()| lock)
    });
    pg.wait_until("the waiter waits", || {
        pg.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND objid = {}",
            (first.key() as u64) & 0xffff_ffff
        )) == "1"
    });
    first.release().unwrap();
    assert!(!first.i_am_locking());
    let mut next = waiter.join().unwrap().unwrap();
    // The waiter holds it now.
    assert!(matches!(
        first.release(),
        Err(UnlockError::NotMyLock { .. })
    ));
    assert!(next.i_am_locking());
    assert!(next.fencing_token() > token, "tokens must grow");
    next.release().unwrap();
    assert!(!PgLock::new(&url, &name).is_locked());
    assert!(matches!(
        first.release(),
        Err(UnlockError::NotLocked { .. })
    ));

    // The guard releases on drop.
    {
        let guard = PgLock::lock(&url, &name, Some(Duration::ZERO)).unwrap();
        assert!(guard.i_am_locking());
        assert!(!guard.loss_watch().is_lost());
    }
    let left = PgLock::new(&url, &name);
    assert!(!pg.is_held(left.key()), "{:?}", left.holder());
}

#[test]
fn a_killed_holder_lets_the_next_process_in_within_a_second() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("crash");
    let url = pg.url();
    let (mut first, token) = holder(&url, &name);
    let mut waiter = pg_helper(&["hold", &url, &name, "30000"]);
    pg.wait_until("the waiter waits", || {
        pg.backends(&format!("pidlock {}@", waiter.id())).len() == 1 && pg.waits(waiter.id())
    });
    let killed = now_ns();
    first.kill();
    let line = waiter.next_report();
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("locked"), "{line}");
    let next_token: u64 = parts.next().unwrap().parse().unwrap();
    let at: u128 = parts.next().unwrap().parse().unwrap();
    let took = Duration::from_nanos((at - killed) as u64);
    eprintln!("SIGKILLed holder to next holder: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(next_token > token);
}

#[test]
fn a_terminated_session_is_reported_lost_within_200ms() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("terminate");
    let url = pg.url();
    let mut admin = Admin::new(pg);

    // Another process.
    let (mut holder, _) = holder(&url, &name);
    let sent = now_ns();
    assert_eq!(admin.terminate(holder.id()), 1);
    let line = holder.next_report();
    let mut parts = line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("lost"), "{line}");
    let at: u128 = parts.next().unwrap().parse().unwrap();
    let took = Duration::from_nanos((at.saturating_sub(sent)) as u64);
    eprintln!("pg_terminate_backend to the holder's loss report: {took:?}");
    assert!(took < Duration::from_millis(200), "{took:?}: {line}");
    assert!(
        parts.next().unwrap().contains("terminating connection"),
        "{line}"
    );
    holder.send("status");
    assert_eq!(holder.next_report(), "status false true");
    holder.send("release");
    assert!(holder.next_report().starts_with("release-failed "));

    // This process: the loss API.
    let mut lock = PgLock::new(&url, &name);
    lock.acquire(Some(Duration::from_secs(10))).unwrap();
    let watch = lock.loss_watch().unwrap();
    assert!(!watch.is_lost());
    // Only this lock's session: every test of this binary runs in this process, and a guarded
    // test's lock, lost, exits the process.
    let backend = pg.holding_backend(lock.key()).unwrap();
    pg.psql(&format!("SELECT pg_terminate_backend({backend})"));
    let lost = watch.wait(Some(Duration::from_secs(10))).expect("lost");
    assert_eq!(lost.name(), name);
    assert!(lost.to_string().starts_with(&format!(
        "{name} lost its lock on PostgreSQL at 127.0.0.1:{}",
        pg.port
    )));
    assert!(lock.is_lost());
    assert!(!lock.i_am_locking());
    assert!(matches!(lock.release(), Err(UnlockError::Lost { .. })));
    // Taken anew after the loss.
    lock.acquire(Some(Duration::from_secs(10))).unwrap();
    assert!(lock.i_am_locking());
}

#[test]
fn single_instance_on_postgres_refuses_a_second_copy_and_fails_closed_on_a_loss() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("si-fleet");
    let url = pg.url();
    let fixture = |bin: &str| {
        let mut command = Command::new(bin);
        command
            .env("PIDLOCK_TEST_PG", &url)
            .env("PIDLOCK_TEST_NAME", &name);
        Proc::spawn(command)
    };
    let mut first = fixture(env!("CARGO_BIN_EXE_si-fleet"));
    let line = first.next_report();
    assert!(line.starts_with("running "), "{line}");

    let mut second = fixture(env!("CARGO_BIN_EXE_si-fleet"));
    let (status, output) = second.finish();
    assert_eq!(status.code(), Some(75), "{output:?}");
    let expected = format!(
        "stderr: error: si-fleet is already running (pid {} on {}, lock {name} on PostgreSQL at 127.0.0.1:{})",
        first.id(),
        host_name(),
        pg.port
    );
    assert_eq!(output, vec![expected]);

    let mut admin = Admin::new(pg);
    admin.terminate(first.id());
    let (status, output) = first.finish();
    assert_eq!(status.code(), Some(75), "{output:?}");
    assert_eq!(output.len(), 1, "{output:?}");
    assert!(
        output[0].starts_with(&format!(
            "stderr: error: {name} lost its lock on PostgreSQL at 127.0.0.1:{} (",
            pg.port
        )) && output[0].ends_with("); exiting"),
        "{output:?}"
    );

    // `on_lost = handler` runs the handler instead, and the program goes on.
    let mut handled = fixture(env!("CARGO_BIN_EXE_si-fleet-on-lost"));
    assert!(handled.next_report().starts_with("running "));
    admin.terminate(handled.id());
    let line = handled.next_report();
    assert!(
        line.starts_with(&format!("on_lost: {name} lost its lock")),
        "{line}"
    );
    handled.send("return");
    assert_eq!(handled.next_report(), "returned");
    assert_eq!(handled.wait().code(), Some(0));
}

#[test]
fn contention_six_processes_fifty_rounds_with_kills_never_overlap() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let scratch = common::Scratch::new("pg-contention");
    let log = scratch.path("holds.log");
    let name = unique("contention");
    let conninfo = pg.socket_conninfo();
    const PROCESSES: usize = 6;
    const ROUNDS: usize = 50;
    let log_str = log.to_str().unwrap().to_owned();
    let spawn =
        |rounds: usize| pg_helper(&["contend", &conninfo, &name, &rounds.to_string(), &log_str]);
    let completed_by = |pid: u32| -> usize {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("start ") && l.ends_with(&format!(" {pid}")))
            .count()
    };
    // Each slot owes ROUNDS completed holds, across the processes that fill it.
    let mut slots: Vec<(Proc, usize)> = (0..PROCESSES).map(|_| (spawn(ROUNDS), ROUNDS)).collect();
    let mut seed = (now_ns() as u64) | 1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "contention did not finish");
        let mut running = 0;
        for (proc, owed) in &mut slots {
            if *owed == 0 {
                continue;
            }
            if proc.has_exited() {
                let done = completed_by(proc.id());
                assert!(done >= *owed, "a contender failed: {:?}", proc.rest());
                *owed = 0;
            } else {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(20 + random(60)));
        if kills < 12 && random(3) == 0 {
            let victim = random(PROCESSES as u64) as usize;
            let (proc, owed) = &mut slots[victim];
            if *owed > 0 && !proc.has_exited() {
                proc.kill();
                kills += 1;
                let left = owed.saturating_sub(completed_by(proc.id()));
                *owed = left;
                if left > 0 {
                    *proc = spawn(left);
                }
            }
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut holds: Vec<(u128, u128, u64)> = text
        .lines()
        .filter(|l| !l.starts_with("start "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let starts: Vec<(u128, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(
        holds.len(),
        PROCESSES * ROUNDS,
        "every owed hold was completed"
    );
    holds.sort_unstable();
    for pair in holds.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two holders at once: {pair:?}");
        assert!(pair[1].2 > pair[0].2, "fencing tokens must grow: {pair:?}");
    }
    // Holds cut short by a kill too: every start, in order, has a greater token.
    let mut starts = starts;
    starts.sort_unstable();
    for pair in starts.windows(2) {
        assert!(pair[1].1 > pair[0].1, "fencing tokens must grow: {pair:?}");
    }
    eprintln!("{} holds, {kills} kills", holds.len());
}

/// Holds sqlx's `PgAdvisoryLock` on `PIDLOCK_SQLX_NAME` when run with `PIDLOCK_SQLX_URL` set
/// (as a child of `sqlx_s_lock_of_the_same_name_keeps_pglock_out`); does nothing otherwise.
#[test]
fn sqlx_holder_process() {
    let (Ok(url), Ok(name)) = (
        std::env::var("PIDLOCK_SQLX_URL"),
        std::env::var("PIDLOCK_SQLX_NAME"),
    ) else {
        return;
    };
    use sqlx::Connection;
    use sqlx::postgres::PgAdvisoryLock;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connection = sqlx::PgConnection::connect(&url).await.unwrap();
        let lock = PgAdvisoryLock::new(name);
        let guard = lock.acquire(connection).await.unwrap();
        println!("sqlx-held");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        guard.release_now().await.unwrap();
    });
}

#[test]
fn sqlx_s_lock_of_the_same_name_keeps_pglock_out() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("sqlx interop");
    let url = pg.url();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "sqlx_holder_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PIDLOCK_SQLX_URL", format!("{url}?sslmode=disable"))
        .env("PIDLOCK_SQLX_NAME", &name);
    let mut sqlx_holder = Proc::spawn(command);
    loop {
        let line = sqlx_holder.next_report();
        // The test harness prints "test sqlx_holder_process ... " before the test's own line.
        if line.ends_with("sqlx-held") {
            break;
        }
    }
    let mut lock = PgLock::new(&url, &name);
    let error = lock.acquire(Some(Duration::ZERO)).unwrap_err();
    assert!(matches!(error, LockError::AlreadyLocked { .. }), "{error}");
    let holder = lock.holder().unwrap().unwrap();
    assert_eq!(holder.pid, 0, "{holder:?}");
    assert!(holder.backend_pid > 0);
    // Named from pg_stat_activity: its server process and its client's address.
    let named = format!("a session on backend {} (", holder.backend_pid);
    assert!(error.to_string().contains(&named), "{error}");
    assert!(error.to_string().contains("from 127.0.0.1"), "{error}");

    sqlx_holder.close_stdin();
    lock.acquire(Some(Duration::from_secs(30))).unwrap();
    assert!(lock.i_am_locking());
}

#[test]
fn tls_verify_full_with_the_test_ca_and_a_clear_failure_with_a_wrong_one() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("tls");
    let base = format!(
        "port={} user=postgres dbname=postgres connect_timeout=5",
        pg.port
    );
    let verify = |host: &str, mode: &str, ca: &std::path::Path| {
        format!("{base} {host} sslmode={mode} sslrootcert={}", ca.display())
    };

    let mut lock = PgLock::new(verify("host=localhost", "verify-full", &pg.ca), &name);
    lock.acquire(Some(Duration::ZERO)).unwrap();
    let ssl = pg.psql(&format!(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name LIKE 'pidlock {}@%'",
        std::process::id()
    ));
    assert!(ssl.lines().any(|l| l == "t"), "{ssl}");
    lock.release().unwrap();

    // The certificate names localhost and 127.0.0.1, not this name: verify-full refuses,
    // verify-ca (the chain only) accepts.
    let misnamed = "host=pidlock-test.invalid hostaddr=127.0.0.1";
    let error = PgLock::new(verify(misnamed, "verify-full", &pg.ca), &name)
        .acquire(Some(Duration::ZERO))
        .unwrap_err();
    assert!(matches!(error, LockError::LockFailed { .. }), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    PgLock::new(verify(misnamed, "verify-ca", &pg.ca), &name)
        .acquire(Some(Duration::ZERO))
        .unwrap();

    let started = Instant::now();
    let error = PgLock::new(verify("host=localhost", "verify-full", &pg.wrong_ca), &name)
        .acquire(None)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    let text = error.to_string();
    assert!(matches!(error, LockError::LockFailed { .. }), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.starts_with(&format!(
            "cannot lock {name} on PostgreSQL at localhost:{}: ",
            pg.port
        )) && text.contains("certificate"),
        "{text}"
    );
}

#[test]
fn bad_input_and_a_bad_network_fail_with_one_readable_line_in_time() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("bad");
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // A server that accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _keep = thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let cases = [
        (
            "host=db bogus=1",
            "invalid connection option (the key after \"host\")",
        ),
        ("postgres://u@[::1/db", "missing \"]\""),
        (
            "postgres://postgres@no-such-host.invalid/postgres?connect_timeout=5",
            "error connecting",
        ),
        (
            &format!("postgres://postgres@127.0.0.1:{closed_port}/postgres"),
            "refused",
        ),
        (
            &format!(
                "postgres://{}:wrong@127.0.0.1:{}/postgres",
                pg_support::PASSWORD_USER,
                pg.port
            ),
            "password authentication failed",
        ),
        (
            &format!(
                "host=localhost port={} user=postgres sslmode=verify-full sslrootcert={}",
                pg.port,
                pg.wrong_ca.display()
            ),
            "certificate",
        ),
        (
            &format!("host=127.0.0.1 port={silent_port} user=postgres connect_timeout=2"),
            "no answer from the server within 2s",
        ),
        (
            &format!(
                "host=localhost port={} user=postgres sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
                pg.port
            ),
            "cannot read sslrootcert /nonexistent/ca.pem",
        ),
    ];
    for (conninfo, reason) in cases {
        for timeout in [Some(Duration::ZERO), None] {
            let started = Instant::now();
            let error = PgLock::new(conninfo, &name).acquire(timeout).unwrap_err();
            let took = started.elapsed();
            let text = error.to_string();
            assert!(
                matches!(error, LockError::LockFailed { .. }),
                "{conninfo}: {text}"
            );
            assert!(text.contains(reason), "{conninfo}: {text}");
            assert!(!text.contains('\n'), "{conninfo}: {text}");
            assert!(!text.contains("wrong@"), "the password leaked: {text}");
            assert!(took < Duration::from_secs(20), "{conninfo}: {took:?}");
        }
    }
    // The right password gets in.
    let mut lock = PgLock::new(
        format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            pg_support::PASSWORD_USER,
            pg_support::PASSWORD,
            pg.port
        ),
        &name,
    );
    lock.acquire(Some(Duration::ZERO)).unwrap();
}

#[test]
fn the_environment_fills_in_the_connection_string() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("env");
    // A child process, so that this test's environment is not everyone's.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_pg-helper"));
    holder
        .args(["hold", "", &name, "0"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", pg_support::PASSWORD_USER)
        .env("PGPASSWORD", pg_support::PASSWORD)
        .env("PGDATABASE", "postgres")
        .env("PGSSLMODE", "disable");
    let mut holder = Proc::spawn(holder);
    let line = holder.next_report();
    assert!(line.starts_with("locked "), "{line}");
    assert!(PgLock::new(pg.url(), &name).is_locked());
    assert_eq!(PgLock::new(pg.url(), &name).read_pid(), Some(holder.id()));
}

#[pidlockfile::single_instance(postgres = url, name = name, timeout = "forever", quiet)]
fn inner_plain(url: &str, name: &str) -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[pidlockfile::single_instance(postgres = url, name = name, timeout = "forever", quiet)]
fn outer_plain(url: &str, name: &str) -> Result<(), pidlockfile::Error> {
    match inner_plain(url, name) {
        Err(pidlockfile::Error::Lock(LockError::AlreadyLocked { pid, .. })) => {
            assert_eq!(pid, Some(std::process::id()));
            Ok(())
        }
        other => panic!("a guarded call waited for its own lock, or got in: {other:?}"),
    }
}

#[pidlockfile::single_instance(postgres = url, name = name, timeout = "forever", quiet)]
async fn inner_async(url: &str, name: &str) -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[pidlockfile::single_instance(postgres = url, name = name, timeout = "forever", quiet)]
async fn outer_async(url: &str, name: &str) -> Result<(), pidlockfile::Error> {
    match inner_async(url, name).await {
        Err(pidlockfile::Error::Lock(LockError::AlreadyLocked { pid, .. })) => {
            assert_eq!(pid, Some(std::process::id()));
            Ok(())
        }
        other => panic!("a guarded task waited for its own lock, or got in: {other:?}"),
    }
}

#[test]
fn a_guarded_function_or_task_never_waits_for_its_own_fleet_lock() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let url = pg.url();
    let name = unique("self-wait");
    let started = Instant::now();
    outer_plain(&url, &name).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(outer_async(&url, &name)).unwrap();
    // Two tasks of one thread take turns instead.
    runtime
        .block_on(async {
            let (a, b) = tokio::join!(
                tokio::spawn({
                    let (url, name) = (url.clone(), name.clone());
                    async move { inner_async(&url, &name).await }
                }),
                tokio::spawn({
                    let (url, name) = (url.clone(), name.clone());
                    async move { inner_async(&url, &name).await }
                })
            );
            a.unwrap().and(b.unwrap())
        })
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn review_a_short_timeout_on_a_free_lock_takes_it_even_when_connecting_uses_it_up() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    // TLS (verify-full) takes several round trips to connect: longer than 1 ms.
    let conninfo = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        pg.port,
        pg.ca.display()
    );
    for ms in [1, 2, 5] {
        let mut lock = PgLock::new(&conninfo, unique("short"));
        lock.acquire(Some(Duration::from_millis(ms))).unwrap();
        assert!(lock.i_am_locking());
    }
    // A Unix socket never uses TLS, whatever sslmode says, as in libpq.
    let mut lock = PgLock::new(
        format!("{} sslmode=require", pg.socket_conninfo()),
        unique("socket"),
    );
    lock.acquire(Some(Duration::ZERO)).unwrap();
}

#[test]
fn review_the_same_name_in_another_database_is_another_lock() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let name = unique("per-database");
    let mut here = PgLock::new(pg.url(), &name);
    here.acquire(None).unwrap();
    let other = format!("postgres://postgres@127.0.0.1:{}/other", pg.port);
    let mut there = PgLock::new(other, &name);
    // The same thread: not a wait for itself, since it is another lock.
    there.acquire(Some(Duration::from_secs(5))).unwrap();
    assert!(there.i_am_locking() && here.i_am_locking());
}

#[test]
fn review_the_server_s_idle_session_timeout_does_not_take_the_lock() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let conninfo = format!("postgres://pidlock_idle@127.0.0.1:{}/postgres", pg.port);
    let mut lock = PgLock::new(conninfo, unique("idle")).lost_after(Duration::from_secs(8));
    lock.acquire(Some(Duration::ZERO)).unwrap();
    let watch = lock.loss_watch().unwrap();
    // The role's idle_session_timeout is 1.5 s; pings come every 4 s (lost_after / 2).
    assert_eq!(watch.wait(Some(Duration::from_secs(4))), None);
    assert!(lock.i_am_locking());
    lock.release().unwrap();
}

/// A thread blocked in an untimed `LossWatch::wait` returns `None` when another thread
/// releases the lock (the release wakes the threads that wait, and only those).
#[test]
fn a_release_wakes_a_thread_blocked_in_loss_watch_wait() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let mut lock = PgLock::new(pg.url(), unique("watch-release"));
    lock.acquire(Some(Duration::ZERO)).unwrap();
    let watch = lock.loss_watch().unwrap();
    let (waiting, waits) = std::sync::mpsc::channel();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        waiting.send(()).unwrap();
        done.send(watch.wait(None)).unwrap();
    });
    waits.recv_timeout(Duration::from_secs(10)).unwrap();
    // The thread may not be blocked yet: then it finds the lock released at once, as it must.
    lock.release().unwrap();
    let outcome = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiting thread was not woken by the release");
    assert_eq!(outcome, None);
    waiter.join().unwrap();
}

#[test]
fn review_lost_after_is_kept_within_what_the_kernel_takes() {
    let lock = PgLock::new("host=db.invalid", "x").lost_after(Duration::MAX);
    assert_eq!(lock.lost_after_duration(), Duration::from_secs(32_767));
    let lock = PgLock::new("host=db.invalid", "x").lost_after(Duration::ZERO);
    assert_eq!(lock.lost_after_duration(), Duration::from_secs(1));
}

#[test]
fn review_a_forked_child_can_use_a_pglock_of_its_own() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let mut child = pg_helper(&["fork-use", &pg.url(), &unique("fork")]);
    assert_eq!(child.next_report(), "parent locked");
    assert_eq!(child.next_report(), "child locked");
    assert_eq!(child.wait().code(), Some(0));
}

#[pidlockfile::single_instance(postgres = url, name = name, timeout = "forever", quiet)]
async fn waits_forever(url: &str, name: &str) -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[test]
fn review_a_dropped_async_wait_leaves_no_session_and_never_takes_the_lock() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let url = pg.url();
    let name = unique("abandon");
    let (mut holder, token) = holder(&url, &name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..3 {
        let waited = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(300), waits_forever(&url, &name)).await
        });
        assert!(waited.is_err(), "the wait ended: {waited:?}");
    }
    let me = std::process::id();
    pg.wait_until("the abandoned waits' sessions are gone", || {
        pg.backends(&format!("pidlock {me}@")).is_empty()
    });
    holder.send("release");
    assert!(holder.next_report().starts_with("released "));
    // Nobody queued behind the holder: the lock is free at once.
    let mut next = PgLock::new(&url, &name);
    next.acquire(Some(Duration::ZERO)).unwrap();
    assert!(next.fencing_token() > token);
}

/// `share_session`: a child that inherits the session's socket holds the lock after its
/// holder's release (which then closes only its own copy, and never unlocks), also over TLS,
/// which the child never speaks; the lock is free once the child has exited.
#[test]
fn a_shared_session_keeps_the_lock_until_the_last_process_with_its_socket_exits() {
    let Some(pg) = pg_support::cluster() else {
        return;
    };
    let tls = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        pg.port,
        pg.ca.display()
    );
    for conninfo in [pg.url(), tls, pg.socket_conninfo()] {
        let name = unique("shared");
        let mut lock = PgLock::new(conninfo.clone(), &name);
        assert!(lock.share_session().is_err(), "nothing is held yet");
        lock.acquire(Some(Duration::ZERO)).unwrap();
        let socket = lock.share_session().unwrap();
        // Without close-on-exec, for the child only.
        let inherited = rustix::io::dup(&socket).unwrap();
        let mut child = Command::new("sleep").arg("300").spawn().unwrap();
        drop((inherited, socket));
        lock.release().unwrap();
        let mut other = PgLock::new(conninfo.clone(), &name);
        assert!(
            matches!(
                other.acquire(Some(Duration::ZERO)),
                Err(LockError::AlreadyLocked { .. })
            ),
            "the child holds the lock after the release ({conninfo})"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        other.acquire(Some(Duration::from_secs(10))).unwrap();
        other.release().unwrap();
    }
}
