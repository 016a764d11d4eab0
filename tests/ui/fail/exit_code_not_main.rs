#[pidlockfile::single_instance(exit_code = 3)]
fn work() {}

fn main() {
    work();
}
