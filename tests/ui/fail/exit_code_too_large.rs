#[pidlockfile::single_instance(exit_code = 99999999999999999999999)]
fn main() {}
