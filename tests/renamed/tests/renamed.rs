//! The binary built against the renamed dependency takes the lock, and a second copy is refused
//! with the attribute's one-line conflict message and exit status 1.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child if the test fails before it is stopped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn renamed_dependency_takes_and_refuses_the_lock() {
    let dir = std::env::temp_dir().join(format!("pidlock-renamed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("renamed.pid");
    let exe = env!("CARGO_BIN_EXE_pidlock-renamed");

    let mut first = Reap(
        Command::new(exe)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(first.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("running as pid"),
        "first copy said {line:?}"
    );

    let second = Command::new(exe)
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "second copy: {stderr}");
    assert!(stderr.contains("is already running"), "{stderr}");
    assert!(second.stdout.is_empty(), "the second copy ran its body");

    drop(first.0.stdin.take()); // the first copy exits and releases
    assert!(first.0.wait().unwrap().success());
    assert!(!path.exists(), "the lock file stayed behind");
    std::fs::remove_dir(&dir).unwrap();
}
