fn open(_: pidlock::SecondInstance) {}

#[pidlock::single_instance(forward = open)]
fn work() {}

fn main() {
    work();
}
