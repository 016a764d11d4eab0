//! Implementation detail of the `pidlock` crate.
