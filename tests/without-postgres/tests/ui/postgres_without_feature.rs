#[pidlockfile::single_instance(postgres = "postgres://app@db.internal/app", name = "job")]
fn main() {}
