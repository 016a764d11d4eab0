#[pidlock::single_instance(path = "")]
fn main() {}
