//! Who holds a lock, when the process identity's mark cannot be trusted or is gone: a nested
//! PID namespace child that reuses the mark's descriptor number, a kernel without
//! `F_OFD_GETLK`, a holder whose mark was closed or reopened, a thread with a descriptor table
//! of its own, a first use at the descriptor limit without `/proc`; a guarded `async fn` whose
//! task moved to another thread; a relative path with a trailing slash.
//!
//! Each test that needs a fresh process identity, a changed descriptor table or current
//! directory, a seccomp filter or namespaces re-runs this test binary with `OWNERSHIP_ROLE`
//! naming itself: the identity is process-wide, made on first use.
#![cfg(target_os = "linux")]
#![allow(unsafe_code, clippy::unwrap_used, missing_docs)]

use std::ffi::CString;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use pidlockfile::{LockError, PidLockFile};

mod common;

const ROLE: &str = "OWNERSHIP_ROLE";
const PATH: &str = "OWNERSHIP_PATH";

/// The path the role works on (a file in the test's own directory).
fn role_path() -> PathBuf {
    PathBuf::from(std::env::var(PATH).unwrap())
}

/// Whether this process is the copy started for `name`, rather than the test harness.
fn is_role(name: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|role| role == name)
}

/// In the harness: runs the test `name` in a fresh copy of this binary, killed after 60 s,
/// and returns its `STATE` lines; fails if it failed. In a copy started for another test, does
/// nothing.
fn run_role(name: &str) -> Vec<String> {
    if std::env::var(ROLE).is_ok() {
        return Vec::new();
    }
    let scratch = common::Scratch::new(name);
    let out = Command::new("timeout")
        .args(["-s", "KILL", "60"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, name)
        .env(PATH, scratch.path("app.pid"))
        .current_dir(scratch.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let states: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.find("STATE").map(|at| l[at..].to_owned()))
        .collect();
    assert!(
        out.status.success(),
        "{name} failed ({}): {states:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    states
}

/// The descriptor number of pidlockfile's process mark in this process.
fn mark_fd() -> Option<i32> {
    fs::read_dir("/proc/self/fd").ok()?.flatten().find_map(|e| {
        let link = fs::read_link(e.path()).ok()?;
        link.to_string_lossy()
            .contains("pidlock-process-identity")
            .then(|| e.file_name().to_str()?.parse().ok())?
    })
}

fn wait_code(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

// ---------------------------------------------------------------------------------------------
// A child in a nested PID namespace with the holder's PID (root: `unshare`, `ns_last_pid`).

/// How process A sets up for the nested child C.
#[derive(Clone, Copy, PartialEq)]
enum Nested {
    /// C drops its inherited copy of A's `PidLockFile`, nothing more.
    Plain,
    /// C first puts a file it record-locks itself at the mark's descriptor number.
    ReusedMark,
    /// A made its identity at the descriptor limit, and has no `/proc`.
    NoMarkNoProc,
}

/// Hides `/proc` from this process (a private mount namespace with `/proc` detached), and
/// makes the first pidlockfile call at the descriptor limit, so that no mark can be made then.
/// `false` where this process may not make a mount namespace (not root).
fn first_use_at_limit_without_proc(path: &Path) -> bool {
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return false;
    }
    unsafe {
        let root = CString::new("/").unwrap();
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        let none = std::ptr::null();
        assert_eq!(
            libc::mount(none, root.as_ptr(), none, flags, std::ptr::null()),
            0
        );
        let proc_ = CString::new("/proc").unwrap();
        assert_eq!(libc::umount2(proc_.as_ptr(), libc::MNT_DETACH), 0);
    }
    assert!(!Path::new("/proc/self").exists());
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let saved = limit;
    limit.rlim_cur = 64;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let mut spare = Vec::new();
    while let Ok(f) = fs::File::open("/dev/null") {
        spare.push(f);
    }
    let at_limit = PidLockFile::new(path.with_extension("other")).acquire(Some(Duration::ZERO));
    assert!(at_limit.is_err());
    drop(spare);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    true
}

/// Process A: holds the lock, forks B into a new PID namespace, B forks C with A's PID, C
/// drops its copy. Prints what it saw, then waits for a line on stdin (the harness probes the
/// lock meanwhile) before letting go.
fn nested_holder(path: &Path, how: Nested) {
    if how == Nested::NoMarkNoProc && !first_use_at_limit_without_proc(path) {
        println!("STATE skipped: no mount namespaces here");
        return;
    }
    let mut lock = PidLockFile::new(path);
    lock.acquire(Some(Duration::ZERO)).unwrap();
    // Without /proc the number cannot be looked up; only ReusedMark needs it.
    let mark = if how == Nested::ReusedMark {
        mark_fd().expect("the process mark's memfd")
    } else {
        -1
    };
    let a_pid = std::process::id();
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        println!("STATE skipped: no PID namespaces here");
        return;
    }
    let db = CString::new(format!("{}.db", path.display())).unwrap();
    let b = unsafe { libc::fork() };
    if b == 0 {
        // B: PID 1 of the new namespace. Its next child gets A's PID.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let proc_ = CString::new("/proc").unwrap();
        let kind = CString::new("proc").unwrap();
        let remount = how == Nested::NoMarkNoProc;
        if remount
            && unsafe {
                libc::mount(
                    kind.as_ptr(),
                    proc_.as_ptr(),
                    kind.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            } != 0
        {
            unsafe { libc::_exit(34) };
        }
        let set = fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", a_pid - 1));
        if remount {
            unsafe { libc::umount2(proc_.as_ptr(), libc::MNT_DETACH) };
        }
        if set.is_err() {
            unsafe { libc::_exit(30) };
        }
        let c = unsafe { libc::fork() };
        if c == 0 {
            // C: A's PID, in a nested namespace, with a copy of A's memory.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            if std::process::id() != a_pid {
                unsafe { libc::_exit(31) };
            }
            if how == Nested::ReusedMark {
                // A daemonising child's own record-locked file, at the mark's number.
                let fd = unsafe { libc::open(db.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
                if fd < 0 || unsafe { libc::dup2(fd, mark) } != mark {
                    unsafe { libc::_exit(32) };
                }
                unsafe { libc::close(fd) };
                let mut fl: libc::flock = unsafe { std::mem::zeroed() };
                fl.l_type = libc::F_WRLCK as i16;
                fl.l_whence = libc::SEEK_SET as i16;
                if unsafe { libc::fcntl(mark, libc::F_SETLK, &fl) } != 0 {
                    unsafe { libc::_exit(33) };
                }
            }
            let thinks_it_holds = lock.i_am_locking();
            drop(lock);
            unsafe { libc::_exit(if thinks_it_holds { 1 } else { 0 }) };
        }
        let code = wait_code(c);
        unsafe { libc::_exit(code) };
    }
    let code = wait_code(b);
    let file = fs::read_to_string(path).ok();
    println!(
        "STATE code={code} file_after_c={file:?} a_i_am_locking={}",
        lock.i_am_locking()
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let _ = fs::remove_file(format!("{}.db", path.display()));
    drop(lock);
}

/// Runs `name` as process A (see [`nested_holder`]), probes the lock while A still holds it.
fn nested(name: &str, how: Nested) {
    if is_role(name) {
        nested_holder(&role_path(), how);
        return;
    }
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let scratch = common::Scratch::new(name);
    let path = scratch.path("app.pid");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, name)
        .env(PATH, &path);
    let mut a = common::Proc::spawn(command);
    let state = loop {
        let line = a.next_line();
        if let Some(at) = line.find("STATE") {
            break line[at..].to_owned();
        }
    };
    if state.contains("skipped") || state.starts_with("STATE code=30") {
        pidlock_test_support::not_run(&format!("needs root and PID namespaces ({state})"));
        a.send("go");
        a.wait();
        return;
    }
    let probe = Command::new(env!("CARGO_BIN_EXE_lock-helper"))
        .args(["try", path.to_str().unwrap(), "0"])
        .output()
        .unwrap();
    let probe = String::from_utf8_lossy(&probe.stdout).into_owned();
    a.send("go");
    let status = a.wait();
    assert!(status.success(), "A failed: {state}");
    assert!(
        state.starts_with("STATE code=0 "),
        "C took itself for A (code 1), or the scenario failed: {state}"
    );
    assert!(
        state.contains("file_after_c=Some("),
        "C unlinked A's PID file: {state}"
    );
    assert!(
        state.contains("a_i_am_locking=true"),
        "A lost itself: {state}"
    );
    assert!(
        probe.starts_with("already-locked"),
        "a third process got the lock while A holds it: {probe}"
    );
}

#[test]
fn nested_child_with_the_holders_pid_leaves_its_lock_alone() {
    nested(
        "nested_child_with_the_holders_pid_leaves_its_lock_alone",
        Nested::Plain,
    );
}

/// The mark is checked by what the descriptor names, not by its number alone.
#[test]
fn nested_child_that_reuses_the_marks_descriptor_number_is_not_the_holder() {
    nested(
        "nested_child_that_reuses_the_marks_descriptor_number_is_not_the_holder",
        Nested::ReusedMark,
    );
}

/// A first use at the descriptor limit leaves no mark for good: the mark is made again later.
#[test]
fn nested_child_is_not_the_holder_whose_first_use_had_no_mark_and_no_proc() {
    nested(
        "nested_child_is_not_the_holder_whose_first_use_had_no_mark_and_no_proc",
        Nested::NoMarkNoProc,
    );
}

// ---------------------------------------------------------------------------------------------
// The holder keeps knowing itself.

/// Makes `fcntl(F_OFD_GETLK)` fail with `EINVAL`, as a kernel or sandbox without OFD locks.
#[cfg(target_arch = "x86_64")]
fn deny_ofd_getlk() {
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let filter = [
        insn(0x20, 0, 0, 0),                      // A = nr
        insn(0x15, 0, 3, libc::SYS_fcntl as u32), // nr == fcntl ?
        insn(0x20, 0, 0, 24),                     // A = args[1] (low half)
        insn(0x15, 0, 1, libc::F_OFD_GETLK as u32),
        insn(0x06, 0, 0, 0x0005_0000 | libc::EINVAL as u32), // ERRNO(EINVAL)
        insn(0x06, 0, 0, 0x7fff_0000),                       // ALLOW
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const _
            ),
            0
        );
    }
}

/// Takes the lock, lets `spoil` do its worst to the mark, and checks that the holder still
/// knows itself and that `release` removes the file.
fn holder_keeps_itself(path: &Path, spoil: impl FnOnce()) {
    let mut lock = PidLockFile::new(path);
    lock.acquire(Some(Duration::ZERO)).unwrap();
    spoil();
    let mine = (lock.is_locked(), lock.i_am_locking());
    let released = lock.release();
    let left = fs::read_to_string(path).ok();
    println!("STATE is_locked,i_am_locking={mine:?} release={released:?} left={left:?}");
    assert_eq!(
        mine,
        (true, true),
        "the holder does not know it holds the lock"
    );
    assert!(released.is_ok(), "{released:?}");
    assert_eq!(left, None, "release left the PID file behind");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn without_ofd_getlk_the_holder_is_itself() {
    let name = "without_ofd_getlk_the_holder_is_itself";
    if is_role(name) {
        deny_ofd_getlk();
        holder_keeps_itself(&role_path(), || {});
        let marks = fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().contains("pidlock-process-identity"))
            })
            .count();
        assert_eq!(marks, 1, "one mark, not one per call");
        return;
    }
    run_role(name);
}

#[test]
fn holder_whose_mark_inode_was_reopened_and_closed_is_itself() {
    let name = "holder_whose_mark_inode_was_reopened_and_closed_is_itself";
    if is_role(name) {
        holder_keeps_itself(&role_path(), || {
            // Closing any descriptor of the memfd ends the process's record lock on it.
            let mark = mark_fd().unwrap();
            drop(fs::File::open(format!("/proc/self/fd/{mark}")).unwrap());
        });
        return;
    }
    run_role(name);
}

#[test]
fn holder_whose_mark_descriptor_was_closed_is_itself() {
    let name = "holder_whose_mark_descriptor_was_closed_is_itself";
    if is_role(name) {
        // A descriptor sweep that closes what it does not know.
        holder_keeps_itself(&role_path(), || unsafe {
            libc::close(mark_fd().unwrap());
        });
        return;
    }
    run_role(name);
}

fn guarded_path() -> PathBuf {
    role_path()
}

#[pidlockfile::single_instance(path = guarded_path(), timeout = "forever", quiet)]
fn inner() -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[pidlockfile::single_instance(path = guarded_path(), timeout = "forever", quiet)]
fn outer() -> Result<(), pidlockfile::Error> {
    let mark = mark_fd().unwrap();
    drop(fs::File::open(format!("/proc/self/fd/{mark}")).unwrap());
    inner()
}

/// Documented as refused at once: it must not wait for itself (the role is killed after 60 s).
#[test]
fn nested_guarded_call_after_the_mark_was_reopened_is_refused_at_once() {
    let name = "nested_guarded_call_after_the_mark_was_reopened_is_refused_at_once";
    if is_role(name) {
        let nested = outer();
        println!("STATE nested call returned {nested:?}");
        assert!(nested.is_err());
        return;
    }
    run_role(name);
}

/// A thread with a descriptor table of its own makes the identity; other threads cannot see its
/// mark. Neither thread loses its lock, and no descriptor is closed in the wrong table (in a
/// debug build std aborts on that).
#[test]
fn thread_with_a_private_descriptor_table_keeps_its_lock() {
    let name = "thread_with_a_private_descriptor_table_keeps_its_lock";
    if is_role(name) {
        let dir = role_path().parent().unwrap().to_owned();
        let (to_main, from_worker) = mpsc::channel();
        let (to_worker, from_main) = mpsc::channel::<()>();
        let first = dir.join("worker.pid");
        let worker = thread::spawn(move || {
            assert_eq!(unsafe { libc::unshare(libc::CLONE_FILES) }, 0);
            let mut lock = PidLockFile::new(&first);
            lock.acquire(Some(Duration::ZERO)).unwrap();
            let before = lock.i_am_locking();
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
            let after = lock.i_am_locking();
            let released = lock.release().map_err(|e| e.to_string());
            (before, after, released, first.exists())
        });
        from_worker.recv().unwrap();
        let mut other = PidLockFile::new(dir.join("main.pid"));
        other.acquire(Some(Duration::ZERO)).unwrap();
        to_worker.send(()).unwrap();
        let seen = worker.join().unwrap();
        let main = (other.i_am_locking(), other.release().is_ok());
        println!("STATE worker={seen:?} main={main:?}");
        assert_eq!(seen, (true, true, Ok(()), false));
        assert_eq!(main, (true, true));
        return;
    }
    run_role(name);
}

// ---------------------------------------------------------------------------------------------
// A guarded `async fn` whose task moved to another thread.

static GATE: AtomicBool = AtomicBool::new(false);

struct Gate;
impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if GATE.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

fn task_path() -> PathBuf {
    std::env::temp_dir().join(format!("pidlock-ownership-task-{}.pid", std::process::id()))
}

#[pidlockfile::single_instance(path = task_path(), timeout = "forever", quiet)]
async fn guarded_task() -> Result<(), pidlockfile::Error> {
    Gate.await;
    Ok(())
}

/// The thread a task left is not the holder: its plain wait with a timeout times out.
#[test]
fn thread_a_guarded_task_left_waits_its_turn() {
    let (tx, rx) = mpsc::channel();
    let first_worker = thread::spawn(move || {
        let mut task = Box::pin(guarded_task());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            task.as_mut().poll(&mut cx).is_pending(),
            "inside, holding the lock"
        );
        // The runtime moves the task to another worker (polled by hand: deterministic).
        tx.send(task).unwrap();
        let started = Instant::now();
        let result = PidLockFile::new(task_path()).acquire(Some(Duration::from_millis(300)));
        (result, started.elapsed())
    });
    let mut task = rx.recv().unwrap();
    let (result, took) = first_worker.join().unwrap();
    GATE.store(true, Ordering::SeqCst);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(task.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    let _ = fs::remove_file(task_path());
    assert!(
        matches!(result, Err(LockError::LockTimeout { .. })),
        "the thread the task left was refused after {took:?}: {result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Relative paths.

/// "rel.pid/" names a directory: refused, as its absolute form is, naming the path.
#[test]
fn relative_path_with_a_trailing_slash_is_refused_like_the_absolute_one() {
    let name = "relative_path_with_a_trailing_slash_is_refused_like_the_absolute_one";
    if is_role(name) {
        let dir = std::env::current_dir().unwrap();
        let absolute =
            PidLockFile::new(format!("{}/abs.pid/", dir.display())).acquire(Some(Duration::ZERO));
        let relative = PidLockFile::new("rel.pid/").acquire(Some(Duration::ZERO));
        let created = dir.join("rel.pid").exists();
        println!("STATE absolute={absolute:?} relative={relative:?} created={created}");
        assert!(
            matches!(absolute, Err(LockError::LockFailed { .. })),
            "{absolute:?}"
        );
        match relative {
            Err(LockError::LockFailed { path, .. }) => assert_eq!(path, Path::new("rel.pid/")),
            other => panic!("rel.pid/ was not refused: {other:?}"),
        }
        assert!(!created, "rel.pid was created");
        return;
    }
    run_role(name);
}

/// `link/..` is where the kernel says (the symlink's target's parent), after a `chdir` too.
#[test]
fn relative_dotdot_through_a_symlinked_directory() {
    let name = "relative_dotdot_through_a_symlinked_directory";
    if is_role(name) {
        let dir = std::env::current_dir().unwrap();
        fs::create_dir_all("real/sub").unwrap();
        std::os::unix::fs::symlink(dir.join("real/sub"), "link").unwrap();
        let mut lock = PidLockFile::new("link/../app.pid");
        lock.acquire(Some(Duration::ZERO)).unwrap();
        std::env::set_current_dir("/").unwrap();
        let on_disk = dir.join("real/app.pid").exists();
        let status = (lock.is_locked(), lock.i_am_locking(), lock.read_pid());
        let other = PidLockFile::new(dir.join("real/app.pid")).is_locked();
        let released = lock.release();
        println!("STATE on_disk={on_disk} {status:?} other={other} {released:?}");
        assert!(on_disk && other);
        assert_eq!(status, (true, true, Some(std::process::id())));
        assert!(released.is_ok() && !dir.join("real/app.pid").exists());
        return;
    }
    run_role(name);
}

/// Status calls from another thread after the acquiring thread exited, the directory renamed.
#[test]
fn relative_status_from_another_thread_after_the_acquirer_exited() {
    let name = "relative_status_from_another_thread_after_the_acquirer_exited";
    if is_role(name) {
        let dir = std::env::current_dir().unwrap();
        fs::create_dir("run").unwrap();
        let mut lock = thread::spawn(|| {
            let mut lock = PidLockFile::new("run/app.pid");
            lock.acquire(Some(Duration::ZERO)).unwrap();
            lock
        })
        .join()
        .unwrap();
        std::env::set_current_dir("/").unwrap();
        fs::rename(dir.join("run"), dir.join("run.old")).unwrap();
        let status = (lock.is_locked(), lock.i_am_locking(), lock.read_pid());
        let released = lock.release();
        println!("STATE {status:?} {released:?}");
        assert_eq!(status, (true, true, Some(std::process::id())));
        assert!(released.is_ok());
        assert!(!dir.join("run.old/app.pid").exists());
        return;
    }
    run_role(name);
}
