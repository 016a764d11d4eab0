// A suffix that is no unit is refused, not ignored.
#[pidlock::single_instance(timeout = 5sec)]
fn main() {}

#[pidlock::single_instance(timeout = 2d)]
fn two_days() {}
