// A suffix that is no unit is refused, not ignored.
#[pidlockfile::single_instance(timeout = 5sec)]
fn main() {}

#[pidlockfile::single_instance(timeout = 2d)]
fn two_days() {}
