#![deny(warnings)]

// A closure works as the handler too, and may keep state: calls come one at a time.
#[pidlockfile::single_instance(
    path = std::env::temp_dir().join(format!("ui-forward-closure-{}.pid", std::process::id())),
    forward = {
        let mut seen = 0_u32;
        move |message: pidlockfile::SecondInstance| {
            seen += 1;
            println!("{seen}: {:?}", message.args);
        }
    }
)]
fn main() {}
