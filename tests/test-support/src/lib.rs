//! Test support shared by the workspace's test packages.
//!
//! [`skip!`] is how a test that cannot run on this machine (no PostgreSQL server, not root, no
//! `flock(1)`) says so: one line, starting with [`MARKER`], written past the test harness's
//! output capture so that it shows in a passing run, and counted by `scripts/test-summary.sh`
//! (which `.ci/run` and `scripts/test.sh` use) as "not run". Never a silent pass.

#![allow(clippy::unwrap_used, missing_docs)]

#[cfg(unix)]
pub mod pg;

use std::io::Write;

/// The start of every "not run" line, what the summary counts.
pub const MARKER: &str = "NOT RUN:";

/// Writes `NOT RUN: <test>: <reason>` on stderr, uncaptured, as one write (so that lines of
/// tests running in parallel do not interleave).
pub fn not_run(reason: &str) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("<unnamed test>");
    let line = format!("{MARKER} {test}: {reason}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Ends the calling test (a `fn` returning `()`) as not run, saying why in one line.
///
/// ```ignore
/// if !has_server() {
///     pidlock_test_support::skip!("needs PostgreSQL's server (apt-get install postgresql)");
/// }
/// ```
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::not_run(&format!($($reason)+));
        return;
    }};
}

/// Starts `command` with SIGINT's and SIGQUIT's default actions. A test run started in the
/// background of a script has them ignored, its children inherit that (as they must: `nohup`),
/// and a shell cannot trap a signal that was ignored on entry: the tests' children start as
/// from a terminal, so that a test that stops one with SIGINT, or counts the SIGINTs a job gets,
/// means the same wherever it runs.
#[cfg(unix)]
pub fn default_signals(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    #[cfg(unix)]
    return rustix::process::geteuid().is_root();
    #[cfg(not(unix))]
    return false;
}

/// Ends the calling test as not run unless it runs as root; `what` says what needs it.
#[macro_export]
macro_rules! require_root {
    ($what:expr) => {
        if !$crate::is_root() {
            $crate::skip!("needs root ({}): run as root, as .ci/run does", $what);
        }
    };
}

/// Whether `program` is on `PATH` as an executable file.
pub fn has_program(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|meta| {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    meta.is_file() && meta.permissions().mode() & 0o111 != 0
                }
                #[cfg(not(unix))]
                meta.is_file()
            })
        })
    })
}

/// Ends the calling test as not run unless `program` is installed; `package` is the Debian
/// package that has it.
#[macro_export]
macro_rules! require_program {
    ($program:expr, $package:expr) => {
        if !$crate::has_program($program) {
            $crate::skip!("needs {} (Debian: apt-get install {})", $program, $package);
        }
    };
}
