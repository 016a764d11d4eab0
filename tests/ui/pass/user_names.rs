#![deny(warnings)]
#![allow(non_camel_case_types, non_upper_case_globals, dead_code)]
//! Items of the user's named like the generated locals do not break the expansion: every
//! generated name is mixed-site and none can be shadowed by the user's.

struct guard;
struct error;
const options: u8 = 0;
static private: u8 = 0;
fn acquire() {}

mod core {}
mod pidlock_private {}

#[pidlockfile::single_instance(path = std::env::temp_dir().join(format!("ui-user-names-{}.pid", std::process::id())))]
fn main() {
    let guard = guard;
    let _ = (guard, error, options, private, acquire());
}
