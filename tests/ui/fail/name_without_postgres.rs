#[pidlock::single_instance(path = "/tmp/app.pid", name = "job")]
fn main() {}

#[pidlock::single_instance(on_lost = |_| ())]
fn other() {}
