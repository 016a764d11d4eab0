use std::future::IntoFuture;

#[pidlockfile::single_instance]
fn work() -> impl IntoFuture<Output = u32> {
    async { 42 }
}

fn main() {
    let _ = work();
}
