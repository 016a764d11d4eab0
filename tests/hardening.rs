//! The runtime defects an adversarial review found (issue "Hardening"), one test or more each,
//! numbered as in the issue. Each one failed before its fix.
// symlinks, modes, fork, /proc and flock(1): Unix only; `tests/windows.rs` covers Windows.
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{self, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{PATIENCE, Proc, Scratch, wait_until_sleeping};
use pidlockfile::{LockError, PidLockFile};

/// The unprivileged user the tests that need "another user" run as.
const NOBODY: u32 = 65534;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A copy of lock-helper that another user can run: the build's own may be in a directory only
/// we can enter (a clone in a private temporary directory, as `mktemp -d` makes). In a scratch
/// directory of its own, removed (with the 48 MB copy) when the test ends.
struct HelperCopy {
    scratch: Scratch,
}

impl HelperCopy {
    fn new() -> HelperCopy {
        let scratch = Scratch::new("helper-copy");
        fs::set_permissions(scratch.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let copy = scratch.path("lock-helper");
        // A hard link where it can be made: a copy is written through a descriptor that a
        // process forked meanwhile by another test's thread inherits, and exec then fails with
        // ETXTBSY until that process has exec'd in turn.
        if fs::hard_link(env!("CARGO_BIN_EXE_lock-helper"), &copy).is_err() {
            fs::copy(env!("CARGO_BIN_EXE_lock-helper"), &copy).unwrap();
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        }
        HelperCopy { scratch }
    }

    fn path(&self) -> std::path::PathBuf {
        self.scratch.path("lock-helper")
    }
}

fn helper_as(helper: &HelperCopy, uid: u32, args: &[&str], env: &[(&str, &Path)]) -> Proc {
    let mut command = Command::new(helper.path());
    command
        .args(args)
        .uid(uid)
        .gid(uid)
        .env_remove("XDG_RUNTIME_DIR");
    for (key, value) in env {
        command.env(key, value);
    }
    Proc::spawn(command)
}

/// `flock(1)` holding `path` (a shared lock with `shared`) until its stdin closes, once it
/// holds it.
fn flock_holder(path: &Path, shared: bool) -> Proc {
    let mut command = Command::new("flock");
    if shared {
        command.arg("-s");
    }
    command.arg(path).args(["sh", "-c", "echo held; exec cat"]);
    let mut holder = Proc::spawn(command);
    assert_eq!(holder.next_report(), "held");
    holder
}

/// Runs `f` on a thread of its own and returns its result, failing the test if it takes longer
/// than `PATIENCE` (a self-deadlock would otherwise hang the test run).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .expect("the call did not return: it waited for itself")
}

/// The inotify instances process `pid` has open, each as the set of inodes it watches.
fn inotify_instances(pid: u32) -> Vec<BTreeSet<u64>> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut instances = Vec::new();
    for fd in fds.flatten() {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:inotify" {
            continue;
        }
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().display()))
            .unwrap_or_default();
        let watched = info
            .lines()
            .filter_map(|line| line.strip_prefix("inotify "))
            .filter_map(|line| {
                let ino = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("ino:"))?;
                u64::from_str_radix(ino, 16).ok()
            })
            .collect();
        instances.push(watched);
    }
    instances
}

/// Waits (bounded) until process `pid` has no inotify instance open.
fn wait_for_no_inotify(pid: u32) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !inotify_instances(pid).is_empty() {
        assert!(
            Instant::now() < give_up,
            "process {pid} keeps {} inotify instance(s) while it only holds the lock",
            inotify_instances(pid).len()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) until at least `sleepers` threads of process `pid` sleep.
fn wait_until_threads_sleep(pid: u32, sleepers: usize) {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let asleep = fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter(|task| {
                        let wchan =
                            fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
                        // inotify's poll, the condition variable of the other waiters, or the
                        // portable build's backoff.
                        ["poll", "futex", "sleep"].iter().any(|w| wchan.contains(w))
                    })
                    .count()
            })
            .unwrap_or(0);
        if asleep >= sleepers {
            return;
        }
        assert!(Instant::now() < give_up, "the waiting threads never slept");
        thread::sleep(Duration::from_millis(2));
    }
}

// 5. A wait that can never succeed must not start, where the caller is known for sure to be
// the holder; where it cannot be known (a guard may have moved between threads, see issue 19),
// the wait ends at its deadline like any other.
#[test]
fn h05_a_thread_waiting_for_a_lock_it_holds_fails_at_once_or_at_its_deadline() {
    let scratch = Scratch::new("h05");
    let path = scratch.path("app.pid");
    let result = bounded(move || {
        let mut held = PidLockFile::new(&path);
        held.acquire(None).unwrap();
        // The holding instance itself: refused at once, whatever the timeout.
        let same = [None, Some(Duration::from_secs(3600))].map(|t| held.acquire(t));
        let mut again = PidLockFile::new(&path);
        let zero = again.acquire(Some(Duration::ZERO));
        let timed = again.acquire(Some(Duration::from_millis(300)));
        (same, zero, timed)
    });
    let me = Some(process::id());
    let (same, zero, timed) = result;
    for refused in same {
        assert!(
            matches!(refused, Err(LockError::AlreadyLocked { pid, .. }) if pid == me),
            "{refused:?}"
        );
    }
    assert!(
        matches!(zero, Err(LockError::AlreadyLocked { pid, .. }) if pid == me),
        "{zero:?}"
    );
    assert!(
        matches!(timed, Err(LockError::LockTimeout { pid, .. } | LockError::AlreadyLocked { pid, .. }) if pid == me),
        "{timed:?}"
    );
}

#[test]
fn h05_a_guarded_main_calling_a_guarded_helper_on_the_default_lock_fails_at_once() {
    let scratch = Scratch::new("h05-macro");
    let mut command = Command::new(env!("CARGO_BIN_EXE_si-self-wait"));
    command
        .env("TMPDIR", scratch.dir())
        .env_remove("XDG_RUNTIME_DIR");
    let mut program = Proc::spawn(command);
    let me = program.id();
    let (status, output) = program.finish();
    assert_eq!(status.code(), Some(101), "{output:?}");
    assert!(
        output.contains(&format!("running {me}"))
            && !output.iter().any(|l| l.starts_with("helper ")),
        "{output:?}"
    );
    assert!(
        output.iter().any(|l| l.contains(&format!(
            "si-self-wait is already running (pid {me}, lock file "
        ))),
        "the panic names this process: {output:?}"
    );
}

#[test]
fn h05_another_thread_of_the_same_process_still_waits_its_turn() {
    let scratch = Scratch::new("h05-thread");
    let path = scratch.path("app.pid");
    let held = PidLockFile::lock(&path, None).unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter_path = path.clone();
    let waiter = thread::spawn(move || {
        let mut lock = PidLockFile::new(&waiter_path);
        tx.send("started").unwrap();
        let result = lock.acquire(Some(PATIENCE));
        (result.is_ok(), lock.i_am_locking())
    });
    rx.recv_timeout(PATIENCE).unwrap();
    drop(held);
    assert_eq!(waiter.join().unwrap(), (true, true));
}

// 6. Another user must not be able to block the program's default lock.
#[test]
fn h06_the_default_lock_lives_in_a_private_directory_another_user_cannot_take() {
    pidlock_test_support::require_root!("runs a helper as another user");
    let helper = HelperCopy::new();
    let scratch = Scratch::new("h06");
    let tmp = scratch.dir();
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let program = "h06-app";
    // What used to be the default path, taken first by another user (root, here).
    fs::write(tmp.join(format!("{program}-{NOBODY}.pid")), "1\n").unwrap();

    let mut first = helper_as(&helper, NOBODY, &["default", program], &[("TMPDIR", tmp)]);
    let private = tmp.join(format!("pidlock-{NOBODY}"));
    assert_eq!(
        first.next_report(),
        format!("ok {}", private.join(format!("{program}.pid")).display())
    );
    let meta = fs::symlink_metadata(&private).unwrap();
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (NOBODY, 0o700));
    let mut second = helper_as(&helper, NOBODY, &["default", program], &[("TMPDIR", tmp)]);
    let report = second.next_report();
    assert!(report.starts_with("already-locked "), "{report}");
    assert_eq!(second.wait().code(), Some(1));
    first.close_stdin();
    first.wait();
}

#[test]
fn h06_a_private_directory_made_by_someone_else_or_left_open_is_refused() {
    pidlock_test_support::require_root!("runs a helper as another user");
    let helper = HelperCopy::new();
    let scratch = Scratch::new("h06-refuse");
    let tmp = scratch.dir();
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let private = tmp.join(format!("pidlock-{NOBODY}"));
    let attempt = || {
        let mut proc = helper_as(&helper, NOBODY, &["default", "h06-app"], &[("TMPDIR", tmp)]);
        let report = proc.next_report();
        assert_eq!(proc.wait().code(), Some(2), "{report}");
        report
    };

    // Made first by another user (root).
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o777)).unwrap();
    let report = attempt();
    assert!(
        report.contains(&format!(
            "refusing to keep the lock in {}",
            private.display()
        )) && report.contains("owned by uid 0"),
        "{report}"
    );

    // Ours, but open to everyone.
    rustix::fs::chown(&private, Some(rustix::process::Uid::from_raw(NOBODY)), None).unwrap();
    let report = attempt();
    assert!(report.contains("mode 0777"), "{report}");

    // A symlink to a directory we would otherwise accept.
    fs::remove_dir(&private).unwrap();
    let elsewhere = tmp.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    rustix::fs::chown(
        &elsewhere,
        Some(rustix::process::Uid::from_raw(NOBODY)),
        None,
    )
    .unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &private).unwrap();
    let report = attempt();
    assert!(report.contains("symbolic link"), "{report}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

// 11. Ownership is the PID together with the PID namespace.
#[test]
fn h11_a_child_forked_into_a_new_pid_namespace_with_the_same_pid_leaves_the_lock_alone() {
    pidlock_test_support::require_root!("makes a new PID namespace");
    let scratch = Scratch::new("h11");
    let path = scratch.path("app.pid");
    // The holder is PID 1 of a namespace, like a container's init, and forks a child into a
    // namespace of its own, where the child is PID 1 too. The child releases and drops its
    // copy.
    let mut holder = Proc::helper(&["as-pid1", "fork-drop", s(&path), "newns"]);
    let report = holder.next_report();
    assert_eq!(report, "child-exited 0 1", "the child touched the lock");
    assert_eq!(fs::read_to_string(&path).unwrap(), "1\n", "the file stays");
    let mut other = Proc::helper(&["try", s(&path), "0"]);
    let report = other.next_report();
    assert!(
        report.starts_with("already-locked 1 "),
        "a second holder got in: {report}"
    );
    other.wait();
    holder.send("go");
    assert_eq!(holder.next_report(), "still-mine true");
    assert_eq!(holder.next_report(), "released");
}

// 12. i_am_locking() answers from what this process holds, not from the PID in the file.
#[test]
fn h12_two_pid_1s_in_separate_namespaces_are_not_both_the_holder() {
    pidlock_test_support::require_root!("makes a new PID namespace");
    let scratch = Scratch::new("h12");
    let path = scratch.path("app.pid");
    let mut holder = Proc::helper(&["as-pid1", "hold", s(&path), "none"]);
    assert!(holder.next_report().starts_with("locked 1 "));
    holder.send("status");
    assert_eq!(holder.next_report(), "status true true 1");
    let mut other = Proc::helper(&["as-pid1", "status", s(&path)]);
    assert_eq!(
        other.next_report(),
        "status true false 1",
        "the other PID 1 thinks it holds the lock"
    );
    other.wait();
}

// 13. A forked child never shares its parent's inotify instance. (The portable build has no
// inotify.)
#[cfg(not(pidlock_portable))]
#[test]
fn h13_a_forked_child_waits_on_an_inotify_instance_of_its_own() {
    let scratch = Scratch::new("h13");
    let (l, b, c) = (
        scratch.path("l.pid"),
        scratch.path("b.pid"),
        scratch.path("c.pid"),
    );
    let mut hold_l = Proc::holder(&l);
    let mut hold_b = Proc::holder(&b);
    let mut hold_c = Proc::holder(&c);
    // The parent waits for L (so it has used inotify), gets it, forks; the child drops its
    // copy of L and waits for B while the parent waits for C.
    let mut parent = Proc::helper(&["fork-wait", s(&l), s(&b), s(&c), "60000"]);
    wait_until_sleeping(parent.id());
    hold_l.send("release");
    assert!(hold_l.next_report().starts_with("released"));
    assert_eq!(parent.next_report(), "got L");
    let child: u32 = parent
        .next_report()
        .strip_prefix("child ")
        .unwrap()
        .parse()
        .unwrap();
    wait_until_sleeping(parent.id());
    wait_until_sleeping(child);
    let (b_ino, c_ino) = (
        fs::metadata(&b).unwrap().ino(),
        fs::metadata(&c).unwrap().ino(),
    );
    // Each watches its own file through an instance of its own: the child never adds its watch
    // to an instance the parent polls. (The child may still have a copy of the descriptor of
    // an instance the parent opened before the fork, which it never reads or changes: a
    // descriptor open at a fork is inherited, and only `exec` closes it.)
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let parents = inotify_instances(parent.id());
        let childs = inotify_instances(child);
        assert!(
            parents.iter().all(|w| !w.contains(&b_ino)),
            "the child watches through an instance the parent has: {parents:?} {childs:?}"
        );
        if childs.iter().any(|w| w.contains(&b_ino)) && parents.iter().any(|w| w.contains(&c_ino)) {
            break;
        }
        assert!(Instant::now() < give_up, "{parents:?} {childs:?}");
        thread::sleep(Duration::from_millis(5));
    }
    hold_c.send("release");
    hold_b.send("release");
    let mut got = [parent.next_report(), parent.next_report()];
    got.sort();
    assert_eq!(got, ["got B", "got C"]);
    parent.close_stdin();
    parent.wait();
}

// 14. A release wakes timed waiters even when a forked child still has the descriptor.
#[test]
fn h14_a_release_makes_an_event_after_unlocking_even_when_a_forked_child_keeps_the_descriptor() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let scratch = Scratch::new("h14");
    let path = scratch.path("app.pid");
    let mut holder = Proc::helper(&["fork-hold", s(&path)]);
    assert!(holder.next_report().starts_with("child "));
    // What a timed waiter watches. The child's descriptor keeps the holder's close from being
    // the last, so the kernel reports no close. The holder's unlink would change the link count
    // (an IN_ATTRIB, but made while the lock is still held, so useless to a waiter); moving
    // the file aside first means the release does not unlink it, so that any event seen is one
    // the release made after letting go.
    let aside = scratch.path("aside.pid");
    fs::rename(&path, &aside).unwrap();
    let watcher = inotify::init(CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(
        &watcher,
        &aside,
        WatchFlags::CLOSE_WRITE | WatchFlags::CLOSE_NOWRITE | WatchFlags::ATTRIB,
    )
    .unwrap();
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
    let mut fds = [rustix::event::PollFd::new(
        &watcher,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 20,
        tv_nsec: 0,
    };
    let events = rustix::event::poll(&mut fds, Some(&timeout)).unwrap();
    // The portable build has no inotify waiters to wake, and makes no such event.
    if cfg!(not(pidlock_portable)) {
        assert_eq!(
            events, 1,
            "no event: timed waiters sleep until the re-check"
        );
    }
    assert!(!PidLockFile::new(&aside).is_locked());
}

#[test]
fn h14_a_timed_waiter_gets_in_when_the_holder_releases_with_a_forked_child_alive() {
    let scratch = Scratch::new("h14-waiter");
    let path = scratch.path("app.pid");
    let mut holder = Proc::helper(&["fork-hold", s(&path)]);
    assert!(holder.next_report().starts_with("child "));
    let mut waiter = Proc::helper(&["try", s(&path), "60000"]);
    wait_until_sleeping(waiter.id());
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
    assert!(waiter.next_report().starts_with("ok "));
}

// 15. No inotify instance is kept while merely holding, and one per process while waiting.
#[test]
fn h15_a_holder_that_waited_keeps_no_inotify_instance() {
    let scratch = Scratch::new("h15");
    let path = scratch.path("app.pid");
    let mut first = Proc::holder(&path);
    let mut second = Proc::helper(&["hold", s(&path), "60000"]);
    wait_until_sleeping(second.id());
    first.send("release");
    assert!(second.next_report().starts_with("locked "));
    wait_for_no_inotify(second.id());
}

#[test]
fn h15_threads_waiting_together_share_one_inotify_instance() {
    let scratch = Scratch::new("h15-threads");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let mut waiters = Proc::helper(&["wait-threads", s(&path), "4"]);
    assert_eq!(waiters.next_report(), "started");
    wait_until_threads_sleep(waiters.id(), 4);
    // Sleeping threads may still be on their way to the wait (a thread parked on the process
    // identity's first use sleeps too): the instance comes, bounded, and stays one.
    #[cfg(not(pidlock_portable))]
    let instances = {
        let give_up = Instant::now() + PATIENCE;
        loop {
            let instances = inotify_instances(waiters.id());
            if !instances.is_empty() || Instant::now() > give_up {
                break instances;
            }
            thread::sleep(Duration::from_millis(5));
        }
    };
    #[cfg(pidlock_portable)]
    let instances = inotify_instances(waiters.id());
    #[cfg(not(pidlock_portable))]
    assert_eq!(instances.len(), 1, "{instances:?}");
    #[cfg(pidlock_portable)]
    assert!(instances.is_empty(), "{instances:?}");
    holder.send("release");
    for _ in 0..4 {
        assert_eq!(waiters.next_report(), "thread ok");
    }
    assert_eq!(waiters.next_report(), "all-done");
    wait_for_no_inotify(waiters.id());
}

// 16. The stale inode and the unused spare are closed once the PID is written.
#[test]
fn h16_after_a_handoff_the_holder_keeps_no_stale_inode_open() {
    let scratch = Scratch::new("h16");
    let path = scratch.path("app.pid");
    let mut first = Proc::holder(&path);
    let mut second = Proc::helper(&["hold", s(&path), "60000"]);
    wait_until_sleeping(second.id());
    first.send("release");
    assert!(second.next_report().starts_with("locked "));
    // The old, unlinked PID file it locked on the way is closed soon after (off the handoff).
    // So is the spare's first descriptor: the lock is held through one opened by the PID
    // file's name, and shows there, in `/proc` and in `lslocks`.
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let deleted = deleted_files(second.id(), 0);
        if deleted.is_empty() {
            break;
        }
        assert!(Instant::now() < give_up, "still open: {deleted:?}");
        thread::sleep(Duration::from_millis(5));
    }
    let lslocks = Command::new("lslocks")
        .args(["--noheadings", "--raw", "--output", "TYPE,PATH", "--pid"])
        .arg(second.id().to_string())
        .output()
        .unwrap();
    // Its `flock`s: the record lock on its identity's memfd is not a lock file.
    let shown: String = String::from_utf8_lossy(&lslocks.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("FLOCK "))
        .map(|path| format!("{path}\n"))
        .collect();
    let expected = path.display().to_string();
    assert!(
        !shown.trim().is_empty() && shown.lines().all(|line| line.trim() == expected),
        "lslocks shows {shown:?}"
    );
}

#[test]
fn h16_after_taking_over_a_crashed_holders_file_only_the_pid_file_is_locked() {
    let scratch = Scratch::new("h16-crash");
    let path = scratch.path("app.pid");
    let mut first = Proc::holder(&path);
    // The waiter prepares a spare file while it waits, but the holder dies without unlinking
    // its file, so the waiter takes that one over and has no use for the spare.
    let mut second = Proc::helper(&["hold", s(&path), "60000"]);
    wait_until_sleeping(second.id());
    first.kill();
    assert!(second.next_report().starts_with("locked "));
    let file_ino = fs::metadata(&path).unwrap().ino();
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let locked = locked_inodes(second.id());
        let deleted = deleted_files(second.id(), 0);
        if locked == [file_ino] && deleted.is_empty() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the holder locks {locked:?} and has {deleted:?} open; the PID file is {file_ino}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The process identity's private memfd (see `sys/marker.rs`), which every process that uses
/// pidlockfile keeps open with a record lock on it: not a lock file.
const IDENTITY_MEMFD: &str = "/memfd:pidlock-process-identity";

/// The unlinked files process `pid` has open, other than the inode `keep` (0: none kept) and
/// its identity's memfd.
fn deleted_files(pid: u32, keep: u64) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| fs::metadata(fd.path()).is_ok_and(|m| m.ino() != keep))
                .filter_map(|fd| fs::read_link(fd.path()).ok())
                .map(|target| target.display().to_string())
                .filter(|target| {
                    target.ends_with("(deleted)") && !target.starts_with(IDENTITY_MEMFD)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The inodes of the `flock`s that process `pid` holds, from `/proc/locks`.
fn locked_inodes(pid: u32) -> Vec<u64> {
    let table = fs::read_to_string("/proc/locks").unwrap();
    let mut inodes: Vec<u64> = table
        .lines()
        .filter(|line| !line.contains("->"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"FLOCK") && fields.get(4) == Some(&pid.to_string().as_str()))
                .then(|| fields.get(5)?.rsplit(':').next()?.parse().ok())
                .flatten()
        })
        .collect();
    inodes.sort_unstable();
    inodes
}

// 17. The PID file's mode is 0644 whatever the umask, and an unreadable file is not "free".
#[test]
fn h17_the_pid_file_is_0644_under_a_narrow_umask_however_it_was_made() {
    let scratch = Scratch::new("h17");
    let path = scratch.path("app.pid");
    let under_umask = |args: &[&str]| {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("umask 077; exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_lock-helper"))
            .args(args);
        Proc::spawn(command)
    };
    // Created from nothing.
    let mut first = under_umask(&["hold", s(&path), "none"]);
    assert!(first.next_report().starts_with("locked "));
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    // Handed over to a waiter (Linux: through its ready-made spare file).
    let mut second = under_umask(&["hold", s(&path), "60000"]);
    wait_until_sleeping(second.id());
    first.send("release");
    assert!(second.next_report().starts_with("locked "));
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    // Taken over from a stale file of ours with a narrow mode.
    second.send("exit");
    second.wait();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let mut third = under_umask(&["hold", s(&path), "0"]);
    assert!(third.next_report().starts_with("locked "));
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
}

#[test]
fn h17_a_reader_that_cannot_open_the_file_does_not_call_a_held_lock_free() {
    pidlock_test_support::require_root!("runs a helper as another user");
    let helper = HelperCopy::new();
    let scratch = Scratch::new("h17-reader");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let mut reader = helper_as(&helper, NOBODY, &["status", s(&path)], &[]);
    let report = reader.next_report();
    assert!(report.starts_with("status true false"), "{report}");
    reader.wait();
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
}

// 18. Probes never make a free lock look held.
#[test]
fn h18_busy_readers_never_make_a_free_lock_look_held() {
    let scratch = Scratch::new("h18");
    let path = scratch.path("app.pid");
    // The file exists and is free (a stale one), so readers have something to probe.
    fs::write(&path, "999999\n").unwrap();
    let _readers: Vec<Proc> = (0..8)
        .map(|_| {
            let mut reader = Proc::helper(&["probe-loop", s(&path)]);
            assert_eq!(reader.next_report(), "probing");
            reader
        })
        .collect();
    for round in 0..2000 {
        let timeout = if round % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(20)
        };
        let mut lock = PidLockFile::new(&path);
        if let Err(e) = lock.acquire(Some(timeout)) {
            panic!("round {round}: a free lock was reported held: {e}");
        }
        drop(lock);
        // Put a file back for the readers, as a crashed holder would leave it.
        fs::write(&path, "999999\n").unwrap();
    }
}

// h18: `is_locked()` on a free file does not touch it: in `tests/lock_table.rs`, alone in its
// test binary, since it needs the machine's lock table small and still.

// What an adversarial review of the fixes above found, each pinned too.

/// A child forked while other threads take and release locks never hangs in pidlockfile: the
/// state it inherits may be locked by a thread that was not copied.
#[test]
fn review_a_child_forked_while_threads_use_pidlock_never_hangs() {
    let scratch = Scratch::new("rv-fork");
    let path = scratch.path("app.pid");
    let mut stress = Proc::helper(&["fork-stress", s(&path), "300"]);
    assert_eq!(stress.next_report(), "hung 0");
}

/// The lock table is trusted to say "free" only when it was read in one go: a record of a
/// lock with many waiters ends a read early, and the rest of the table shifts under a second
/// read.
#[test]
fn review_a_long_lock_table_never_makes_a_held_lock_look_free() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("rv-table");
    let path = scratch.path("app.pid");
    let busy = scratch.path("busy");
    fs::write(&busy, "").unwrap();
    let mut holder = Proc::holder(&path);
    // An unrelated lock with 80 processes queued behind it: one long record in the table.
    let mut first = flock_holder(&busy, false);
    let queued: Vec<Proc> = (0..80)
        .map(|_| {
            let mut command = Command::new("flock");
            command.arg(&busy).arg("true");
            Proc::spawn(command)
        })
        .collect();
    let give_up = Instant::now() + PATIENCE;
    while fs::read_to_string("/proc/locks")
        .unwrap()
        .matches("->")
        .count()
        < 80
    {
        assert!(Instant::now() < give_up, "the waiters never queued");
        thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..20 {
        let lock = PidLockFile::new(&path);
        assert!(lock.is_locked(), "a held lock looked free");
        let mut lock = lock;
        assert!(matches!(
            lock.release(),
            Err(pidlockfile::UnlockError::NotMyLock { .. })
        ));
    }
    drop(queued);
    first.close_stdin();
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
}

/// A holder whose file someone removed, after which another process took the lock at the same
/// path, does not hold the lock at that path any more.
#[test]
fn review_a_holder_whose_file_was_replaced_is_not_the_one_locking_the_path() {
    let scratch = Scratch::new("rv-replaced");
    let path = scratch.path("app.pid");
    let mut mine = PidLockFile::new(&path);
    mine.acquire(Some(Duration::ZERO)).unwrap();
    fs::remove_file(&path).unwrap();
    assert!(!mine.i_am_locking(), "nothing is locked at the path");
    assert!(!mine.is_locked(), "nothing is locked at the path");
    let mut other = Proc::holder(&path);
    assert!(!mine.i_am_locking(), "another process holds the path");
    assert!(mine.is_locked());
    // Letting go of ours leaves the other holder's file alone.
    mine.release().unwrap();
    assert!(path.exists());
    other.send("status");
    assert!(other.next_report().starts_with("status true true "));
}

/// `XDG_RUNTIME_DIR` is used only when it is this user's alone, and a relative `TMPDIR` is not
/// used at all.
#[test]
fn review_a_runtime_dir_or_temp_dir_that_is_not_private_is_not_used() {
    pidlock_test_support::require_root!("runs a helper as another user");
    let helper = HelperCopy::new();
    let scratch = Scratch::new("rv-xdg");
    let tmp = scratch.dir();
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    // Root's directory, handed on by `su`, or a shared one.
    let foreign = scratch.path("run-user-0");
    fs::create_dir(&foreign).unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o700)).unwrap();
    for xdg in [foreign.as_path(), tmp] {
        let mut proc = helper_as(
            &helper,
            NOBODY,
            &["default", "rv-app"],
            &[("XDG_RUNTIME_DIR", xdg), ("TMPDIR", tmp)],
        );
        assert_eq!(
            proc.next_report(),
            format!(
                "ok {}",
                tmp.join(format!("pidlock-{NOBODY}/rv-app.pid")).display()
            ),
            "XDG_RUNTIME_DIR={}",
            xdg.display()
        );
        proc.close_stdin();
        proc.wait();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_lock-helper"));
    command
        .args(["default", "rv-app-relative"])
        .current_dir(tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", "relative-tmp");
    let mut proc = Proc::spawn(command);
    let uid = rustix::process::geteuid().as_raw();
    assert_eq!(
        proc.next_report(),
        format!("ok /tmp/pidlock-{uid}/rv-app-relative.pid")
    );
    proc.close_stdin();
    proc.wait();
}

/// Another program's shared lock (`flock -s`) is not a holder, and holds up neither a zero
/// timeout for long nor a wait without one for ever.
#[test]
fn h18_a_foreign_shared_lock_is_not_a_holder_and_is_waited_out_or_refused_quickly() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("rv-shared");
    let path = scratch.path("app.pid");
    fs::write(&path, "999999\n").unwrap();
    let mut reader = flock_holder(&path, true);
    assert!(
        !PidLockFile::new(&path).is_locked(),
        "a shared lock is not a holder"
    );
    let started = Instant::now();
    match PidLockFile::new(&path).acquire(Some(Duration::ZERO)) {
        Err(LockError::LockFailed { source, .. }) => {
            assert!(source.to_string().contains("flock -s"), "{source}");
        }
        other => panic!("expected LockFailed, got {other:?}"),
    }
    // It rides shared locks out for 200 ms; the margin is for a busy machine.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let waiting = path.clone();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut lock = PidLockFile::new(&waiting);
        tx.send(()).unwrap();
        lock.acquire(None).map(|()| lock.i_am_locking())
    });
    rx.recv_timeout(PATIENCE).unwrap();
    reader.close_stdin();
    reader.wait();
    assert!(matches!(waiter.join().unwrap(), Ok(true)));
}

/// The lock file's access time, and whether it is ahead of now: where an acquirer that rides
/// out shared locks asks readers to step aside (`step_aside.rs` writes it a second ahead).
fn asks_readers_to_step_aside(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|meta| meta.accessed())
        .is_ok_and(|accessed| accessed > SystemTime::now())
}

/// An acquirer that rides out shared locks asks readers to step aside, in the lock file's access
/// time and nowhere else, and takes the request back when it is done. One killed while it asks
/// leaves a request behind that misleads no reader: they answer from the lock, both ways.
#[test]
fn h18_a_request_to_step_aside_is_taken_back_and_one_left_behind_misleads_no_reader() {
    pidlock_test_support::require_program!("flock", "util-linux");
    let scratch = Scratch::new("h18-step-aside");
    let path = scratch.path("app.pid");
    fs::write(&path, "999999\n").unwrap();
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    let mut shared = flock_holder(&path, true);
    let mut acquirer = Proc::helper(&["hold", s(&path), "60000"]);
    let give_up = Instant::now() + PATIENCE;
    while !asks_readers_to_step_aside(&path) {
        assert!(Instant::now() < give_up, "the acquirer never asked");
        thread::sleep(Duration::from_millis(1));
    }
    assert!(
        !PidLockFile::new(&path).is_locked(),
        "a shared lock is no holder"
    );
    acquirer.kill();
    assert!(
        !PidLockFile::new(&path).is_locked(),
        "a left request is no holder"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "999999\n");
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
    shared.close_stdin();
    shared.wait();
    let mut holder = Proc::holder(&path);
    assert!(
        PidLockFile::new(&path).is_locked(),
        "a holder is one, whatever is asked"
    );
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));

    // One that gives up takes its request back, and leaves the file as it found it.
    fs::write(&path, "999999\n").unwrap();
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    let _shared = flock_holder(&path, true);
    assert!(matches!(
        PidLockFile::new(&path).acquire(Some(Duration::ZERO)),
        Err(LockError::LockFailed { .. })
    ));
    assert!(!asks_readers_to_step_aside(&path));
    assert_eq!(fs::read_to_string(&path).unwrap(), "999999\n");
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
}

fn async_path() -> std::path::PathBuf {
    std::env::var_os("PIDLOCK_TEST_ASYNC_LOCK").map_or_else(
        || std::env::temp_dir().join(format!("pidlock-async-{}.pid", process::id())),
        Into::into,
    )
}

#[pidlockfile::single_instance(path = async_path(), timeout = "forever", quiet)]
async fn outer_task() -> Result<Result<(), pidlockfile::Error>, pidlockfile::Error> {
    Ok(inner_task().await)
}

#[pidlockfile::single_instance(path = async_path(), timeout = "forever", quiet)]
async fn inner_task() -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[pidlockfile::single_instance(path = async_path(), timeout = "forever", quiet)]
fn inner_plain() -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[pidlockfile::single_instance(path = async_path(), timeout = "forever", quiet)]
async fn outer_calling_plain() -> Result<Result<(), pidlockfile::Error>, pidlockfile::Error> {
    Ok(inner_plain())
}

#[pidlockfile::single_instance(path = async_path(), timeout = "forever", quiet)]
fn plain_running_a_runtime() -> Result<Result<(), pidlockfile::Error>, pidlockfile::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    Ok(runtime.block_on(inner_task()))
}

/// A guarded `async fn` that calls another on the same lock is told at once, as a plain
/// function is; also after it had to wait for the lock (when a helper thread took it), when
/// what it calls is a plain guarded function, and when a guarded plain function (`main`) runs
/// the runtime that calls it.
#[test]
fn review_an_async_fn_never_waits_for_itself() {
    let result = bounded(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let me = Some(process::id());
        let is_mine = |r: &Result<(), pidlockfile::Error>| matches!(r, Err(pidlockfile::Error::Lock(LockError::AlreadyLocked { pid, .. })) if *pid == me);
        let mut outcomes = Vec::new();
        for contended in [false, true] {
            // Contended: someone else holds the lock when `outer` starts, so `outer` gets it
            // from its helper thread after waiting.
            let holder = contended.then(|| {
                let (tx, rx) = mpsc::channel();
                let path = async_path();
                let t = thread::spawn(move || {
                    let guard = PidLockFile::lock(path, None).unwrap();
                    tx.send(()).unwrap();
                    thread::sleep(Duration::from_millis(200));
                    drop(guard);
                });
                rx.recv().unwrap();
                t
            });
            let inner = runtime.block_on(outer_task()).unwrap();
            let plain = runtime.block_on(outer_calling_plain()).unwrap();
            outcomes.push((is_mine(&inner), is_mine(&plain)));
            if let Some(holder) = holder {
                holder.join().unwrap();
            }
        }
        outcomes
    });
    assert_eq!(result, [(true, true), (true, true)]);
    let me = Some(process::id());
    let nested = bounded(|| plain_running_a_runtime().unwrap());
    assert!(
        matches!(&nested, Err(pidlockfile::Error::Lock(LockError::AlreadyLocked { pid, .. })) if *pid == me),
        "{nested:?}"
    );
}

/// A guarded `async fn` whose future is dropped while it waits leaves no thread behind, and
/// nothing takes the lock after its caller gave up.
#[test]
fn review_a_dropped_async_wait_leaves_no_thread_and_never_takes_the_lock() {
    let scratch = Scratch::new("rv-drop");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let mut command = Command::new(env!("CARGO_BIN_EXE_si-async-drop"));
    command.env("PIDLOCK_FIXTURE_LOCK", &path);
    let mut dropper = Proc::spawn(command);
    assert_eq!(dropper.next_report(), "dropped 20");
    // The helpers notice within their safety re-check, and exit.
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = fs::read_dir(format!("/proc/{}/task", dropper.id()))
            .unwrap()
            .flatten()
            .filter(|t| {
                fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "pidlock-wait")
            })
            .count();
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "{waiting} helper threads still wait"
        );
        thread::sleep(Duration::from_millis(10));
    }
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
    for round in 0..200 {
        let mut lock = PidLockFile::new(&path);
        if let Err(e) = lock.acquire(Some(Duration::ZERO)) {
            panic!("round {round}: an abandoned wait took the lock: {e}");
        }
    }
    dropper.close_stdin();
    dropper.wait();
}

/// A lock table just under a page, with locks coming and going that push it over and back:
/// a read cut at the page whose second part finds the end (the table shrank meanwhile) must not
/// pass for a complete table.
#[test]
fn review_a_lock_table_around_one_page_never_makes_a_held_lock_look_free() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let scratch = Scratch::new("rv-page");
    let path = scratch.path("app.pid");
    let mut holder = Proc::holder(&path);
    let open = |name: String| {
        fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(scratch.path(&name))
            .unwrap()
    };
    // Fill the table to just under a page with locks of our own.
    let mut filler = Vec::new();
    while fs::read("/proc/locks").unwrap().len() < 3850 && filler.len() < 200 {
        let file = open(format!("fill-{}", filler.len()));
        file.lock().unwrap();
        filler.push(file);
    }
    let churn: Vec<fs::File> = (0..12).map(|i| open(format!("churn-{i}"))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let churning = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for file in &churn {
                    file.lock().unwrap();
                }
                for file in &churn {
                    file.unlock().unwrap();
                }
            }
        })
    };
    let lock = PidLockFile::new(&path);
    let started = Instant::now();
    let mut looks = 0;
    let mut free = 0;
    while started.elapsed() < Duration::from_secs(3) {
        looks += 1;
        free += usize::from(!lock.is_locked());
    }
    stop.store(true, Ordering::Relaxed);
    churning.join().unwrap();
    assert_eq!(free, 0, "{free} of {looks} looks called a held lock free");
    drop(filler);
    holder.send("release");
    assert!(holder.next_report().starts_with("released"));
}

// 19. Ownership that cannot be fooled: nested PID namespaces, guards moved between threads,
// relative paths after `chdir`.

/// `lock-helper as-pid1 nested PATH DEPTH`, with its first report; `None`, with a notice, where
/// this machine does not let the tests make PID namespaces (not root, no user namespaces).
fn nested_holder(path: &Path, depth: u32) -> Option<(Proc, String)> {
    let mut holder = Proc::helper(&["as-pid1", "nested", s(path), &depth.to_string()]);
    let report = holder.next_report();
    if report.starts_with("failed unshare") {
        pidlock_test_support::not_run(&format!(
            "needs new PID namespaces, which this machine does not allow ({report}): run as root"
        ));
        holder.wait();
        return None;
    }
    Some((holder, report))
}

/// A holds the lock as PID 2 under PID 1 (a container's init); it makes `depth` nested PID
/// namespaces, and in the deepest one the first process (PID 1) forks C, which is PID 2 under
/// PID 1 again. C drops its copy of A's lock, and every namespace's PID 1 releases its copy:
/// none of them may touch the file or the lock, and a probe process must still be refused.
fn nested_copies_leave_the_lock_alone(depth: u32) {
    let scratch = Scratch::new(&format!("h19-nested-{depth}"));
    let path = scratch.path("app.pid");
    let Some((mut holder, report)) = nested_holder(&path, depth) else {
        return;
    };
    // Codes other than 0 are those of `copy_touches_nothing` in lock_helper.rs.
    assert_eq!(
        report, "descendants-exited 0 2 1",
        "a copy in a nested PID namespace touched the lock (or A is not PID 2 under PID 1)"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "2\n", "the file stays");
    let mut probe = Proc::helper(&["try", s(&path), "0"]);
    let report = probe.next_report();
    assert!(
        report.starts_with("already-locked 2 "),
        "a second holder got in while A holds the lock: {report}"
    );
    probe.wait();
    holder.send("go");
    assert_eq!(holder.next_report(), "still-mine true");
    assert_eq!(holder.next_report(), "released");
    holder.wait();
    assert!(!path.exists());
}

#[test]
fn h19_a_grandchild_in_a_nested_pid_namespace_with_the_holders_pid_and_parent_pid_touches_nothing()
{
    nested_copies_leave_the_lock_alone(1);
}

#[test]
fn h19_copies_two_pid_namespaces_down_touch_nothing() {
    nested_copies_leave_the_lock_alone(2);
}

#[test]
fn h19_copies_three_pid_namespaces_down_touch_nothing() {
    nested_copies_leave_the_lock_alone(3);
}

/// The calling thread's ID, for `/proc/TID/stat`.
fn this_thread_id() -> u32 {
    let link = fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// The thread that took the lock moves its guard to a worker: to that thread, the lock is
/// held by someone else. It is not refused at once: a short wait times out, and a wait without
/// a limit ends when the worker drops the guard, with the lock.
#[test]
fn h19_a_guard_moved_to_another_thread_is_waited_for_by_the_thread_that_took_it() {
    let scratch = Scratch::new("h19-moved");
    let path = scratch.path("app.pid");
    let result = bounded(move || {
        let guard = PidLockFile::lock(&path, None).unwrap();
        let (tx, rx) = mpsc::channel();
        let worker = thread::spawn(move || {
            let waiter: u32 = rx.recv().unwrap();
            // Let go only once the thread that took the lock is blocked waiting for it.
            common::wait_until_sleeping(waiter);
            drop(guard);
        });
        let mut mine = PidLockFile::new(&path);
        let zero = mine.acquire(Some(Duration::ZERO));
        let short = mine.acquire(Some(Duration::from_millis(50)));
        tx.send(this_thread_id()).unwrap();
        let waited = mine.acquire(None);
        worker.join().unwrap();
        (zero, short, waited, mine.i_am_locking())
    });
    let me = Some(process::id());
    let (zero, short, waited, mine) = result;
    assert!(
        matches!(zero, Err(LockError::AlreadyLocked { pid, .. }) if pid == me),
        "{zero:?}"
    );
    assert!(
        matches!(short, Err(LockError::LockTimeout { .. })),
        "refused at once instead of waiting for the worker: {short:?}"
    );
    assert!(waited.is_ok(), "{waited:?}");
    assert!(mine);
}

/// A worker that owns a moved guard and waits for the same path with a timeout waits for
/// itself: it gets `LockTimeout` (or `AlreadyLocked`), never a hang past its deadline.
#[test]
fn h19_a_worker_holding_a_moved_guard_and_waiting_for_it_gets_a_timeout_not_a_hang() {
    let scratch = Scratch::new("h19-self-wait");
    let path = scratch.path("app.pid");
    let (timed, zero, still) = bounded(move || {
        let guard = PidLockFile::lock(&path, None).unwrap();
        thread::spawn(move || {
            let mut again = PidLockFile::new(&path);
            let timed = again.acquire(Some(Duration::from_millis(300)));
            let zero = again.acquire(Some(Duration::ZERO));
            let still = guard.lock_file().i_am_locking();
            drop(guard);
            (timed, zero, still)
        })
        .join()
        .unwrap()
    });
    assert!(
        matches!(
            timed,
            Err(LockError::LockTimeout { .. } | LockError::AlreadyLocked { .. })
        ),
        "{timed:?}"
    );
    assert!(
        matches!(zero, Err(LockError::AlreadyLocked { .. })),
        "{zero:?}"
    );
    assert!(still, "a failed wait must not cost the holder its lock");
}

/// A daemon takes `app.pid` relative to its directory, then does the classic `chdir("/")`:
/// its status calls still see the lock, and its release removes the file.
#[test]
fn h19_a_relative_path_keeps_naming_the_lock_file_after_chdir() {
    let scratch = Scratch::new("h19-chdir");
    let dir = scratch.path("run");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("app.pid");
    let mut daemon = Proc::helper(&["chdir", s(&path)]);
    let pid = daemon.id();
    assert_eq!(daemon.next_report(), format!("status true true {pid}"));
    assert_eq!(daemon.next_report(), "released");
    daemon.wait();
    assert!(!path.exists(), "the release left the PID file behind");
}

/// The same, with the lock's directory renamed while the lock is held: on Linux the directory
/// is held open, so the lock still names the file in it.
#[cfg(target_os = "linux")]
#[test]
fn h19_a_relative_path_keeps_naming_the_lock_file_after_its_directory_is_renamed() {
    let scratch = Scratch::new("h19-rename");
    let dir = scratch.path("run");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("app.pid");
    let renamed = scratch.path("run.old");
    let mut daemon = Proc::helper(&["chdir", s(&path), s(&renamed)]);
    let pid = daemon.id();
    assert_eq!(daemon.next_report(), format!("status true true {pid}"));
    assert_eq!(daemon.next_report(), "released");
    daemon.wait();
    assert!(renamed.is_dir());
    assert!(
        !renamed.join("app.pid").exists(),
        "the release left the PID file behind"
    );
}

fn pinned_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pidlock-h19-pinned-{}.pid", process::id()))
}

#[pidlockfile::single_instance(path = pinned_path(), timeout = "forever", quiet)]
fn guarded_calling_the_runtime_api() -> Result<Result<(), LockError>, pidlockfile::Error> {
    let mut again = PidLockFile::new(pinned_path());
    Ok(again.acquire(None))
}

/// A `#[single_instance]` function's guard never leaves its frame, so the runtime API knows
/// for sure that the thread running it holds the lock: a wait without a limit from the body is
/// refused at once instead of never returning.
#[test]
fn h19_the_body_of_a_guarded_function_waiting_for_its_own_lock_is_refused_at_once() {
    let nested = bounded(|| guarded_calling_the_runtime_api().unwrap());
    let me = Some(process::id());
    assert!(
        matches!(&nested, Err(LockError::AlreadyLocked { pid, .. }) if *pid == me),
        "{nested:?}"
    );
    assert!(!pinned_path().exists());
}

/// Both can be handed to another thread, which then holds the lock (see above).
#[test]
fn h19_the_lock_and_its_guard_stay_send() {
    fn send<T: Send + Sync>() {}
    send::<PidLockFile>();
    send::<pidlockfile::PidLockGuard>();
}

/// Waiters that name the lock by a relative path hand it over as with an absolute one: the
/// successor file is prepared and linked in the directory each one found at its acquisition.
#[test]
fn h19_waiters_on_a_relative_path_take_the_lock_in_turn() {
    let scratch = Scratch::new("h19-relative-handoff");
    let in_dir = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lock-helper"));
        command.args(args).current_dir(scratch.dir());
        Proc::spawn(command)
    };
    let mut first = in_dir(&["hold", "app.pid", "0"]);
    assert!(first.next_report().starts_with("locked "));
    let mut second = in_dir(&["hold", "app.pid", "60000"]);
    wait_until_sleeping(second.id());
    first.send("release");
    assert!(first.next_report().starts_with("released "));
    let report = second.next_report();
    assert!(
        report.starts_with(&format!("locked {} ", second.id())),
        "{report}"
    );
    let path = scratch.path("app.pid");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}\n", second.id())
    );
    second.send("release");
    assert!(second.next_report().starts_with("released "));
    assert!(!path.exists());
}
