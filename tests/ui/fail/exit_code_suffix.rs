// `exit_code = 1h` is not 1.
#[pidlock::single_instance(exit_code = 1h)]
fn main() {}
