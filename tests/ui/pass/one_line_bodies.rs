// One-line bodies, sync and async, get no lint the same code without the attribute would not
// get (the body sits in braces inside the macro's braces: `unused_braces` must not fire), and
// `impl Trait` nested in a trait object's arguments stays a return type the macro can name.
#![deny(warnings, unused_braces, redundant_semicolons)]

use std::fmt::Display;

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-one-line-{name}-{}.pid", std::process::id()))
}

fn compute() -> u32 {
    1
}

#[pidlockfile::single_instance(path = path("sync"))]
fn work() -> u32 { compute() }

#[pidlockfile::single_instance(path = path("async"))]
async fn work_later() -> Result<u32, pidlockfile::Error> { Ok(compute()) }

#[pidlockfile::single_instance(path = path("dyn"))]
fn digits() -> Box<dyn Iterator<Item = impl Display>> { Box::new(vec![1_u32, 2].into_iter()) }

struct Server;

impl Server {
    /// A method called `main` is not the program's entry point: a conflict panics.
    #[pidlockfile::single_instance(path = path("method"))]
    fn main(&self) -> u32 { compute() }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(work(), 1);
    assert_eq!(work_later().await.unwrap(), 1);
    assert_eq!(digits().map(|d| d.to_string()).collect::<String>(), "12");
    assert_eq!(Server.main(), 1);
}
