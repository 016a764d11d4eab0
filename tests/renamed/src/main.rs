//! A program that depends on the runtime under the name `lock`: the attribute's generated code
//! must name it `::lock` (there is no `::pidlockfile` in this crate). Holds the lock file given as
//! the first argument until its stdin closes.

use std::io::BufRead;

#[lock::single_instance(path = lock_path(), timeout = 0)]
fn main() {
    println!("running as pid {}", std::process::id());
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn lock_path() -> std::path::PathBuf {
    std::env::args_os()
        .nth(1)
        .map_or_else(|| lock::default_path("pidlock-renamed"), Into::into)
}
