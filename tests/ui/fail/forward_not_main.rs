fn open(_: pidlockfile::SecondInstance) {}

#[pidlockfile::single_instance(forward = open)]
fn work() {}

fn main() {
    work();
}
