// A future under another name: the lock would be gone before the future runs.
use std::future::Future;
use std::pin::Pin;

type Job = Pin<Box<dyn Future<Output = bool> + Send>>;

#[pidlockfile::single_instance(path = "/tmp/job.pid")]
fn work() -> Job {
    Box::pin(async { true })
}

#[pidlockfile::single_instance(path = "/tmp/ready.pid")]
fn ready() -> std::future::Ready<u32> {
    std::future::ready(1)
}

fn main() {
    drop(work());
    drop(ready());
}
