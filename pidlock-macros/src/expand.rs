//! Code generation for `#[single_instance]`, on `proc_macro2` streams so it can be unit tested.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Lit};

use crate::args::{Args, Timeout};
use crate::function::{Function, Returns};

/// Expands `#[single_instance(args)] item`. On any error the item comes back unchanged next to
/// the `compile_error!`, so that IDEs keep working while the user types.
pub(crate) fn single_instance(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<Function>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let span = item
                .clone()
                .into_iter()
                .next()
                .map_or_else(Span::call_site, |tt| tt.span());
            let error = syn::Error::new(
                span,
                "#[single_instance] goes on a function with a body, such as `fn main() { ... }`",
            );
            return with_error(item, error);
        }
    };
    let args = Args::parse(args);
    let checked = check(&function);
    match (args, checked) {
        (Ok(args), Ok(())) => generate(&args, &function),
        (Err(mut first), Err(second)) => {
            first.combine(second);
            with_error(item, first)
        }
        (Err(error), _) | (_, Err(error)) => with_error(item, error),
    }
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

/// Refuses the function shapes the lock cannot guard.
fn check(function: &Function) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(constness) = &function.sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            "#[single_instance] cannot go on a `const fn`: taking a lock is I/O at run time",
        ));
    }
    if function.sig.asyncness.is_none()
        && let Some(future) = function.returned_future()
    {
        errors.push(syn::Error::new_spanned(
            future,
            "#[single_instance] cannot guard a function that returns a future: the lock would be \
             released when the function returns, before the future runs. Make it an `async fn` \
             instead",
        ));
    }
    for attr in &function.attrs {
        if attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "single_instance")
        {
            errors.push(syn::Error::new_spanned(
                attr,
                "duplicate #[single_instance]: a function takes one lock",
            ));
        }
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            first.extend(errors);
            Err(first)
        }
    }
}

fn generate(args: &Args, function: &Function) -> TokenStream {
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::pidlock),
    };
    // Named once, in a `use`, so that a wrong `crate = "..."` is reported once, on the string.
    let private = Ident::new("__pidlock_private", Span::mixed_site());
    let import = quote!(use #krate::__private as #private;);
    // Mixed-site names: the body can neither see nor clash with them.
    let options = Ident::new("pidlock_options", Span::mixed_site());
    let guard = Ident::new("_pidlock_guard", Span::mixed_site());
    let ret = Ident::new("pidlock_returned", Span::mixed_site());
    let error = Ident::new("pidlock_error", Span::mixed_site());

    let path = match &args.path {
        Some(expr) => {
            let span = Span::call_site().located_at(expr.span());
            quote_spanned!(span=> ::core::option::Option::Some(#private::path_from(#expr)))
        }
        None => quote!(::core::option::Option::None),
    };
    let timeout = match &args.timeout {
        Timeout::Immediate => quote!(::core::option::Option::Some(#private::Duration::ZERO)),
        Timeout::Forever => quote!(::core::option::Option::None),
        Timeout::Seconds(seconds, span) => {
            let span = Span::call_site().located_at(*span);
            if seconds.fract() == 0.0 {
                let whole = Lit::Int(syn::LitInt::new(&format!("{seconds:.0}u64"), span));
                quote_spanned!(span=> ::core::option::Option::Some(#private::Duration::from_secs(#whole)))
            } else {
                let float = Lit::Float(syn::LitFloat::new(&format!("{seconds:?}f64"), span));
                quote_spanned!(span=> ::core::option::Option::Some(#private::Duration::from_secs_f64(#float)))
            }
        }
    };
    let quiet = args.quiet;
    let exit_code = args.exit_code.map_or(1, |(code, _)| code);

    let returns = function.returns();
    let on_conflict = match returns {
        Returns::Result => {
            // An error type without `From<pidlock::Error>` is reported on the return type.
            let span = match &function.sig.output {
                syn::ReturnType::Type(_, ty) => Span::call_site().located_at(ty.span()),
                syn::ReturnType::Default => Span::call_site(),
            };
            let from = quote_spanned!(span=> ::core::convert::From::from);
            quote! {
                return ::core::result::Result::Err(#from(#error));
            }
        }
        _ if function.sig.ident == "main" => quote!(#private::exit(&#options, #error, #exit_code)),
        _ => quote!(#private::panic(&#options, #error)),
    };

    let body = &function.body;
    let annotation = function.nameable_return_type().map(|ty| quote!(: #ty));
    // The return is unreachable when the body always diverges (as `#[tokio::main]`'s body does).
    let finish = quote! {
        #[allow(unreachable_code, clippy::needless_return)]
        {
            return #ret;
        }
    };
    let run = match (returns, &function.sig.asyncness) {
        // Never returns: nothing to bind, and `!` cannot be named in a `let`.
        (Returns::Never, None) => quote!(#body),
        (_, Some(_)) => quote! {
            #[allow(clippy::diverging_sub_expression)]
            let #ret #annotation = async move { #body }.await;
            #finish
        },
        (_, None) => quote! {
            // Bound first, so that the guard is dropped after the value and every temporary
            // of the body, in either edition. A body that always diverges is fine here.
            #[allow(clippy::diverging_sub_expression)]
            let #ret #annotation = { #body };
            #finish
        },
    };

    let Function {
        attrs,
        vis,
        sig,
        inner_attrs,
        ..
    } = function;
    quote! {
        #(#attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #import
            let #options = #private::Options {
                path: #path,
                timeout: #timeout,
                quiet: #quiet,
                program: ::core::option_env!("CARGO_BIN_NAME"),
            };
            let #guard = match #private::acquire(&#options) {
                ::core::result::Result::Ok(guard) => guard,
                ::core::result::Result::Err(#error) => { #on_conflict }
            };
            #run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::single_instance;
    use quote::quote;

    fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        single_instance(args, item).to_string()
    }

    #[test]
    fn main_without_result_exits_on_conflict() {
        let out = expand(
            quote!(path = "/tmp/x.pid", timeout = 5),
            quote!(
                fn main() {
                    run();
                }
            ),
        );
        assert!(
            out.contains("use :: pidlock :: __private as __pidlock_private"),
            "{out}"
        );
        assert!(out.contains("__pidlock_private :: exit"), "{out}");
        assert!(out.contains("from_secs (5u64)"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn result_functions_return_the_error() {
        let out = expand(
            quote!(),
            quote!(
                fn main() -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains("return :: core :: result :: Result :: Err"),
            "{out}"
        );
        assert!(!out.contains("__pidlock_private :: exit"), "{out}");
    }

    #[test]
    fn other_functions_panic() {
        let out = expand(
            quote!(),
            quote!(
                fn work() -> u32 {
                    1
                }
            ),
        );
        assert!(out.contains("__pidlock_private :: panic"), "{out}");
    }

    #[test]
    fn renamed_crate_paths_are_used() {
        let out = expand(
            quote!(crate = "::facade::pidlock"),
            quote!(
                fn main() {}
            ),
        );
        assert!(
            out.contains("use :: facade :: pidlock :: __private"),
            "{out}"
        );
    }

    #[test]
    fn errors_keep_the_function() {
        let out = expand(
            quote!(tiemout = 5),
            quote!(
                fn main() {
                    keep_me();
                }
            ),
        );
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("keep_me"), "{out}");
        assert!(out.contains("did you mean `timeout`"), "{out}");
    }

    #[test]
    fn timeouts_forever_and_fractional() {
        let out = expand(
            quote!(timeout = "forever"),
            quote!(
                fn main() {}
            ),
        );
        assert!(
            out.contains("timeout : :: core :: option :: Option :: None"),
            "{out}"
        );
        let out = expand(
            quote!(timeout = 0.25),
            quote!(
                fn main() {}
            ),
        );
        assert!(out.contains("from_secs_f64 (0.25f64)"), "{out}");
    }
}
