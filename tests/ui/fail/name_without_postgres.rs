#[pidlockfile::single_instance(path = "/tmp/app.pid", name = "job")]
fn main() {}

#[pidlockfile::single_instance(on_lost = |_| ())]
fn other() {}
