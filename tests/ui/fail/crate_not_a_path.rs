#[pidlockfile::single_instance(crate = "not a path!")]
fn main() {}
