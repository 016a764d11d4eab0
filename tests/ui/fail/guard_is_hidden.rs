#[pidlock::single_instance]
fn main() {
    drop(_pidlock_guard);
}
