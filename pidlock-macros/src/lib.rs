//! Implementation detail of the `pidlockfile` crate: the `#[single_instance]` attribute.
//!
//! Depend on `pidlockfile` and use `pidlockfile::single_instance`; its documentation lives there.

mod args;
mod expand;
mod function;
mod runtime;

use proc_macro::TokenStream;

/// Runs the function only while this process holds a PID-file lock. See `pidlockfile`'s
/// documentation of `single_instance` for the arguments and the behaviour.
#[proc_macro_attribute]
pub fn single_instance(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::single_instance(args.into(), item.into()).into()
}
