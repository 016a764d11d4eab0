//! Where the generated code finds the runtime crate: under the name the user's `Cargo.toml`
//! gives it.
//!
//! A user may rename the dependency (`lock = { package = "pidlockfile", ... }`), and then
//! `::pidlockfile` names nothing in their crate. `proc-macro-crate` reads the `Cargo.toml` of the
//! crate being compiled (`CARGO_MANIFEST_DIR`) and says under which name it depends on the
//! runtime. What cannot be read that way (a facade crate that re-exports the attribute, whose
//! users depend on the facade only) keeps `crate = "..."`.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Ident;

/// The runtime crate's package name, as written in a user's `[dependencies]`.
pub(crate) const PACKAGE: &str = "pidlockfile";

/// `::<name>` for the runtime crate as the crate being compiled names it; `::pidlockfile` when that
/// cannot be told (no `Cargo.toml`, or the runtime reached through a facade): then the error
/// the compiler gives on `::pidlockfile` points at the attribute, where `crate = "..."` fixes it.
pub(crate) fn path() -> TokenStream {
    match crate_name(PACKAGE) {
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name, Span::call_site());
            quote!(::#name)
        }
        // The runtime's own tests, doctests and examples: the crate names itself `pidlockfile`
        // (`extern crate self as pidlockfile` in its lib.rs), and its other targets link it so.
        Ok(FoundCrate::Itself) | Err(_) => default_path(),
    }
}

/// The path when nothing else is known.
pub(crate) fn default_path() -> TokenStream {
    let name = Ident::new(PACKAGE, Span::call_site());
    quote!(::#name)
}
