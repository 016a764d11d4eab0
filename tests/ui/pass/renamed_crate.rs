#![deny(warnings)]

mod facade {
    pub use ::pidlockfile as locking;
}

use pidlockfile::single_instance as only_one;

#[only_one(crate = "crate::facade::locking", path = "/tmp/pidlock-ui-renamed.pid")]
fn main() {}
