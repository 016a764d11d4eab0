use std::future::Future;
use std::pin::Pin;

#[pidlockfile::single_instance]
fn work() -> Pin<Box<dyn Future<Output = u32> + Send>> {
    Box::pin(async { 42 })
}

fn main() {
    let _ = work();
}
