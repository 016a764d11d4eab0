//! Compile-time behaviour of `#[single_instance]` (and the runtime crate's `#[must_use]`):
//! `pass/` must compile and run, `fail/` must fail with the `.stderr` shown.
//! After a toolchain change, regenerate the snapshots with `TRYBUILD=overwrite` and review them.
// trybuild runs on the host that builds, never under Wine.
#![cfg(unix)]

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("pass/*.rs");
    cases.compile_fail("fail/*.rs");
}
