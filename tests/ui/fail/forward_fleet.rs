fn open(_: pidlockfile::SecondInstance) {}

#[pidlockfile::single_instance(postgres = "postgres://db/app", forward = open)]
fn main() {}
