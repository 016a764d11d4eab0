//! `pidlock status`: who holds the lock, as a sentence or as one JSON object, with the exit
//! codes of an LSB init script's `status` action.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::backend;
use crate::cli::StatusArgs;
use crate::failure::Failure;
use crate::holder::{self, format_duration, format_time};
use crate::lock::{Holder, Lock, Status};
use crate::report;

/// LSB: the program is running (here: the lock is held).
const HELD: u8 = 0;
/// LSB: not running, but the PID file exists.
const STALE: u8 = 1;
/// LSB: not running.
const FREE: u8 = 3;
/// LSB: unknown.
const UNKNOWN: u8 = 4;

/// Runs `pidlock status` and returns its exit status.
pub fn status(args: &StatusArgs) -> u8 {
    let lock = match backend::open(&args.lock, false, &[]) {
        Ok(lock) => lock,
        Err(failure) => {
            report(&failure);
            return 2;
        }
    };
    let found = lock.status();
    let code = match &found {
        Ok(Status::Held(_)) => HELD,
        Ok(Status::Stale { .. }) => STALE,
        Ok(Status::Free) => FREE,
        Err(_) => UNKNOWN,
    };
    if args.json {
        println!("{}", as_json(&*lock, &found));
    } else {
        match &found {
            Ok(status) => println!("{}", sentence(status)),
            Err(failure) => report(failure),
        }
    }
    code
}

/// `free`, `free: stale file names pid 4242, which is not running`, or the holder.
fn sentence(status: &Status) -> String {
    match status {
        Status::Free => "free".to_owned(),
        Status::Stale { pid: None, .. } => "free: stale file holds no valid PID".to_owned(),
        Status::Stale {
            pid: Some(pid),
            now: None,
        } => format!("free: stale file names pid {pid}, which is not running"),
        Status::Stale {
            pid: Some(pid),
            now: Some(other),
        } => format!(
            "free: stale file names pid {pid}, which is now an unrelated process ({})",
            other.command_line()
        ),
        Status::Held(holder) => held_sentence(holder),
    }
}

/// `held by pid 4243 (host db1, started 10:31:07, held for 3m05s, taken by pid 4242):
/// backup.sh --full`.
fn held_sentence(holder: &Holder) -> String {
    let mut text = match (holder.pid, &holder.session) {
        (Some(pid), _) => format!("held by pid {pid}"),
        (None, Some(_)) if let Some(wrapper) = holder.wrapper_gone => format!(
            "held by a job that outlived its wrapper (the session names `pidlock run` pid \
             {wrapper}, which no longer runs)"
        ),
        (None, Some(session)) => format!(
            "held by a session that is not pidlock's (application_name {:?})",
            session.application_name
        ),
        (None, None) => "held by a process that did not write the PID file".to_owned(),
    };
    let mut details = Vec::new();
    if !holder.holders.is_empty() && holder.pid.is_none_or(|pid| !holder.holders.contains(&pid)) {
        let pids: Vec<String> = holder.holders.iter().map(u32::to_string).collect();
        details.push(format!("held through pid {}", pids.join(", ")));
    }
    if let Some(named) = holder.file_pid {
        details.push(format!(
            "the file names pid {named}, which does not hold it"
        ));
    }
    if let Some(host) = &holder.host {
        details.push(format!("host {host}"));
    }
    if let Some(session) = &holder.session {
        details.push(format!("server process {}", session.backend_pid));
    }
    if let Some(command) = holder.command {
        details.push(format!("command pid {command}"));
    }
    if let Some(started) = holder.process.as_ref().and_then(|p| p.started) {
        details.push(format!("started {}", format_time(started)));
    }
    if let Some(held_for) = holder.since.and_then(|since| since.elapsed().ok()) {
        details.push(format!("held for {}", format_duration(held_for)));
    }
    if let Some(locker) = holder.locker.filter(|&locker| Some(locker) != holder.pid) {
        details.push(format!("taken by pid {locker}"));
    }
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(", ")));
    }
    match &holder.process {
        Some(process) if !process.argv.is_empty() => {
            text.push_str(&format!(": {}", process.command_line()));
        }
        Some(_) => {}
        // Another host's processes are out of sight by nature.
        None if holder.pid.is_some() && holder.session.is_none() => {
            text.push_str(": not visible from here");
        }
        None => {}
    }
    text
}

fn as_json(lock: &dyn Lock, found: &Result<Status, Failure>) -> Value {
    let mut out = json!({ "lock": lock.json_id() });
    let fields = match found {
        Ok(Status::Free) => json!({ "state": "free" }),
        Ok(Status::Stale { pid, now }) => json!({
            "state": "stale",
            "pid": pid,
            "pid_running": now.is_some(),
        }),
        Ok(Status::Held(holder)) => {
            let started = holder.process.as_ref().and_then(|p| p.started);
            let mut fields = json!({
                "state": "held",
                "pid": holder.pid,
                "locker_pid": holder.locker,
                "holder_pids": holder.holders,
                "file_pid": holder.file_pid,
                "host": holder.host,
                "command": holder.process.as_ref().map(|p| &p.argv),
                "started": started.and_then(holder::format_iso),
                "started_unix": started.and_then(holder::epoch_seconds),
                "held_since": holder.since.and_then(holder::format_iso),
                "held_for_secs": holder
                    .since
                    .and_then(|since| SystemTime::now().duration_since(since).ok())
                    .map(|d| d.as_secs_f64()),
            });
            if let (Some(session), Some(fields)) = (&holder.session, fields.as_object_mut()) {
                fields.extend([
                    ("backend_pid".to_owned(), json!(session.backend_pid)),
                    (
                        "application_name".to_owned(),
                        json!(session.application_name),
                    ),
                    ("command_pid".to_owned(), json!(holder.command)),
                    // The job outlived its wrapper: the session names a PID that no longer
                    // runs, so `pid` is null.
                    (
                        "wrapper_exited".to_owned(),
                        json!(holder.wrapper_gone.is_some()),
                    ),
                ]);
            }
            fields
        }
        Err(failure) => json!({ "state": "unknown", "error": failure.to_string() }),
    };
    if let (Some(out), Value::Object(fields)) = (out.as_object_mut(), fields) {
        out.extend(fields);
    }
    out
}
