#[pidlockfile::single_instance(timeout = -1)]
fn main() {}
