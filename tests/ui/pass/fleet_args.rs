#![deny(warnings)]
//! `postgres = ...` takes a literal or any `AsRef<str>` expression, evaluated at run time;
//! `name`, `timeout`, `quiet` and `on_lost` (a path or a closure) go with it. Nothing listens
//! on port 1, so every call fails at once, as the function's `Err`.

const REFUSED: &str = "host=127.0.0.1 port=1 user=nobody connect_timeout=2";

fn on_lost(lost: &pidlockfile::Lost) {
    eprintln!("error: {lost}");
}

#[pidlockfile::single_instance(postgres = "host=127.0.0.1 port=1 user=nobody", name = "literal")]
fn literal() -> Result<(), pidlockfile::Error> {
    Ok(())
}

#[pidlockfile::single_instance(postgres = String::from(REFUSED), name = format!("job-{}", 1), timeout = 5, quiet)]
fn expressions() -> Result<u32, pidlockfile::LockError> {
    Ok(1)
}

#[pidlockfile::single_instance(postgres = conninfo, on_lost = on_lost)]
fn parameter(conninfo: &str) -> std::io::Result<&str> {
    Ok(conninfo)
}

#[pidlockfile::single_instance(postgres = REFUSED, on_lost = |lost| eprintln!("{}", lost.reason()), timeout = "forever")]
async fn asynchronous() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

fn main() {
    let error = literal().unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("cannot lock literal on PostgreSQL at 127.0.0.1:1: "),
        "{text}"
    );
    assert!(matches!(
        expressions(),
        Err(pidlockfile::LockError::LockFailed { .. })
    ));
    assert!(parameter(REFUSED).is_err());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(runtime.block_on(asynchronous()).is_err());
}
