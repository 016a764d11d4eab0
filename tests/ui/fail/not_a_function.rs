#[pidlockfile::single_instance]
struct Server;

fn main() {}
