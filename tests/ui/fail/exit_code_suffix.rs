// `exit_code = 1h` is not 1.
#[pidlockfile::single_instance(exit_code = 1h)]
fn main() {}
