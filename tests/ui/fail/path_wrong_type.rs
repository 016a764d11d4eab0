#[pidlockfile::single_instance(path = 5_u32 + 1)]
fn main() {}
