#[pidlockfile::single_instance(exit_code = "1")]
fn main() {}
