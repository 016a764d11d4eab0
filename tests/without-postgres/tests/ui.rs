//! `postgres = ...` without pidlockfile's `postgres` feature is a compile error that says to enable
//! it, on the `postgres` argument.

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
