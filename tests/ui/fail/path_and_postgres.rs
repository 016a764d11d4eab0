#[pidlockfile::single_instance(path = "/tmp/app.pid", postgres = "host=db")]
fn main() {}
