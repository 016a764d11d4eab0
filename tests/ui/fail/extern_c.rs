// A panic cannot unwind out of `extern "C"`: a guarded one must return a `Result`.
#[pidlockfile::single_instance]
extern "C" fn callback() -> u32 {
    1
}

#[pidlockfile::single_instance]
extern "C" fn never() -> ! {
    loop {}
}

fn main() {
    callback();
}
