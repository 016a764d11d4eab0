#![deny(warnings)]

mod facade {
    pub use ::pidlock as locking;
}

use pidlock::single_instance as only_one;

#[only_one(crate = "crate::facade::locking", path = "/tmp/pidlock-ui-renamed.pid")]
fn main() {}
