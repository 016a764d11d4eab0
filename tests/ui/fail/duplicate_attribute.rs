#[pidlock::single_instance(path = "/tmp/a.pid")]
#[pidlock::single_instance(path = "/tmp/b.pid")]
fn main() {}
