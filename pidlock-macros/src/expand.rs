//! Code generation for `#[single_instance]`, on `proc_macro2` streams so it can be unit tested.
//!
//! The generated body keeps the user's signature, takes the lock, and ends in the user's
//! statements, in the user's braces, as the tail of the function:
//!
//! ```text
//! fn work(..) -> R {                                    // the user's braces
//!     use ::pidlockfile::__private as __pidlock_private;
//!     let options = __pidlock_private::Options { .. };
//!     {                                                 // the macro's braces (edition 2024)
//!         let guard = match __pidlock_private::acquire(&options) {   // or acquire_async().await
//!             Ok(guard) => guard,
//!             Err(error) => return Returns::<R>::new().__single_instance_conflict(context, &options, error),
//!         };
//!         { user statements }                           // the user's braces again
//!     }
//! }
//! ```
//!
//! So the return type's expectation flows into the user's block as without the attribute
//! (coercions, `?`, `!`, closure inference), the guard is dropped after the user's block and
//! all its temporaries, no lint needs switching off, and the user's edition decides the order
//! of the block's tail temporaries against its locals. Every generated name is mixed-site: the
//! body can neither see nor clash with them.

use proc_macro2::{Group, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Lit};

use crate::args::{Args, Timeout};
use crate::function::{Dispatch, Function, MARKER};

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
    let checked = check(&function, args.as_ref().ok());
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

/// Whether the ABI lets a panic unwind out of the function: Rust's, and the `-unwind` ones.
fn unwinds(function: &Function) -> bool {
    match &function.sig.abi {
        None => true,
        Some(abi) => abi.name.as_ref().is_some_and(|name| {
            let name = name.value();
            name == "Rust" || name.ends_with("-unwind")
        }),
    }
}

/// Refuses the function shapes the lock cannot guard. `args` is `None` when they are wrong.
fn check(function: &Function, args: Option<&Args>) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(constness) = &function.sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            "#[single_instance] cannot go on a `const fn`: taking a lock is I/O at run time",
        ));
    }
    if function.sig.asyncness.is_none()
        && function.boxed_async().is_none()
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
    if function.already_guarded() {
        // An outer #[single_instance] under another name (`use pidlockfile::single_instance as
        // only_one;`) has expanded already: this attribute is the second one.
        errors.push(syn::Error::new(
            Span::call_site(),
            "duplicate #[single_instance] (the other one is above, maybe under another name): \
             a function takes one lock",
        ));
    }
    if let Some((_, key)) = args.and_then(|args| args.exit_code)
        && !function.is_main()
    {
        errors.push(syn::Error::new(
            key,
            "`exit_code` applies only to `fn main`: any other function returns a conflict as its \
             `Err`, or panics when it does not return a `Result`",
        ));
    }
    if let Some((_, key)) = args.and_then(|args| args.forward.as_ref())
        && !function.is_main()
    {
        errors.push(syn::Error::new(
            *key,
            "`forward` applies only to `fn main`: a second instance hands over its command-line \
             arguments and exits, which only a program's entry point can do",
        ));
    }
    if !unwinds(function)
        && !function.is_main()
        && matches!(function.dispatch(), Dispatch::Untyped)
        && let Some(abi) = &function.sig.abi
    {
        errors.push(syn::Error::new_spanned(
            abi,
            "#[single_instance] on a function with a non-Rust ABI must return a `Result`: a \
             conflict in a function that cannot return an error panics, and a panic cannot \
             unwind out of this ABI",
        ));
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
        None => crate::runtime::path(),
    };
    // Mixed-site names: the body can neither see nor clash with them. The import is named
    // once, so that a wrong `crate = "..."` is reported once, on the string; its name also
    // marks the body as guarded (see `Function::already_guarded`).
    let private = Ident::new(MARKER, Span::mixed_site());
    let options = Ident::new("__pidlock_options", Span::mixed_site());
    let guard = Ident::new("__pidlock_guard", Span::mixed_site());
    let error = Ident::new("__pidlock_error", Span::mixed_site());
    let forward_ident = Ident::new("__pidlock_forward", Span::mixed_site());
    let pump = Ident::new("__pidlock_pump", Span::mixed_site());
    let import = quote! {
        use #krate::__private as #private;
        use #private::{OtherConflict as _, ResultConflict as _};
    };

    let path = match &args.path {
        Some(expr) => {
            // Borrowed, so that `path = lock` leaves a parameter `lock` to the body.
            let span = Span::call_site().located_at(expr.span());
            let mut borrowed = Group::new(proc_macro2::Delimiter::Parenthesis, quote!(#expr));
            borrowed.set_span(span);
            quote_spanned!(span=> ::core::option::Option::Some(#private::path_from(&#borrowed)))
        }
        None => quote!(::core::option::Option::None),
    };
    let timeout = match &args.timeout {
        Timeout::Immediate => quote!(::core::option::Option::Some(#private::Duration::ZERO)),
        Timeout::Forever => quote!(::core::option::Option::None),
        Timeout::Duration { secs, nanos, span } => {
            let span = Span::call_site().located_at(*span);
            let secs = Lit::Int(syn::LitInt::new(&format!("{secs}u64"), span));
            let nanos = Lit::Int(syn::LitInt::new(&format!("{nanos}u32"), span));
            quote_spanned!(span=> ::core::option::Option::Some(#private::Duration::new(#secs, #nanos)))
        }
    };
    let quiet = args.quiet;
    let exit_code = args.exit_code.map(|(code, _)| code);
    let fleet = match &args.postgres {
        Some((conninfo, _)) => {
            let conninfo_span = Span::call_site().located_at(conninfo.span());
            let mut borrowed = Group::new(proc_macro2::Delimiter::Parenthesis, quote!(#conninfo));
            borrowed.set_span(conninfo_span);
            let name = match &args.name {
                Some(name) => {
                    let span = Span::call_site().located_at(name.span());
                    quote_spanned!(span=> ::core::option::Option::Some(::core::convert::AsRef::<str>::as_ref(&(#name))))
                }
                None => quote!(::core::option::Option::None),
            };
            let on_lost = match &args.on_lost {
                Some(handler) => {
                    let span = Span::call_site().located_at(handler.span());
                    quote_spanned!(span=> ::core::option::Option::Some(#private::on_lost(#handler)))
                }
                None => quote!(::core::option::Option::None),
            };
            let code = exit_code.unwrap_or(1);
            quote!(#private::fleet(&#borrowed, #name, #on_lost, #code))
        }
        None => quote!(::core::option::Option::None),
    };
    // A fleet lock's own entry points: a binary that only locks files never refers to (and so
    // never links) the fleet lock's client.
    let (acquire, acquire_async) = match &args.postgres {
        Some(_) => (
            Ident::new("acquire_fleet", Span::call_site()),
            Ident::new("acquire_fleet_async", Span::call_site()),
        ),
        None => (
            Ident::new("acquire", Span::call_site()),
            Ident::new("acquire_async", Span::call_site()),
        ),
    };
    // `forward = handler`: plain for a plain `fn main`, whose handler runs on the listener
    // thread; for an `async fn main` a pump polls the async handler inside main's own task.
    let is_async = function.sig.asyncness.is_some();
    let (forward_setup, forward_value) = match &args.forward {
        Some((handler, _)) => {
            let span = Span::call_site().located_at(handler.span());
            if is_async {
                (
                    quote_spanned!(span=> let (#forward_ident, #pump) = #private::forward_async(#handler);),
                    quote!(#forward_ident),
                )
            } else {
                (
                    TokenStream::new(),
                    quote_spanned!(span=> #private::forward(#handler)),
                )
            }
        }
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    let options_value = quote! {
        #private::Options {
            path: #path,
            timeout: #timeout,
            quiet: #quiet,
            program: ::core::option_env!("CARGO_BIN_NAME"),
            fleet: #fleet,
            forward: #forward_value,
        }
    };

    // What the conflict arm does, given the type the body returns.
    let on_conflict = |dispatch: Dispatch| -> TokenStream {
        let fn_span = Span::call_site().located_at(function.sig.ident.span());
        let name = function.sig.ident.to_string();
        let name = syn::LitStr::new(name.trim_start_matches("r#"), fn_span);
        match dispatch {
            Dispatch::Untyped if function.is_main() => {
                let code = exit_code.unwrap_or(1);
                quote_spanned!(fn_span=> #private::exit(&#options, #error, #code))
            }
            Dispatch::Untyped => {
                quote_spanned!(fn_span=> #private::panic(&#options, #error, #name))
            }
            Dispatch::Typed(ty) => {
                let returns = quote!(#private::Returns::<#ty>::new());
                let context = match &args.exit_code {
                    Some((code, _)) if function.is_main() => quote!(#private::MainExitCode(#code)),
                    _ if function.is_main() => quote!(#private::Main),
                    _ if unwinds(function) => quote!(#private::Function(#name)),
                    _ => quote!(#private::NoUnwind),
                };
                // `exit_code` on a `main` that returns a `Result` is reported on `exit_code`.
                let check = match &args.exit_code {
                    Some((code, key)) if function.is_main() => {
                        let key = Span::call_site().located_at(*key);
                        let call = quote_spanned!(key=> .__single_instance_exit_code);
                        quote!(#returns #call(#private::MainExitCode(#code));)
                    }
                    _ => TokenStream::new(),
                };
                // An error type without `From<pidlockfile::Error>`, or a type that is no `Result`
                // under an ABI that cannot unwind, is reported on the return type.
                let span = match &function.sig.output {
                    syn::ReturnType::Type(_, ty) => Span::call_site().located_at(ty.span()),
                    syn::ReturnType::Default => fn_span,
                };
                let call = quote_spanned!(span=> .__single_instance_conflict);
                quote_spanned! {fn_span=> {
                    #check
                    return #returns #call(#context, &#options, #error);
                }}
            }
        }
    };

    let Function {
        attrs,
        vis,
        sig,
        brace,
        inner_attrs,
        body,
    } = function;
    // The guard, then the user's block as the tail of a block of our own. Our block has the
    // macro's span, so it is edition 2024 (the macro crate's), whose tail temporaries are
    // dropped before its locals: the user's block, whatever its edition, drops its own
    // temporaries before the guard. The user's block keeps the user's brace span, so that
    // the user's edition orders its tail temporaries against its locals, as without the
    // attribute. A block's tail receives the return type's expectation (a match arm would
    // not, for an `impl Trait`), so closures and coercions see it.
    let listen = if args.forward.is_some() {
        quote!(let #guard = #private::forwarding(#guard, &#options);)
    } else {
        TokenStream::new()
    };
    let guarded = |acquire: TokenStream, conflict: TokenStream, user: Group| {
        let tail = if args.forward.is_some() && is_async {
            quote!(#pump.serve_while(async #user).await)
        } else {
            quote!(#user)
        };
        quote! {{
            let #guard = match #acquire {
                ::core::result::Result::Ok(#guard) => #guard,
                ::core::result::Result::Err(#error) => #conflict,
            };
            #listen
            #tail
        }}
    };
    let mut fn_body = TokenStream::new();
    if let Some(boxed) = function.boxed_async() {
        // `#[async_trait]` expanded first: guard the async block inside `Box::pin(...)`.
        let inner = boxed.block.stream();
        let mut user = Group::new(proc_macro2::Delimiter::Brace, quote!(; #inner));
        user.set_span(boxed.block.span());
        let block = guarded(
            quote!(#private::#acquire_async(&#options).await),
            on_conflict(boxed.dispatch()),
            user,
        );
        let head = &boxed.head;
        let inner_head: TokenStream = boxed
            .paren
            .stream()
            .into_iter()
            .take_while(|tt| !matches!(tt, proc_macro2::TokenTree::Group(_)))
            .collect();
        let mut paren = Group::new(
            proc_macro2::Delimiter::Parenthesis,
            quote!(#inner_head #block),
        );
        paren.set_span(boxed.paren.span());
        brace.surround(&mut fn_body, |tokens| {
            quote! {
                #(#inner_attrs)*
                #import
                let #options = #options_value;
                #head #paren
            }
            .to_tokens(tokens);
        });
    } else {
        // The leading `;` (an empty statement, of the macro's span) keeps `unused_braces`
        // from taking a one-line body in braces inside braces for a mistake of the user's.
        let mut user = Group::new(proc_macro2::Delimiter::Brace, quote!(; #body));
        user.set_span(brace.span.join());
        let acquire = match &sig.asyncness {
            Some(_) => quote!(#private::#acquire_async(&#options).await),
            None => quote!(#private::#acquire(&#options)),
        };
        // A plain `fn` returning a future under any name is refused at the type level too
        // (`check` sees only the spelling), on the return type.
        // (Only where the type can be named in full: with an `impl Trait` inside, `_` would
        // leave nothing to infer it from.)
        let not_a_future = match (&sig.asyncness, function.dispatch(), &sig.output) {
            (None, Dispatch::Typed(ty), syn::ReturnType::Type(_, declared))
                if !mentions_impl(quote!(#declared)) =>
            {
                let span = Span::call_site().located_at(declared.span());
                let call = quote_spanned!(span=> .__single_instance_not_a_future());
                quote! {
                    use #private::{FutureReturned as _, PlainReturned as _};
                    (&#private::Returns::<#ty>::new()) #call;
                }
            }
            _ => TokenStream::new(),
        };
        let block = guarded(acquire, on_conflict(function.dispatch()), user);
        brace.surround(&mut fn_body, |tokens| {
            quote! {
                #(#inner_attrs)*
                #import
                #not_a_future
                #forward_setup
                let #options = #options_value;
                #block
            }
            .to_tokens(tokens);
        });
    }
    quote! {
        #(#attrs)*
        #vis #sig #fn_body
    }
}

/// Whether `tokens` contain the keyword `impl` at any depth.
fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        proc_macro2::TokenTree::Ident(ident) => ident == "impl",
        proc_macro2::TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::single_instance;
    use quote::quote;

    fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        single_instance(args, item).to_string()
    }

    #[test]
    fn main_without_result_decides_its_conflict_by_type() {
        let out = expand(
            quote!(path = "/tmp/x.pid", timeout = 5),
            quote!(
                fn main() {
                    run();
                }
            ),
        );
        assert!(
            out.contains("use :: pidlockfile :: __private as __pidlock_private"),
            "{out}"
        );
        assert!(
            out.contains("__pidlock_private :: Returns :: < () > :: new ()"),
            "{out}"
        );
        assert!(out.contains("__pidlock_private :: Main"), "{out}");
        assert!(out.contains("Duration :: new (5u64 , 0u32)"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn the_body_is_the_tail_and_nothing_is_allowed() {
        let out = expand(
            quote!(),
            quote!(
                fn main() -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains(":: core :: result :: Result :: Ok (__pidlock_guard) => __pidlock_guard"),
            "{out}"
        );
        assert!(out.ends_with("; { ; Ok (()) } } }"), "{out}");
        // No lint is switched off, for the body or for the generated code.
        assert!(!out.contains("allow"), "{out}");
    }

    #[test]
    fn forward_listens_after_the_lock_is_taken() {
        let out = expand(
            quote!(forward = open),
            quote!(
                fn main() {
                    run();
                }
            ),
        );
        assert!(
            out.contains("forward : __pidlock_private :: forward (open)"),
            "{out}"
        );
        assert!(
            out.contains("let __pidlock_guard = __pidlock_private :: forwarding (__pidlock_guard , & __pidlock_options) ;"),
            "{out}"
        );
        assert!(!out.contains("serve_while"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
        // Without `forward`, nothing of it.
        let out = expand(
            quote!(),
            quote!(
                fn main() {
                    run();
                }
            ),
        );
        assert!(
            out.contains("forward : :: core :: option :: Option :: None"),
            "{out}"
        );
        assert!(!out.contains("forwarding"), "{out}");
    }

    #[test]
    fn async_forward_pumps_the_handler_beside_the_body() {
        let out = expand(
            quote!(forward = open),
            quote!(
                async fn main() {
                    run().await;
                }
            ),
        );
        assert!(
            out.contains("let (__pidlock_forward , __pidlock_pump) = __pidlock_private :: forward_async (open) ;"),
            "{out}"
        );
        assert!(
            out.contains("__pidlock_pump . serve_while (async {"),
            "{out}"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn forward_is_refused_off_main_and_on_a_fleet_lock() {
        let out = expand(
            quote!(forward = open),
            quote!(
                fn work() {}
            ),
        );
        assert!(out.contains("`forward` applies only to `fn main`"), "{out}");
        let out = expand(
            quote!(postgres = "postgres://db/app", forward = open),
            quote!(
                fn main() {}
            ),
        );
        assert!(
            out.contains("`forward` applies only to a lock file")
                || out.contains("needs pidlockfile's `postgres` feature"),
            "{out}"
        );
    }

    #[test]
    fn async_functions_await_the_non_blocking_acquire() {
        let out = expand(
            quote!(),
            quote!(
                async fn work() -> u32 {
                    1
                }
            ),
        );
        assert!(
            out.contains("__pidlock_private :: acquire_async (& __pidlock_options) . await"),
            "{out}"
        );
        assert!(!out.contains("async move"), "{out}");
    }

    #[test]
    fn other_functions_use_the_function_context() {
        let out = expand(
            quote!(),
            quote!(
                fn work() -> u32 {
                    1
                }
            ),
        );
        assert!(out.contains("__pidlock_private :: Function"), "{out}");
    }

    #[test]
    fn impl_trait_is_inferred_or_untyped() {
        let out = expand(
            quote!(),
            quote!(
                fn work() -> Result<impl Display, E> {
                    Ok(1)
                }
            ),
        );
        assert!(out.contains("Returns :: < Result < _ , E > >"), "{out}");
        let out = expand(
            quote!(),
            quote!(
                fn work() -> impl Fn(&str) -> usize {
                    |s| s.len()
                }
            ),
        );
        assert!(out.contains("__pidlock_private :: panic"), "{out}");
        let out = expand(
            quote!(),
            quote!(
                fn main() -> ! {
                    loop {}
                }
            ),
        );
        assert!(out.contains("__pidlock_private :: exit"), "{out}");
    }

    #[test]
    fn renamed_crate_paths_are_used() {
        let out = expand(
            quote!(crate = "::facade::pidlockfile"),
            quote!(
                fn main() {}
            ),
        );
        assert!(
            out.contains("use :: facade :: pidlockfile :: __private"),
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
    fn timeouts_forever_fractional_and_with_units() {
        let timeout = |value: proc_macro2::TokenStream| {
            expand(
                quote!(timeout = #value),
                quote!(
                    fn main() {}
                ),
            )
        };
        let out = timeout(quote!("forever"));
        assert!(
            out.contains("timeout : :: core :: option :: Option :: None"),
            "{out}"
        );
        for (value, expected) in [
            (quote!(0.25), "(0u64 , 250000000u32)"),
            (quote!(300ms), "(0u64 , 300000000u32)"),
            (quote!(1h), "(3600u64 , 0u32)"),
            (quote!(2m), "(120u64 , 0u32)"),
            (quote!(1.5m), "(90u64 , 0u32)"),
            (quote!(7s), "(7u64 , 0u32)"),
            (quote!(7u64), "(7u64 , 0u32)"),
            (quote!(0.5f64), "(0u64 , 500000000u32)"),
        ] {
            let out = timeout(value.clone());
            assert!(
                out.contains(&format!("Duration :: new {expected}")),
                "{value}: {out}"
            );
        }
        let out = timeout(quote!(0ms));
        assert!(out.contains("Duration :: ZERO"), "{out}");
    }

    #[test]
    fn suffixes_without_a_meaning_are_refused() {
        for (args, message) in [
            (
                quote!(timeout = 5sec),
                "unknown unit `sec` on `timeout`; write `s`",
            ),
            (quote!(timeout = 5d), "unknown unit `d` on `timeout`"),
            (quote!(exit_code = 1h), "unknown suffix `h` on `exit_code`"),
            (
                quote!(timeout = 18446744073709551616),
                "`timeout` is too long",
            ),
            (
                quote!(timeout = 18446744073709551615h),
                "`timeout` is too long",
            ),
            (quote!(timeout = 1e300), "`timeout` is too long"),
            (
                quote!(exit_code = 99999999999999999999999999999),
                "exit code 99999999999999999999999999999 is out of range",
            ),
        ] {
            let out = expand(
                args.clone(),
                quote!(
                    fn main() {}
                ),
            );
            assert!(out.contains("compile_error"), "{args}: {out}");
            assert!(out.contains(message), "{args}: {out}");
            assert!(!out.contains("too large to fit"), "{args}: {out}");
        }
        let out = expand(
            quote!(exit_code = 3u8),
            quote!(
                fn main() {}
            ),
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn a_body_generated_by_another_single_instance_is_a_duplicate() {
        let once = single_instance(
            quote!(),
            quote!(
                fn main() {}
            ),
        );
        let twice = expand(quote!(), once);
        assert!(twice.contains("duplicate #[single_instance]"), "{twice}");
    }

    #[test]
    fn async_trait_bodies_are_guarded_inside_the_boxed_future() {
        let out = expand(
            quote!(),
            quote!(
                fn run<'life0, 'async_trait>(
                    &'life0 self,
                ) -> ::core::pin::Pin<
                    Box<
                        dyn ::core::future::Future<Output = u32>
                            + ::core::marker::Send
                            + 'async_trait,
                    >,
                > {
                    Box::pin(async move {
                        let __self = self;
                        let __ret: u32 = { 5 };
                        __ret
                    })
                }
            ),
        );
        assert!(!out.contains("compile_error"), "{out}");
        assert!(
            out.contains("Box :: pin (async move { let __pidlock_guard = match __pidlock_private :: acquire_async"),
            "{out}"
        );
        assert!(out.contains("Returns :: < u32 >"), "{out}");
    }

    #[test]
    fn only_a_returned_future_is_refused() {
        for ret in [
            quote!(impl Future<Output = u32>),
            quote!(impl std::future::IntoFuture<Output = u32>),
            quote!(Pin<Box<dyn Future<Output = u32> + Send>>),
            quote!(BoxFuture<'static, u32>),
        ] {
            let out = expand(quote!(), quote!(fn work() -> #ret { todo() }));
            assert!(out.contains("returns a future"), "{ret}: {out}");
        }
        for ret in [
            quote!(Vec<Future>),
            quote!(Option<Future>),
            quote!(Vec<Pin<Box<dyn Future<Output = u32>>>>),
        ] {
            let out = expand(quote!(), quote!(fn work() -> #ret { todo() }));
            assert!(!out.contains("compile_error"), "{ret}: {out}");
        }
    }
}
