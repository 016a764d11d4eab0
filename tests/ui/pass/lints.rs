#![deny(warnings, unused_qualifications, unused_results, missing_docs)]
//! The generated code must be clean under strict lints in the user's crate.

#[pidlockfile::single_instance(path = "/tmp/pidlock-ui-lints.pid")]
fn main() {
    let body_local = 1;
    assert_eq!(body_local, 1);
}
