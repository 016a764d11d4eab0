//! The function under the attribute, parsed only as far as the macro needs: attributes,
//! visibility and signature. The body stays as the user's tokens (tokio-macros does the same),
//! so the macro is fast and rust-analyzer sees the user's own code.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, ReturnType, Signature, Type, Visibility, braced};

pub(crate) struct Function {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    /// `#![...]` at the top of the body; they move to the top of the generated body.
    pub(crate) inner_attrs: Vec<Attribute>,
    /// The statements of the body, untouched.
    pub(crate) body: TokenStream,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body = content.parse()?;
        Ok(Function {
            attrs,
            vis,
            sig,
            inner_attrs,
            body,
        })
    }
}

/// What the function returns, as far as a lock conflict is concerned.
pub(crate) enum Returns {
    /// `Result<_, _>` under any path (`io::Result<T>`, `anyhow::Result<T>`): a conflict is
    /// returned as an `Err`, as `?` would.
    Result,
    /// `!`: the body never returns.
    Never,
    /// Anything else.
    Other,
}

impl Function {
    pub(crate) fn returns(&self) -> Returns {
        match &self.sig.output {
            ReturnType::Type(_, ty) => match &**ty {
                Type::Never(_) => Returns::Never,
                Type::Path(path)
                    if path.qself.is_none()
                        && path
                            .path
                            .segments
                            .last()
                            .is_some_and(|s| s.ident == "Result") =>
                {
                    Returns::Result
                }
                _ => Returns::Other,
            },
            ReturnType::Default => Returns::Other,
        }
    }

    /// The return type, if the body's value can be bound with it as a type annotation: not
    /// where it contains `impl Trait`, which a `let` cannot name.
    pub(crate) fn nameable_return_type(&self) -> Option<TokenStream> {
        match &self.sig.output {
            ReturnType::Default => Some(quote::quote!(())),
            ReturnType::Type(_, ty) if !mentions(&quote::quote!(#ty), &["impl"]) => {
                Some(quote::quote!(#ty))
            }
            ReturnType::Type(..) => None,
        }
    }

    /// The return type, if it is a future that the caller would run after this function has
    /// returned (and so after the lock has been released).
    pub(crate) fn returned_future(&self) -> Option<&Type> {
        match &self.sig.output {
            ReturnType::Type(_, ty)
                if mentions(
                    &quote::quote!(#ty),
                    &["Future", "BoxFuture", "LocalBoxFuture"],
                ) =>
            {
                Some(ty)
            }
            _ => None,
        }
    }
}

/// Whether any of `words` appears as an identifier anywhere in `tokens`.
fn mentions(tokens: &TokenStream, words: &[&str]) -> bool {
    tokens.clone().into_iter().any(|tt| match tt {
        proc_macro2::TokenTree::Ident(ident) => words.iter().any(|w| ident == w),
        proc_macro2::TokenTree::Group(group) => mentions(&group.stream(), words),
        _ => false,
    })
}
