//! `pidlock status`: LSB exit codes, the sentences, and `--json` parsed back.
// Unix only: the command and the fleet lock's test server are Unix programs.
#![cfg(unix)]

mod common;

use std::fs;

use common::*;
use serde_json::Value;

fn json_status(path: &std::path::Path, code: i32) -> Value {
    let out = pidlock()
        .arg("status")
        .arg("--file")
        .arg(path)
        .arg("--json")
        .assert()
        .code(code)
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "one object on one line: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn free_is_3_with_no_file_and_with_a_kept_empty_file() {
    let scratch = Scratch::new("status-free");
    let path = scratch.path("job.pid");
    pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(3)
        .stdout("free\n")
        .stderr("");
    let json = json_status(&path, 3);
    assert_eq!(json["state"], "free");
    assert_eq!(json["lock"]["file"], path.to_str().expect("utf-8"));

    pidlock()
        .arg("run")
        .arg("--file")
        .arg(&path)
        .args(["--keep-file", "--", "true"])
        .assert()
        .success();
    assert_eq!(fs::read(&path).expect("the kept file"), b"");
    pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(3)
        .stdout("free\n");
}

#[test]
fn a_stale_file_is_1_and_says_whether_its_pid_is_running() {
    let scratch = Scratch::new("status-stale");
    let path = scratch.path("job.pid");
    let dead = dead_pid();
    fs::write(&path, format!("{dead}\n")).expect("write a stale file");
    pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(1)
        .stdout(format!(
            "free: stale file names pid {dead}, which is not running\n"
        ));
    let json = json_status(&path, 1);
    assert_eq!(json["state"], "stale");
    assert_eq!(json["pid"], dead);
    assert_eq!(json["pid_running"], false);

    // After a crash, the PID may belong to an unrelated process by now.
    let bystander = bystander();
    fs::write(&path, format!("{}\n", bystander.id())).expect("write a stale file");
    pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(1)
        .stdout(format!(
            "free: stale file names pid {}, which is now an unrelated process (sleep 300)\n",
            bystander.id()
        ));
    assert_eq!(json_status(&path, 1)["pid_running"], true);

    fs::write(&path, "garbage\n").expect("write garbage");
    pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(1)
        .stdout("free: stale file holds no valid PID\n");
}

#[test]
fn held_is_0_and_names_the_holder_in_words_and_in_json() {
    let scratch = Scratch::new("status-held");
    let path = scratch.path("job.pid");
    let held = hold(&path, &[]);
    let out = pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let expected = format!("held by pid {} (host {host}, started ", held.cmd);
    assert!(text.starts_with(&expected), "{text}");
    assert!(
        text.contains(&format!(", taken by pid {}): ", held.wrapper.id())),
        "{text}"
    );
    assert!(text.contains(", held for "), "{text}");

    let json = json_status(&path, 0);
    assert_eq!(json["state"], "held");
    assert_eq!(json["pid"], held.cmd);
    assert_eq!(json["locker_pid"], held.wrapper.id());
    assert_eq!(json["host"], host.as_str());
    let command = json["command"].as_array().expect("the command line");
    assert!(
        command == &["cat"] || command.first().is_some_and(|c| c == "sh"),
        "{json}"
    );
    let started = json["started_unix"].as_u64().expect("a start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(started <= now && now - started < 600, "{json}");
    let held_for = json["held_for_secs"].as_f64().expect("held for");
    assert!((0.0..600.0).contains(&held_for), "{json}");
    assert!(
        json["started"].as_str().is_some_and(|s| s.contains('T')),
        "{json}"
    );
    assert!(held.release().success());
    assert_eq!(json_status(&path, 3)["state"], "free");
}

#[test]
fn an_error_is_4_in_words_and_in_json() {
    let scratch = Scratch::new("status-error");
    let path = scratch.path("link.pid");
    std::os::unix::fs::symlink("/etc/passwd", &path).expect("symlink");
    let out = pidlock()
        .arg("status")
        .arg("--file")
        .arg(&path)
        .assert()
        .code(4)
        .stdout("")
        .get_output()
        .clone();
    assert!(one_line(&out.stderr).contains("symbolic link"));
    let json = json_status(&path, 4);
    assert_eq!(json["state"], "unknown");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("symbolic link"))
    );
}
