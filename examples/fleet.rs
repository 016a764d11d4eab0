//! One copy across a whole fleet: every instance connects to the same PostgreSQL server, and
//! only one of them runs at a time, wherever it runs.
//!
//! ```text
//! DATABASE_URL=postgres://app@db.internal/app cargo run --example fleet
//! scripts/with-postgres.sh cargo run --example fleet     # on a throwaway local server
//! ```
//!
//! The narrator starts copies of itself as the "instances" (with `--instance`): a first one
//! runs, a second one is refused with the holder's pid, host and server, and once the first has
//! exited a third gets in. Then it shows the fencing tokens that a downstream store uses to
//! refuse a stale holder.
#![warn(clippy::pedantic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod app {
    use std::io::BufRead;

    /// The program itself: a conflict prints one line and exits with status 1; losing the lock
    /// while running (the server restarts, the network fails) prints one line and exits too.
    #[pidlockfile::single_instance(
        postgres = std::env::var("DATABASE_URL").unwrap_or_default(),
        name = "fleet-demo"
    )]
    pub fn main() {
        println!("running as pid {}", std::process::id());
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        println!("done, releasing the lock");
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--instance") {
        app::main();
        return;
    }
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "fleet: set DATABASE_URL to a PostgreSQL server (postgres://user@host/db), or run \
             `scripts/with-postgres.sh cargo run --example fleet` for a throwaway one"
        );
        std::process::exit(2);
    };

    println!("== instance 1 takes the fleet lock");
    let mut first = start();
    println!("   instance 1: {}", next_line(&mut first));

    println!("== instance 2 is refused, wherever it runs");
    let second = start();
    let output = second.wait_with_output().expect("instance 2 ran");
    print!("   instance 2: {}", String::from_utf8_lossy(&output.stderr));
    println!("   instance 2 exited with {}", output.status);

    println!("== instance 1 finishes; instance 3 gets in");
    drop(first.stdin.take());
    println!("   instance 1: {}", next_line(&mut first));
    let _ = first.wait();
    let mut third = start();
    println!("   instance 3: {}", next_line(&mut third));
    drop(third.stdin.take());
    let _ = third.wait();

    println!("== fencing tokens only grow, across holders and hosts");
    let mut last = 0;
    for round in 1..=3 {
        let guard =
            pidlockfile::PgLock::lock(&url, "fleet-demo-report", Some(Duration::from_secs(5)))
                .expect("the lock is free");
        let token = guard.fencing_token();
        println!(
            "   holder {round}: fencing token {token} (> {last}: writes with {last} are refused)"
        );
        assert!(token > last);
        last = token;
    }
}

fn start() -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .arg("--instance")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start an instance")
}

fn next_line(child: &mut Child) -> String {
    let mut line = String::new();
    let stdout = child.stdout.as_mut().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let _ = std::io::stdout().flush();
    line.trim_end().to_owned()
}
