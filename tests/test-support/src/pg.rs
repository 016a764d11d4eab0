//! A throwaway PostgreSQL cluster for the fleet lock's tests: made with `initdb` and `pg_ctl`
//! (from `PG_BIN`, Debian's `/usr/lib/postgresql/*/bin`, or `PATH`) in a temporary directory,
//! on a free port, as the `postgres` user when the tests run as root, with TLS on (a CA made
//! here), and stopped when the test process ends, however it ends: a watchdog process waits
//! for the test process's end of a pipe to close.
//!
//! `PIDLOCK_SKIP_POSTGRES=1` skips the tests that need it, and so do missing server binaries:
//! each such test says so in one "not run" line (see [`crate::skip!`]), with how to install
//! them, and `.ci/run` fails a run in which any test did not run.

#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The role with a password, for the wrong-password test.
pub const PASSWORD_USER: &str = "pidlock_pw";
pub const PASSWORD: &str = "right-password";

/// The role that proves itself with a client certificate (`cert` authentication, TLS only).
pub const CERT_USER: &str = "pidlock_cert";

/// A role with no privilege at all (no superuser, no `pg_monitor`), as most applications have.
pub const PLAIN_USER: &str = "pidlock_plain";

/// A private network for the partition test: the server's end of the veth pair.
pub const NETNS_SUBNET: &str = "10.213.0.0/16";

pub struct Cluster {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub bin: PathBuf,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the server has.
    pub wrong_ca: PathBuf,
    /// A client certificate for [`CERT_USER`], signed by `ca`, and its key (mode 0600).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    as_postgres: bool,
    /// Closing its stdin (at the end of the test process) stops the cluster. Never waited
    /// for: it outlives this process on purpose.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster, started on first use. `None`, after the calling test's one "not run" line,
/// when `PIDLOCK_SKIP_POSTGRES=1` or no server is installed: the caller returns at once.
pub fn cluster() -> Option<&'static Cluster> {
    let cluster = CLUSTER.get_or_init(|| {
        if std::env::var("PIDLOCK_SKIP_POSTGRES").as_deref() == Ok("1") {
            return Err("PIDLOCK_SKIP_POSTGRES=1 skips the PostgreSQL tests".to_owned());
        }
        let bin = find_bin().ok_or_else(|| {
            "needs PostgreSQL's server (initdb, pg_ctl, postgres): apt-get install postgresql, \
             or set PG_BIN to their directory"
                .to_owned()
        })?;
        Ok(Cluster::start(bin))
    });
    match cluster {
        Ok(cluster) => Some(cluster),
        Err(why) => {
            crate::not_run(why);
            None
        }
    }
}

/// A cluster of the test's own, for tests that crash or restart it, or need a second server:
/// listening on `listen` (an address, or `*`) at `port` (`None`: a free one), with `conf`
/// appended to `postgresql.conf` (it overrides the shared cluster's settings, among them
/// `fsync = off` and `synchronous_commit = off`). `None`, after the calling test's one "not run"
/// line, when `PIDLOCK_SKIP_POSTGRES=1` or no server is installed.
/// Stopped and removed when it is dropped, or when the test process ends.
pub fn own_cluster(listen: &str, port: Option<u16>, conf: &str) -> Option<Cluster> {
    if std::env::var("PIDLOCK_SKIP_POSTGRES").as_deref() == Ok("1") {
        crate::not_run("PIDLOCK_SKIP_POSTGRES=1 skips the PostgreSQL tests");
        return None;
    }
    let Some(bin) = find_bin() else {
        crate::not_run(
            "needs PostgreSQL's server (initdb, pg_ctl, postgres): apt-get install postgresql, \
             or set PG_BIN to their directory",
        );
        return None;
    };
    Some(Cluster::start_with(
        bin,
        listen,
        port.unwrap_or_else(free_port),
        conf,
    ))
}

/// The directory of the server's binaries; `None` when none is installed.
fn find_bin() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_all(&dir),
            "PG_BIN={} has no initdb, pg_ctl and postgres",
            dir.display()
        );
        return Some(dir);
    }
    let mut debian: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| has_all(dir))
        .collect();
    debian.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = debian.pop() {
        return Some(dir);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).find(|dir| has_all(dir))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start(bin: PathBuf) -> Cluster {
        Cluster::start_with(bin, "*", free_port(), "")
    }

    fn start_with(bin: PathBuf, listen: &str, port: u16, extra_conf: &str) -> Cluster {
        let as_postgres = is_root();
        // One directory per cluster, however many one test process starts.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pidlock-pg-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let (ca, wrong_ca) = make_certificates(&dir);
        let (client_cert, client_key) = (dir.join("client.crt"), dir.join("client.key"));
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let cluster_cmd = |program: &str| {
            let mut command = if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            command.env_remove("PGDATA");
            command
        };
        run(cluster_cmd("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let conf = format!(
            "listen_addresses = '{listen}'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n\
             ssl_ca_file = '{dir}/ca.pem'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n\
             max_prepared_transactions = 5\n{extra_conf}\n",
            dir = dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        // First match wins: the password role must prove it; everyone else on loopback or on
        // the tests' own namespaces is trusted.
        fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 local replication all trust\n\
                 hostssl all {CERT_USER} 127.0.0.0/8 cert\n\
                 host all {CERT_USER} 127.0.0.0/8 reject\n\
                 host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n\
                 host all all 127.0.0.0/8 trust\n\
                 host all all ::1/128 trust\n\
                 host all all {NETNS_SUBNET} trust\n"
            ),
        )
        .unwrap();
        let log = dir.join("log");
        run(cluster_cmd("pg_ctl")
            .args(["-w", "-t", "120", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("start"));

        let watchdog = watchdog(&bin, &data, &dir, as_postgres);
        let cluster = Cluster {
            dir,
            data,
            port,
            bin,
            ca,
            wrong_ca,
            client_cert,
            client_key,
            as_postgres,
            _watchdog: Mutex::new(watchdog),
        };
        cluster.psql(&format!(
            "CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'"
        ));
        // A role whose sessions the server ends after 1.5 s of idleness, and a second database.
        cluster.psql("CREATE ROLE pidlock_idle LOGIN SUPERUSER");
        cluster.psql("ALTER ROLE pidlock_idle SET idle_session_timeout = '1500ms'");
        cluster.psql("CREATE DATABASE other");
        cluster.psql(&format!("CREATE ROLE {PLAIN_USER} LOGIN NOSUPERUSER"));
        cluster.psql(&format!("CREATE ROLE {CERT_USER} LOGIN NOSUPERUSER"));
        cluster
    }

    /// A streaming standby of this cluster (`pg_basebackup -R`), on a port of its own; stopped
    /// and removed when dropped. Promote it with [`promote`](Self::promote).
    pub fn standby(&self) -> Cluster {
        static STANDBYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = PathBuf::from(format!(
            "{}-standby-{}",
            self.dir.display(),
            STANDBYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        if self.as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&dir));
        }
        let data = dir.join("data");
        let port = free_port();
        run(self
            .command("pg_basebackup")
            .args(["-X", "stream", "-R", "-c", "fast", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg("-h")
            .arg(&self.dir)
            .arg("-D")
            .arg(&data));
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nunix_socket_directories = '{}'\nlisten_addresses = '127.0.0.1'\n",
                dir.display()
            ),
        );
        let watchdog = watchdog(&self.bin, &data, &dir, self.as_postgres);
        let standby = Cluster {
            dir,
            data,
            port,
            bin: self.bin.clone(),
            ca: self.ca.clone(),
            wrong_ca: self.wrong_ca.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            as_postgres: self.as_postgres,
            _watchdog: Mutex::new(watchdog),
        };
        standby.pg_ctl(&["start"]);
        standby
    }

    /// `pg_ctl promote`: a standby becomes a primary.
    pub fn promote(&self) {
        self.pg_ctl(&["promote"]);
    }

    fn command(&self, program: &str) -> Command {
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        };
        command.env_remove("PGDATA");
        command
    }
}

/// A process that stops the cluster and removes its directory when our end of its stdin closes
/// (the cluster is dropped, or the test process ends however it ends).
fn watchdog(bin: &Path, data: &Path, dir: &Path, as_postgres: bool) -> (Child, ChildStdin) {
    let stop = format!(
        "read _; {run} {pg_ctl} -D {data} stop -m immediate -w -t 30 >/dev/null 2>&1; rm -rf {dir}",
        run = if as_postgres {
            "runuser -u postgres --"
        } else {
            ""
        },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display()
    );
    let mut watchdog = Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = watchdog.stdin.take().unwrap();
    (watchdog, stdin)
}

impl Cluster {
    /// A connection string to the server over TCP on loopback, as `postgres`, with TLS as
    /// the server offers it (`sslmode=prefer`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same over the Unix socket.
    pub fn socket_conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("log")).unwrap_or_default()).into_owned()
    }

    /// Runs one SQL statement as `postgres` over the socket; returns its output, unaligned.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_all(&[sql])
    }

    /// Runs SQL statements one after the other in one session.
    pub fn psql_all(&self, statements: &[&str]) -> String {
        let mut command = Command::new(self.bin.join("psql"));
        for sql in statements {
            command.arg("-c").arg(sql);
        }
        let output = command
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql -c {statements:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `pg_ctl restart -m fast`.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]);
    }

    /// `pg_ctl stop -m immediate`: the server stops as if it crashed (no checkpoint, WAL
    /// buffers not flushed); the next start runs crash recovery.
    pub fn crash(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// `pg_ctl start` after [`crash`](Self::crash).
    pub fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    /// `ALTER SYSTEM SET name = value` and a reload.
    pub fn set(&self, name: &str, value: &str) {
        self.psql(&format!("ALTER SYSTEM SET {name} = '{value}'"));
        self.psql("SELECT pg_reload_conf()");
    }

    fn pg_ctl(&self, args: &[&str]) {
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "120", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(args));
    }

    /// The server process serving the session whose `application_name` starts with `prefix`
    /// (exactly one).
    pub fn backend(&self, prefix: &str) -> u32 {
        let pids = self.backends(prefix);
        assert_eq!(pids.len(), 1, "sessions named {prefix}*: {pids:?}");
        pids[0]
    }

    /// The server process ids of the sessions whose `application_name` starts with `prefix`.
    pub fn backends(&self, prefix: &str) -> Vec<u32> {
        self.psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE '{prefix}%'"
        ))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
    }

    /// Whether a session of the process `pid` (a pidlockfile session, by its `application_name`)
    /// is waiting for a lock.
    pub fn waits(&self, pid: u32) -> bool {
        self.psql(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE NOT l.granted AND a.application_name LIKE 'pidlock {pid}@%'"
        )) != "0"
    }

    /// The server process of the session holding the advisory lock `key`, if any.
    pub fn holding_backend(&self, key: i64) -> Option<u32> {
        let bits = key as u64;
        self.psql(&format!(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 1 AND classid = {} AND objid = {}",
            bits >> 32,
            bits & 0xffff_ffff
        ))
        .trim()
        .parse()
        .ok()
    }

    /// Whether any session holds the advisory lock `key` (single-`bigint` key space).
    pub fn is_held(&self, key: i64) -> bool {
        let bits = key as u64;
        self.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 1 AND classid = {} AND objid = {}",
            bits >> 32,
            bits & 0xffff_ffff
        )) != "0"
    }

    /// Waits (bounded) until `check` holds, polling the server's catalog: there is no event
    /// to wait on from outside a session.
    pub fn wait_until(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn append(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// A CA, a server certificate it signs for `localhost` and `127.0.0.1`, and an unrelated CA.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pidlockfile test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CERT_USER);
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    fs::write(dir.join("client.crt"), client_cert.pem()).unwrap();
    fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();

    let wrong_key = KeyPair::generate().unwrap();
    let mut wrong_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    wrong_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let wrong_cert = wrong_params.self_signed(&wrong_key).unwrap();

    let ca = dir.join("ca.pem");
    let wrong_ca = dir.join("wrong-ca.pem");
    fs::write(&ca, ca_cert.pem()).unwrap();
    fs::write(&wrong_ca, wrong_cert.pem()).unwrap();
    fs::write(dir.join("server.crt"), server_cert.pem()).unwrap();
    let key_path = dir.join("server.key");
    fs::write(&key_path, server_key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(dir.join("client.key"), fs::Permissions::from_mode(0o600)).unwrap();
    (ca, wrong_ca)
}
