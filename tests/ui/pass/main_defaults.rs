#![deny(warnings)]

// No arguments: the default path, fail at once, exit code 1.
#[pidlockfile::single_instance]
fn main() {}
