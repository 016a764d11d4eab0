#[pidlockfile::single_instance(postgres = "")]
fn main() {}

#[pidlockfile::single_instance(postgres = 5432)]
fn other() {}

#[pidlockfile::single_instance(postgres = "host=db", name = "")]
fn third() {}
