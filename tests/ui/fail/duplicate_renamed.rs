use pidlockfile::single_instance as only_one;

#[pidlockfile::single_instance(path = "/tmp/a.pid")]
#[only_one(path = "/tmp/b.pid")]
fn main() {}
