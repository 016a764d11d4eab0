#![deny(warnings)]

// No arguments: the default path, fail at once, exit code 1.
#[pidlock::single_instance]
fn main() {}
