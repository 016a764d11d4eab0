#[pidlockfile::single_instance]
fn main() {
    drop(__pidlock_guard);
}
