#![deny(warnings)]
//! The body behaves exactly as without the attribute: the return type's expectation reaches
//! it, sync or async, for coercions, `?`, `!` and closure inference.

use std::error::Error;
use std::fmt;

#[derive(Debug)]
struct MyErr;

impl fmt::Display for MyErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mine")
    }
}

impl Error for MyErr {}

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-body-{name}-{}.pid", std::process::id()))
}

// An early `return` of a `Box<MyErr>` coerces to `Box<dyn Error>`.
#[pidlockfile::single_instance(path = path("coerce-async"))]
async fn coerce_async(fail: bool) -> Result<u32, Box<dyn Error>> {
    if fail {
        return Err(Box::new(MyErr));
    }
    Ok(1)
}

#[pidlockfile::single_instance(path = path("coerce"))]
fn coerce(fail: bool) -> Result<u32, Box<dyn Error>> {
    if fail {
        return Err(Box::new(MyErr));
    }
    Ok(1)
}

// `?` converts into the declared error type.
#[pidlockfile::single_instance(path = path("question-async"))]
async fn question_async(input: &str) -> Result<u32, Box<dyn Error + Send + Sync>> {
    let n: u32 = input.parse()?;
    Ok(n)
}

// `-> !` in an `async fn`.
#[pidlockfile::single_instance(path = path("never-async"))]
async fn never_async() -> ! {
    panic!("never returns")
}

// The closure's parameter type comes from the return type.
#[pidlockfile::single_instance(path = path("closure"))]
fn measure() -> impl Fn(&str) -> usize {
    |s| s.len()
}

#[pidlockfile::single_instance(path = path("closure-async"))]
async fn measure_async() -> impl Fn(&str) -> usize {
    |s| s.len()
}

// An `impl Trait` inside a `Result`.
#[pidlockfile::single_instance(path = path("impl-in-result"))]
fn shown() -> Result<impl fmt::Display, MyBoxed> {
    Ok(5)
}

type MyBoxed = Box<dyn Error>;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(coerce_async(false)).unwrap(), 1);
    assert_eq!(runtime.block_on(coerce_async(true)).unwrap_err().to_string(), "mine");
    assert_eq!(coerce(true).unwrap_err().to_string(), "mine");
    assert!(runtime.block_on(question_async("x")).is_err());
    assert_eq!(runtime.block_on(question_async("7")).unwrap(), 7);
    assert_eq!(measure()("four"), 4);
    assert_eq!(runtime.block_on(measure_async())("three"), 5);
    assert_eq!(shown().unwrap().to_string(), "5");
    let _never = never_async;
}
