#[pidlockfile::single_instance(path = "")]
fn main() {}
