// A panic cannot unwind out of `extern "C"`: a guarded one must return a `Result`.
#[pidlock::single_instance]
extern "C" fn callback() -> u32 {
    1
}

#[pidlock::single_instance]
extern "C" fn never() -> ! {
    loop {}
}

fn main() {
    callback();
}
