#[pidlock::single_instance(postgres = "")]
fn main() {}

#[pidlock::single_instance(postgres = 5432)]
fn other() {}

#[pidlock::single_instance(postgres = "host=db", name = "")]
fn third() {}
