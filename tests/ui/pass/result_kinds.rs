#![deny(warnings)]

use std::fmt;

#[derive(Debug)]
struct MyError(String);

impl From<pidlock::Error> for MyError {
    fn from(e: pidlock::Error) -> Self {
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

#[pidlock::single_instance(path = path("io"))]
fn io_result() -> std::io::Result<u32> {
    Ok(1)
}

#[pidlock::single_instance(path = path("mine"))]
fn my_result() -> Result<u32, MyError> {
    Ok(2)
}

#[pidlock::single_instance(path = path("pidlock"))]
fn pidlock_result() -> Result<u32, pidlock::Error> {
    Ok(3)
}

type Alias<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[pidlock::single_instance(path = path("alias"))]
fn alias_result() -> Alias<u32> {
    Ok(4)
}

fn main() {
    assert_eq!(io_result().unwrap() + my_result().unwrap() + pidlock_result().unwrap() + alias_result().unwrap(), 10);
}
