#![deny(unused_must_use)]

fn main() {
    pidlockfile::PidLockFile::lock("/tmp/pidlock-ui-unused.pid", None);
}
