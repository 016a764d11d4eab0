#[pidlockfile::single_instance(path = "/tmp/a.pid")]
#[pidlockfile::single_instance(path = "/tmp/b.pid")]
fn main() {}
