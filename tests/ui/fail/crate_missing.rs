#[pidlockfile::single_instance(crate = "::no_such_crate")]
fn main() {}
