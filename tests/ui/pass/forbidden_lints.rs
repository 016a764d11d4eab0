// The generated code switches no lint off, so a crate that forbids them still compiles. (Each
// lint by name: forbidding a group such as `unused` only warns about an `allow` of a member.)
#![forbid(
    unreachable_code,
    unused_variables,
    clippy::needless_return,
    clippy::diverging_sub_expression
)]
#![deny(warnings)]
//! Forbidden lints.

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-forbid-{name}-{}.pid", std::process::id()))
}

/// Always diverges.
#[pidlockfile::single_instance(path = path("exit"))]
fn main() {
    assert_eq!(early(), 1);
    assert_eq!(looping(), 2);
    // `exit` skips the guard's drop: the file is removed here, so that the test leaves nothing.
    let _ = std::fs::remove_file(path("exit"));
    std::process::exit(0)
}

#[pidlockfile::single_instance(path = path("early"))]
fn early() -> u32 {
    if std::env::args().count() > 100 {
        return 0;
    }
    1
}

#[pidlockfile::single_instance(path = path("loop"))]
fn looping() -> u32 {
    loop {
        return 2;
    }
}
