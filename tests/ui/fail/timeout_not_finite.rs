#[pidlockfile::single_instance(timeout = 1e400)]
fn main() {}
