use std::future::Future;

#[pidlock::single_instance]
fn work() -> impl Future<Output = u32> {
    async { 42 }
}

fn main() {
    let _ = work();
}
