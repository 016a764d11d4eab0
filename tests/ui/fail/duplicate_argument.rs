#[pidlockfile::single_instance(path = "/tmp/a.pid", path = "/tmp/b.pid")]
fn main() {}
