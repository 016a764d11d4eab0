//! The fleet lock against a bare PostgreSQL client, measured in one run on one server.
//!
//! - Handoff: from the holder's release to the waiter's return, for `acquire(None)` and
//!   `acquire(Some(10 s))`, against two bare tokio-postgres sessions doing
//!   `pg_advisory_lock` / `pg_advisory_unlock`. Rounds are interleaved, so that the machine's
//!   noise falls on both alike. Target (issue 15): p50 at most 1.15 times the bare client's.
//! - The fencing token: the first `fencing_token()` after an acquisition (a transaction whose
//!   commit is flushed to the WAL), against a bare round trip that reads a transaction id
//!   without making it durable (`SELECT pg_current_xact_id()`, what the token was before it
//!   had to survive a crash). It costs one WAL flush, so the server's `fsync` setting is
//!   printed with it: `scripts/with-postgres.sh` runs with `fsync = off`, which hides the
//!   disk's part; point `DATABASE_URL` at a server with `fsync = on` to see it.
//! - The CPU that a held lock's watch (the connection's driver and its pings) costs per
//!   minute, against a process that keeps a bare connection open. Target (issue 15): 2 ms.
//!
//! # Where the time goes (profiled for issue 15)
//!
//! Round trips, counted per path: the waiter's `acquire(None)` is one statement
//! (`SELECT pg_advisory_lock(k)`) and `acquire(Some(d))` one simple query of three statements
//! (`SET lock_timeout`, the lock, `SET lock_timeout = 0`), one round trip; the release is one
//! (`SELECT pg_advisory_unlock(k)`, then the session closes without waiting for an answer); the
//! fencing token and the holder's name are read off the handoff's path. That is the bare
//! client's count. What the fleet lock pays on top is where the connection is driven: on the
//! runtime's one background thread (`postgres/runtime.rs`), which is what lets a held lock see a
//! closed session at once without a query. So the release hands its statement to that thread
//! and waits to be woken with the answer, and the waiter is woken by that thread when the
//! server's answer arrives: two cross-thread wake-ups on each side, which on a busy 2-core VM
//! cost more than the server's own work (the bare client drives its socket on the thread that
//! waits).
//!
//! The watch of a held lock pings every `lost_after / 4` (2.5 s by default): the loss bound
//! itself would be kept by one ping in flight per `lost_after`, but each ping must be answered
//! within `lost_after` of the last answer, and four per bound leave three quarters of it for a
//! slow answer (a checkpoint, a busy server) before a false loss. Each ping costs about 0.2 ms
//! of CPU here (the timer, the write, the answer's read: the runtime thread wakes twice).
//!
//! It needs a server: `scripts/with-postgres.sh cargo bench -p pidlock-tests --bench pg_handoff [-- --quick]`,
//! or `DATABASE_URL=... cargo bench -p pidlock-tests --bench pg_handoff`.

fn main() {
    #[cfg(unix)]
    unix::main();
    #[cfg(not(unix))]
    eprintln!("this benchmark runs on Unix only");
}

/// The benchmark: Unix only, like what it measures.
#[cfg(unix)]
mod unix {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use pidlockfile::PgLock;
    use rustix::time::{ClockId, clock_gettime};
    use tokio::runtime::Runtime;
    use tokio_postgres::{Client, NoTls};

    pub(super) fn main() {
        let quick = std::env::args().any(|a| a == "--quick");
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("pg_handoff: set DATABASE_URL, or run it under scripts/with-postgres.sh");
            std::process::exit(2);
        };
        let (rounds, watch_for) = if quick {
            (40, Duration::from_secs(10))
        } else {
            (300, Duration::from_secs(60))
        };
        println!(
            "pidlockfile fleet lock benchmark ({} run)",
            if quick { "quick" } else { "full" }
        );
        println!();
        handoff(&url, rounds);
        println!();
        token_cost(&url, rounds);
        println!();
        watch_cost(&url, watch_for);
    }

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A bare session, driven on its own runtime.
    struct Bare {
        runtime: Runtime,
        client: Client,
    }

    impl Bare {
        fn connect(url: &str) -> Bare {
            let runtime = runtime();
            let client = runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(url, NoTls).await.expect("connect");
                tokio::spawn(connection);
                client
            });
            Bare { runtime, client }
        }

        fn execute(&self, sql: &str) {
            self.runtime
                .block_on(self.client.simple_query(sql))
                .expect("query");
        }

        fn count(&self, sql: &str) -> i64 {
            let row = self
                .runtime
                .block_on(self.client.query_one(sql, &[]))
                .expect("query");
            row.get(0)
        }
    }

    fn plain(url: &str) -> String {
        // The bare client speaks no TLS; a URL with sslmode=prefer still works without it.
        url.to_owned()
    }

    /// Waits until one session waits for `key` (polled by a third session, outside the timing).
    fn until_waiting(admin: &Bare, key: i64) {
        let sql = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND objid = {}",
            (key as u64) & 0xffff_ffff
        );
        let give_up = Instant::now() + Duration::from_secs(60);
        while admin.count(&sql) == 0 {
            assert!(Instant::now() < give_up, "the waiter never waited");
            thread::sleep(Duration::from_micros(200));
        }
    }

    fn bare_round(url: &str, admin: &Bare, holder: &Bare, key: i64) -> Duration {
        holder.execute(&format!("SELECT pg_advisory_lock({key})"));
        let (tx, rx) = mpsc::channel();
        let url = url.to_owned();
        let waiter = thread::spawn(move || {
            let waiter = Bare::connect(&url);
            waiter.execute(&format!("SELECT pg_advisory_lock({key})"));
            let got = Instant::now();
            let _ = tx.send(got);
            waiter.execute(&format!("SELECT pg_advisory_unlock({key})"));
        });
        until_waiting(admin, key);
        let released = Instant::now();
        holder.execute(&format!("SELECT pg_advisory_unlock({key})"));
        let got = rx.recv().expect("the waiter got the lock");
        waiter.join().expect("waiter");
        got.duration_since(released)
    }

    fn pidlock_round(url: &str, admin: &Bare, name: &str, timeout: Option<Duration>) -> Duration {
        let mut holder = PgLock::new(url, name);
        holder.acquire(None).expect("holder");
        let key = holder.key();
        let (tx, rx) = mpsc::channel();
        let (url, name) = (url.to_owned(), name.to_owned());
        let waiter = thread::spawn(move || {
            let mut waiter = PgLock::new(url, name);
            waiter.acquire(timeout).expect("waiter");
            let got = Instant::now();
            let _ = tx.send(got);
            waiter.release().expect("waiter release");
        });
        until_waiting(admin, key);
        let released = Instant::now();
        holder.release().expect("release");
        let got = rx.recv().expect("the waiter got the lock");
        waiter.join().expect("waiter");
        got.duration_since(released)
    }

    fn percentile(samples: &mut [Duration], p: f64) -> Duration {
        samples.sort_unstable();
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i]
    }

    fn handoff(url: &str, rounds: usize) {
        let admin = Bare::connect(&plain(url));
        let holder = Bare::connect(&plain(url));
        let key = 0x0050_4944_4c4f_434b_i64; // "PIDLOCK"
        let name = format!("pg-handoff-bench-{}", std::process::id());
        let (mut bare, mut none, mut some) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            bare.push(bare_round(&plain(url), &admin, &holder, key));
            none.push(pidlock_round(url, &admin, &name, None));
            some.push(pidlock_round(
                url,
                &admin,
                &name,
                Some(Duration::from_secs(10)),
            ));
        }
        let bare_p50 = percentile(&mut bare, 0.5);
        println!("Handoff from release to the waiter's return ({rounds} rounds each, interleaved)");
        println!(
            "  bare client (pg_advisory_lock/unlock): p50 {:>8.1} µs   p99 {:>8.1} µs",
            bare_p50.as_secs_f64() * 1e6,
            percentile(&mut bare, 0.99).as_secs_f64() * 1e6
        );
        for (label, samples) in [
            ("PgLock acquire(None)", &mut none),
            ("PgLock acquire(Some(10 s))", &mut some),
        ] {
            let p50 = percentile(samples, 0.5);
            println!(
                "  {label:<38} p50 {:>8.1} µs   p99 {:>8.1} µs   p50 ratio {:.2}x",
                p50.as_secs_f64() * 1e6,
                percentile(samples, 0.99).as_secs_f64() * 1e6,
                p50.as_secs_f64() / bare_p50.as_secs_f64()
            );
        }
        println!("  target: p50 ratio <= 1.15x");
    }

    /// The first (durable) and a later `fencing_token()` of a held lock, against a bare
    /// `SELECT pg_current_xact_id()`, interleaved.
    fn token_cost(url: &str, rounds: usize) {
        let bare = Bare::connect(&plain(url));
        let setting = |name: &str| {
            bare.runtime
                .block_on(bare.client.query_one(&format!("SHOW {name}"), &[]))
                .map(|row| row.get::<_, String>(0))
                .unwrap_or_default()
        };
        let name = format!("pg-token-bench-{}", std::process::id());
        let (mut plain_id, mut first, mut later) = (Vec::new(), Vec::new(), Vec::new());
        let mut lock = PgLock::new(url, &name);
        for _ in 0..rounds {
            let started = Instant::now();
            bare.execute("SELECT pg_current_xact_id()");
            plain_id.push(started.elapsed());
            lock.acquire(Some(Duration::ZERO)).expect("lock");
            let started = Instant::now();
            let token = lock.fencing_token();
            first.push(started.elapsed());
            let started = Instant::now();
            assert_eq!(lock.fencing_token(), token);
            later.push(started.elapsed());
            assert!(token > 0);
            lock.release().expect("release");
        }
        let base = percentile(&mut plain_id, 0.5);
        println!(
            "Fencing token ({rounds} rounds each, interleaved; server fsync = {}, \
             synchronous_commit = {})",
            setting("fsync"),
            setting("synchronous_commit")
        );
        println!(
            "  bare SELECT pg_current_xact_id() (not durable): p50 {:>8.1} µs   p99 {:>8.1} µs",
            base.as_secs_f64() * 1e6,
            percentile(&mut plain_id, 0.99).as_secs_f64() * 1e6
        );
        for (label, samples) in [
            ("first fencing_token() (durable)", &mut first),
            ("later fencing_token() (no I/O)", &mut later),
        ] {
            let p50 = percentile(samples, 0.5);
            println!(
                "  {label:<47} p50 {:>8.1} µs   p99 {:>8.1} µs   p50 ratio {:.2}x",
                p50.as_secs_f64() * 1e6,
                percentile(samples, 0.99).as_secs_f64() * 1e6,
                p50.as_secs_f64() / base.as_secs_f64()
            );
        }
        println!(
            "  acquire() itself does not make the token: the handoff above does not include it"
        );
    }

    fn cpu_time() -> Duration {
        let t = clock_gettime(ClockId::ProcessCPUTime);
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    }

    fn watch_cost(url: &str, hold_for: Duration) {
        // Baseline: a bare connection kept open (and driven) for as long.
        let bare = Bare::connect(&plain(url));
        let before = cpu_time();
        thread::sleep(hold_for);
        let bare_cpu = cpu_time() - before;
        drop(bare);

        let name = format!("pg-watch-bench-{}", std::process::id());
        let guard = PgLock::lock(url, name, Some(Duration::ZERO)).expect("lock");
        let before = cpu_time();
        thread::sleep(hold_for);
        let held_cpu = cpu_time() - before;
        assert!(!guard.is_lost());
        drop(guard);

        let per_minute = |cpu: Duration| cpu.as_secs_f64() * 1e3 * 60.0 / hold_for.as_secs_f64();
        println!(
            "CPU of a held lock's watch (pings every {:?}), over {hold_for:?}",
            pidlockfile::DEFAULT_LOST_AFTER / 4
        );
        println!(
            "  bare open connection:  {:>6.2} ms per minute",
            per_minute(bare_cpu)
        );
        println!(
            "  held PgLock:           {:>6.2} ms per minute   ({:.2}x the bare connection)",
            per_minute(held_cpu),
            held_cpu.as_secs_f64() / bare_cpu.as_secs_f64().max(1e-9)
        );
        println!("  target: <= 2 ms per minute");
    }
}
