#![deny(warnings)]
//! Only a function that returns a future itself is refused: not one returning a type that
//! merely mentions a user type named `Future`, or that holds futures.

use std::pin::Pin;

#[derive(Debug, PartialEq)]
struct Future(u32);

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-future-names-{name}-{}.pid", std::process::id()))
}

#[pidlockfile::single_instance(path = path("vec"))]
fn futures() -> Vec<Future> {
    vec![Future(1)]
}

type Boxed = Pin<Box<dyn std::future::Future<Output = u32>>>;

#[pidlockfile::single_instance(path = path("held"))]
fn held() -> Vec<Boxed> {
    vec![Box::pin(async { 2 })]
}

fn main() {
    assert_eq!(futures(), [Future(1)]);
    assert_eq!(held().len(), 1);
}
