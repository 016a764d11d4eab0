#[pidlock::single_instance(crate = pidlock)]
fn main() {}
