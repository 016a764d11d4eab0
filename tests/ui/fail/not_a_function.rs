#[pidlock::single_instance]
struct Server;

fn main() {}
