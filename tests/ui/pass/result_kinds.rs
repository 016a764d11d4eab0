#![deny(warnings)]
//! Every way of spelling a `Result` returns a conflict as its `Err`, decided at the type
//! level: paths, aliases, `io::Result`, `anyhow::Result`, and every error type with
//! `From<pidlockfile::Error>`. Each function calls itself while it holds its lock, so the inner
//! call meets a conflict.

use std::fmt;

#[derive(Debug)]
struct MyError(String);

impl From<pidlockfile::Error> for MyError {
    fn from(e: pidlockfile::Error) -> Self {
        MyError(e.to_string())
    }
}

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-result-{name}-{}.pid", std::process::id()))
}

fn locked(name: &str) -> String {
    format!("{} is locked by process {}", path(name).display(), std::process::id())
}

#[pidlockfile::single_instance(path = path("io"))]
fn io_result(again: bool) -> std::io::Result<u32> {
    if again {
        let err = io_result(false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(err.to_string(), locked("io"));
    }
    Ok(1)
}

#[pidlockfile::single_instance(path = path("mine"))]
fn my_result(again: bool) -> Result<u32, MyError> {
    if again {
        assert_eq!(my_result(false).unwrap_err().0, locked("mine"));
    }
    Ok(2)
}

#[pidlockfile::single_instance(path = path("pidlock"))]
fn pidlock_result(again: bool) -> Result<u32, pidlockfile::Error> {
    if again {
        assert!(matches!(
            pidlock_result(false),
            Err(pidlockfile::Error::Lock(pidlockfile::LockError::AlreadyLocked { .. }))
        ));
    }
    Ok(3)
}

#[pidlockfile::single_instance(path = path("lock-error"))]
fn lock_error_result(again: bool) -> Result<u32, pidlockfile::LockError> {
    if again {
        assert!(matches!(
            lock_error_result(false),
            Err(pidlockfile::LockError::AlreadyLocked { .. })
        ));
    }
    Ok(4)
}

#[pidlockfile::single_instance(path = path("boxed"))]
fn boxed_result(again: bool) -> Result<u32, Box<dyn std::error::Error>> {
    if again {
        assert_eq!(boxed_result(false).unwrap_err().to_string(), locked("boxed"));
    }
    Ok(5)
}

#[pidlockfile::single_instance(path = path("anyhow"))]
fn anyhow_result(again: bool) -> anyhow::Result<u32> {
    if again {
        let err = anyhow_result(false).unwrap_err();
        assert!(err.downcast_ref::<pidlockfile::Error>().is_some());
    }
    Ok(6)
}

type Alias<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[pidlockfile::single_instance(path = path("alias"))]
fn alias_result(again: bool) -> Alias<u32> {
    if again {
        assert_eq!(alias_result(false).unwrap_err().to_string(), locked("alias"));
    }
    Ok(7)
}

/// A `Result` under a name that does not say so.
type Outcome = Alias<u32>;

#[pidlockfile::single_instance(path = path("outcome"))]
async fn outcome(again: bool) -> Outcome {
    if again {
        assert_eq!(Box::pin(outcome(false)).await.unwrap_err().to_string(), locked("outcome"));
    }
    Ok(8)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let sum = io_result(true).unwrap()
        + my_result(true).unwrap()
        + pidlock_result(true).unwrap()
        + lock_error_result(true).unwrap()
        + boxed_result(true).unwrap()
        + anyhow_result(true).unwrap()
        + alias_result(true).unwrap()
        + runtime.block_on(outcome(true)).unwrap();
    assert_eq!(sum, 36);
}
