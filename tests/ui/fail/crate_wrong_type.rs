#[pidlockfile::single_instance(crate = pidlockfile)]
fn main() {}
