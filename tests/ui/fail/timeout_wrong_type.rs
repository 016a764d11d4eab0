#[pidlockfile::single_instance(timeout = "5s")]
fn main() {}
