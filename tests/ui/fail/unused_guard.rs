#![deny(unused_must_use)]

fn main() {
    pidlock::PidLockFile::lock("/tmp/pidlock-ui-unused.pid", None);
}
