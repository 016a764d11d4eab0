#[pidlockfile::single_instance(postgres = 5432u16.to_string().len())]
fn main() {}

#[pidlockfile::single_instance(postgres = "host=db", on_lost = |lost: u32| drop(lost))]
fn other() {}
