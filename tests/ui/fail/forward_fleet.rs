fn open(_: pidlock::SecondInstance) {}

#[pidlock::single_instance(postgres = "postgres://db/app", forward = open)]
fn main() {}
