#[pidlockfile::single_instance(tiemout = 5)]
fn main() {}
