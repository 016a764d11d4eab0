#[pidlockfile::single_instance(path = 5)]
fn main() {}
