//! The fleet lock against a bare PostgreSQL client, measured in one run on one server.
//!
//! - Handoff: from the holder's release to the waiter's return, for `acquire(None)` and
//!   `acquire(Some(10 s))`, against two bare tokio-postgres sessions doing
//!   `pg_advisory_lock` / `pg_advisory_unlock`. Rounds are interleaved, so that the machine's
//!   noise falls on both alike. Twice: with the waiter in a process of its own (this binary,
//!   run again with `--waiter`; the figure that counts, since a fleet lock's waiters are other
//!   processes), and with holder and waiter as two threads of one process. Target (issue 15):
//!   p50 at most 1.15 times the bare client's.
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
//! (`SELECT pg_advisory_lock(k)`) and `acquire(Some(d))` one simple query of two statements
//! (`SET lock_timeout`, the lock), with `SET lock_timeout = 0` as a second query in the same
//! write; the release is one (`SELECT pg_advisory_unlock(k)`, then the session closes without
//! waiting for an answer); the fencing token and the holder's name are read off the handoff's
//! path. That is the bare client's count: there is no extra round trip to remove. The server
//! wakes the waiter at the release itself (its lock manager grants the wait inside
//! `pg_advisory_unlock`).
//!
//! What the fleet lock pays on top, timed at each step (`clock_gettime` stamps in the library,
//! for the profile only; median of 300 rounds, waiter in another process, before the changes
//! below): the release reaches its statement 8 µs in, and the runtime's thread runs it 40 µs
//! later; the statement's answer comes 188 µs after that, where the bare holder's whole
//! `pg_advisory_unlock` takes 116 µs; the waiter returns 30 µs after its grant.
//!
//! - **The waiter's hop.** Every session used to be driven on the runtime's one background
//!   thread (`postgres/runtime.rs`), which is what lets a held lock see a closed session at
//!   once without a query; the grant reached that thread, which then woke the waiting one (a
//!   `futex` wake, 30 to 50 µs on this 2-core VM). Now the runtime is a current-thread one
//!   whose driving passes between threads: a thread that waits for a lock drives it itself
//!   while it waits, and is woken by the grant in its own `epoll_wait`; it hands the runtime
//!   back (a condvar) when the wait ends. Where another session of the process is alive, the
//!   wait stays on the background thread (driving it there too measured no faster, see
//!   `runtime::wait_here`).
//! - **A new session's first `pg_advisory_unlock`.** A backend looks a function up the first
//!   time a statement calls it; a holder's session is new for each acquisition, so its
//!   release paid that on the next holder's path: a bare holder on a new session hands off in
//!   193 to 204 µs, on a warm one in 159 to 164 µs. A new session now has the server parse and
//!   plan `SELECT pg_advisory_unlock(0) WHERE false` (never run) in the same round trip as the
//!   identity query at connection, which took the bare new-session holder back to 162 µs and
//!   the fleet lock's unlock answer from 188 to 152 µs after its send.
//! - **The holder's hop.** The releasing thread used to hand its statement to the thread that
//!   drives the held lock's session (an `eventfd` write, and that thread's wake from
//!   `epoll_wait`, 40 µs here) before anything was sent. Now the releasing thread writes it
//!   itself (`postgres/connection.rs`): the connection sits under a lock that its driving task
//!   and the release share; the release polls it once with a waker that wakes no one, queues
//!   the statement, and polls it again with the task's own waker, which writes the statement
//!   and leaves the connection registered to wake the task, as the task's own poll would. The
//!   answer is still read on the runtime's thread, after the server has let the next holder
//!   in. The session is still driven at all times. Measured: 1.51x/1.56x to 1.21x/1.30x with
//!   the waiter in another process, 1.79x/1.83x to 1.19x/1.27x in one process (`acquire(None)`
//!   and `acquire(Some(10 s))`, in one run each, before and after, on a quiet machine).
//! - **A timed wait's `SET lock_timeout = 0`** was a third statement inside the lock's query:
//!   the server ran it after the grant and before the answer left. As a query of its own, sent
//!   in the same write, it runs after the answer has left: `acquire(Some(10 s))` went from 10 to
//!   14 µs slower than `acquire(None)` to 4 to 12 µs (what is left is the server arming and
//!   disarming its `lock_timeout` timer).
//!
//! What is left, stamped the same way (median of 300 rounds, waiter in another process, final
//! code; the bare client's whole handoff was 175 µs in the same run, the fleet lock's 209 µs):
//! the release reaches its `sendto` 9 µs in (the process check, which reads the process's mark:
//! `getpid`, `fstat`, `fcntl`, see `owner.rs`; the query's encoding), where the bare client
//! needs a few; from the send, the waiter has its answer 8 µs later than the bare one's (161
//! against some 153 µs; the holder's process is busier while it waits: its answer is read on
//! the runtime's thread, which then wakes the releasing one, 153 µs after the send against
//! the bare holder's 111, off the handoff's path since the server grants inside the unlock);
//! on the waiter's side, 20 µs pass from the lock's answer to the return, where
//! the bare client returns at once: the watch's setup (4 µs), leaving the runtime (3 µs),
//! and handing the runtime back to the background thread (13 µs). That hand-back is a condvar
//! wake-up, and the woken thread preempts the waiter on its CPU: with the background thread
//! at `SCHED_BATCH` (or nice 19), whose wake-ups do not preempt, it measured 4 µs. It is left:
//! a nice value would also give the thread that notices a loss less CPU under load, and
//! neither rustix nor nix wraps `sched_setscheduler` (unsafe code, or a crate that also
//! sets the nice value, for 9 µs). A wait that does not hand the runtime back cannot be had:
//! the held lock's session must be driven after the waiter returns to its caller's code.
//!
//! The watch of a held lock, profiled with `strace -f` and `/proc/self/task/*/status` on a
//! holder (`--watch`): before issue 15 it pinged every `lost_after / 4` (2.5 s), each ping a
//! `sleep_until` and a `timeout_at` of its own. tokio's timer wheel wakes its thread at the
//! boundaries of its coarser slots on the way to a deadline: each 2.5 s sleep woke the thread
//! three or four times (about 1.6 s, 0.9 s and a few ms before the tick, plus the deadline's
//! own slots), each with an `eventfd` write of the thread to itself, plus once for the answer:
//! 67 wake-ups a minute (the threads' `voluntary_ctxt_switches`), 4.7 to 8.4 ms of CPU a minute
//! here. Now one timer
//! (a `timerfd` on Linux, registered with the runtime's I/O driver; tokio's `interval` on other
//! systems) ticks every `lost_after / 2`, and the in-flight ping's deadline is checked on the
//! ticks: the thread sleeps in `epoll_wait` with no timeout, and wakes twice per ping (the tick,
//! the answer), 24 times a minute by default (23 counted; 1.85 to 2.8 ms of CPU a minute, on a
//! quiet machine and at a load average of 5: some 70 µs per wake-up on this VM, which is what
//! is left). Nothing else on that runtime wakes it: no other
//! timer is armed while a lock is held, the closer thread belongs to the PID-file lock, and the
//! client's TCP keepalives never start, since the pings keep the connection busier than
//! `tcp_keepalives_idle` (`lost_after`). Pinging half as often keeps the loss bound and its
//! margin over the server's (see `postgres/session.rs`); what it gives up is the room for one
//! slow answer, from three quarters of `lost_after` to a half.
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
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("--waiter") {
            return waiter_process(&args[2..]);
        }
        let quick = std::env::args().any(|a| a == "--quick");
        // Only the watch, for profiling a holder (`perf stat -p`, `strace -c -f -p`).
        let watch_only = std::env::args().any(|a| a == "--watch");
        // Only the handoff, for comparing two builds of the library.
        let handoff_only = std::env::args().any(|a| a == "--handoff");
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
        if !watch_only {
            handoff(&url, rounds);
            println!();
            if handoff_only {
                return;
            }
            token_cost(&url, rounds);
            println!();
        }
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

    /// The clock that `Instant` reads, as a number another process can compare.
    fn monotonic() -> Duration {
        let t = clock_gettime(ClockId::Monotonic);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// A waiter of its own process (`--waiter KIND URL KEY NAME`): waits for the lock, prints
    /// when it got it (`monotonic`, in ns), and lets go when its stdin closes.
    fn waiter_process(args: &[String]) {
        use std::io::{Read, Write};
        let [kind, url, key, name] = args else {
            panic!("--waiter KIND URL KEY NAME");
        };
        let key: i64 = key.parse().expect("key");
        // The first reading finds the vDSO (a `prctl`): not on the timed path.
        let _ = monotonic();
        let report = || {
            let got = monotonic().as_nanos();
            let mut out = std::io::stdout().lock();
            writeln!(out, "{got}")
                .and_then(|()| out.flush())
                .expect("report");
        };
        let until_told = || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        };
        match kind.as_str() {
            "bare" => {
                let waiter = Bare::connect(url);
                waiter.execute(&format!("SELECT pg_advisory_lock({key})"));
                report();
                until_told();
                waiter.execute(&format!("SELECT pg_advisory_unlock({key})"));
            }
            timeout => {
                let timeout = match timeout {
                    "none" => None,
                    _ => Some(Duration::from_secs(10)),
                };
                let mut waiter = PgLock::new(url, name);
                waiter.acquire(timeout).expect("waiter");
                report();
                until_told();
                waiter.release().expect("waiter release");
            }
        }
    }

    /// One round with the waiter in a process of its own, as a lock's waiters usually are:
    /// `release` lets go in this process (the holder's), and the handoff ends when the child
    /// returns from its wait.
    fn process_round(
        url: &str,
        admin: &Bare,
        kind: &str,
        key: i64,
        name: &str,
        release: impl FnOnce(),
    ) -> Duration {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().expect("this benchmark"))
            .args(["--waiter", kind, url, &key.to_string(), name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("waiter process");
        until_waiting(admin, key);
        let released = monotonic();
        release();
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the waiter's report");
        drop(child.stdin.take());
        assert!(child.wait().expect("waiter").success(), "the waiter failed");
        let got: u64 = line.trim().parse().expect("the waiter got the lock");
        Duration::from_nanos(got).saturating_sub(released)
    }

    fn handoff(url: &str, rounds: usize) {
        let admin = Bare::connect(&plain(url));
        let holder = Bare::connect(&plain(url));
        let key = 0x0050_4944_4c4f_434b_i64; // "PIDLOCK"
        let name = format!("pg-handoff-bench-{}", std::process::id());
        let (mut bare, mut none, mut some) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            holder.execute(&format!("SELECT pg_advisory_lock({key})"));
            bare.push(process_round(&plain(url), &admin, "bare", key, "", || {
                holder.execute(&format!("SELECT pg_advisory_unlock({key})"));
            }));
            for (kind, samples) in [("none", &mut none), ("some", &mut some)] {
                let mut lock = PgLock::new(url, &name);
                lock.acquire(None).expect("holder");
                samples.push(process_round(url, &admin, kind, lock.key(), &name, || {
                    lock.release().expect("release");
                }));
            }
        }
        print_handoff(
            &format!(
                "Handoff from release to the return of a waiter in another process ({rounds} rounds each, interleaved)"
            ),
            &mut bare,
            &mut [
                ("PgLock acquire(None)", &mut none),
                ("PgLock acquire(Some(10 s))", &mut some),
            ],
        );
        println!();
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
        print_handoff(
            &format!(
                "The same with holder and waiter in one process ({rounds} rounds each, interleaved)"
            ),
            &mut bare,
            &mut [
                ("PgLock acquire(None)", &mut none),
                ("PgLock acquire(Some(10 s))", &mut some),
            ],
        );
    }

    fn print_handoff(title: &str, bare: &mut [Duration], locks: &mut [(&str, &mut Vec<Duration>)]) {
        let bare_p50 = percentile(bare, 0.5);
        println!("{title}");
        println!(
            "  bare client (pg_advisory_lock/unlock): p50 {:>8.1} µs   p99 {:>8.1} µs",
            bare_p50.as_secs_f64() * 1e6,
            percentile(bare, 0.99).as_secs_f64() * 1e6
        );
        for (label, samples) in locks {
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

    /// The voluntary context switches of every thread of this process so far: how often its
    /// threads went to sleep, which is how often something woke them.
    fn wake_ups() -> u64 {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    fn watch_cost(url: &str, hold_for: Duration) {
        // Baseline: a bare connection kept open (and driven) for as long.
        let bare = Bare::connect(&plain(url));
        let (before, woken) = (cpu_time(), wake_ups());
        thread::sleep(hold_for);
        let (bare_cpu, bare_wakes) = (cpu_time() - before, wake_ups() - woken);
        drop(bare);

        let name = format!("pg-watch-bench-{}", std::process::id());
        let guard = PgLock::lock(url, name, Some(Duration::ZERO)).expect("lock");
        let (before, woken) = (cpu_time(), wake_ups());
        thread::sleep(hold_for);
        let (held_cpu, held_wakes) = (cpu_time() - before, wake_ups() - woken);
        assert!(!guard.is_lost());
        drop(guard);

        let per_minute = |cpu: Duration| cpu.as_secs_f64() * 1e3 * 60.0 / hold_for.as_secs_f64();
        println!(
            "CPU of a held lock's watch (pings every {:?}), over {hold_for:?}",
            pidlockfile::DEFAULT_LOST_AFTER / 2
        );
        let wakes_per_minute = |n: u64| n as f64 * 60.0 / hold_for.as_secs_f64();
        println!(
            "  bare open connection:  {:>6.2} ms per minute   {:>5.1} wake-ups per minute",
            per_minute(bare_cpu),
            wakes_per_minute(bare_wakes)
        );
        println!(
            "  held PgLock:           {:>6.2} ms per minute   {:>5.1} wake-ups per minute   \
             ({:.2}x the bare connection's CPU)",
            per_minute(held_cpu),
            wakes_per_minute(held_wakes),
            held_cpu.as_secs_f64() / bare_cpu.as_secs_f64().max(1e-9)
        );
        println!("  target: <= 2 ms per minute");
    }
}
