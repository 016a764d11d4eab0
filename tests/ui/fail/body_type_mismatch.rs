#[pidlockfile::single_instance]
fn answer() -> u32 {
    "forty-two"
}

fn main() {
    let _ = answer();
}
