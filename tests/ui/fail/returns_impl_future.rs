use std::future::Future;

#[pidlockfile::single_instance]
fn work() -> impl Future<Output = u32> {
    async { 42 }
}

fn main() {
    let _ = work();
}
