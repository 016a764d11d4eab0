#[pidlockfile::single_instance(quiet = 1)]
fn main() {}
