//! Parsing and validating the arguments of `#[single_instance(...)]`.
//!
//! Every mistake gets its own message, placed on the user's offending tokens.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, ExprLit, Lit, LitStr};

const EXPECTED: &str = "expected one of `path`, `postgres`, `name`, `on_lost`, `timeout`, \
                        `exit_code`, `quiet`, `forward`, `crate`";

/// Every argument's name, for suggestions.
const KNOWN: [&str; 9] = [
    "path",
    "postgres",
    "name",
    "on_lost",
    "timeout",
    "exit_code",
    "quiet",
    "forward",
    "crate",
];

/// How long to wait for the lock.
pub(crate) enum Timeout {
    /// Not given: fail at once.
    Immediate,
    /// `timeout = 5`, `timeout = 500ms`, `timeout = 0.5`, ...: this long, exactly.
    Duration { secs: u64, nanos: u32, span: Span },
    /// `timeout = "forever"`.
    Forever,
}

/// The validated arguments.
pub(crate) struct Args {
    /// `path = <expr>`; `None` means the per-user, per-program default.
    pub(crate) path: Option<Expr>,
    /// `postgres = <expr>`, and the span of the `postgres` key: a fleet lock.
    pub(crate) postgres: Option<(Expr, Span)>,
    /// `name = <expr>`: the fleet lock's name; `None` means the binary's name.
    pub(crate) name: Option<Expr>,
    /// `on_lost = <expr>`: called instead of exiting when a fleet lock is lost.
    pub(crate) on_lost: Option<Expr>,
    pub(crate) timeout: Timeout,
    /// `exit_code = N`, and the span of the `exit_code` key, where a misplaced one is reported.
    pub(crate) exit_code: Option<(u8, Span)>,
    pub(crate) quiet: bool,
    /// `forward = <expr>`, and the span of the `forward` key: the handler a second instance's
    /// arguments are handed to.
    pub(crate) forward: Option<(Expr, Span)>,
    /// `crate = "..."`; `None` means `::pidlockfile`.
    pub(crate) krate: Option<syn::Path>,
}

impl Args {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut args = Args {
            path: None,
            postgres: None,
            name: None,
            on_lost: None,
            timeout: Timeout::Immediate,
            exit_code: None,
            quiet: false,
            forward: None,
            krate: None,
        };
        let mut seen: Vec<String> = Vec::new();
        // Where `path`, `name` and `on_lost` were given, for the checks across arguments.
        let mut path_key: Option<Span> = None;
        let mut fleet_only: Vec<(String, Span)> = Vec::new();
        // Where `forward` was given: it applies to a lock file only.
        let mut fleet_only_not: Vec<Span> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let Some(ident) = meta.path.get_ident() else {
                return Err(meta.error(format_args!("unknown argument; {EXPECTED}")));
            };
            let name = ident.to_string();
            let name = name.trim_start_matches("r#");
            if seen.iter().any(|s| s == name) {
                return Err(meta.error(format_args!("duplicate argument `{name}`")));
            }
            seen.push(name.to_owned());
            match name {
                "path" => {
                    if args.postgres.is_some() {
                        return Err(meta.error(BOTH_BACKENDS));
                    }
                    path_key = Some(ident.span());
                    args.path = Some(parse_path(&meta)?);
                }
                "postgres" => {
                    if args.path.is_some() {
                        return Err(meta.error(BOTH_BACKENDS));
                    }
                    if !cfg!(feature = "postgres") {
                        return Err(meta.error(
                            "`postgres = ...` needs pidlockfile's `postgres` feature: in Cargo.toml, \
                             add `features = [\"postgres\"]` to the pidlockfile dependency \
                             (`pidlockfile = { version = \"0.1\", features = [\"postgres\"] }`)",
                        ));
                    }
                    args.postgres = Some((parse_postgres(&meta)?, ident.span()));
                }
                "name" => {
                    fleet_only.push((name.to_owned(), ident.span()));
                    args.name = Some(parse_name(&meta)?);
                }
                "on_lost" => {
                    fleet_only.push((name.to_owned(), ident.span()));
                    args.on_lost = Some(meta.value()?.parse()?);
                }
                "timeout" => args.timeout = parse_timeout(&meta)?,
                "exit_code" => {
                    args.exit_code = Some((parse_exit_code(&meta)?, ident.span()));
                }
                "quiet" => args.quiet = parse_flag(&meta)?,
                "forward" => {
                    fleet_only_not.push(ident.span());
                    args.forward = Some((meta.value()?.parse()?, ident.span()));
                }
                "crate" => args.krate = Some(parse_crate(&meta)?),
                other => {
                    let hint = suggestion(other)
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    return Err(meta.error(format_args!(
                        "unknown argument `{other}`{hint} ({EXPECTED})"
                    )));
                }
            }
            Ok(())
        });
        parser.parse2(tokens)?;
        if args.postgres.is_some()
            && let Some(span) = fleet_only_not.first()
        {
            return Err(syn::Error::new(
                *span,
                "`forward` applies only to a lock file: a fleet lock's holder may run on another \
                 host, where a second instance's arguments cannot be handed to it",
            ));
        }
        if args.postgres.is_none()
            && let Some((name, span)) = fleet_only.first()
        {
            return Err(syn::Error::new(
                *span,
                format!(
                    "`{name}` applies only to a fleet lock: add `postgres = \"<connection \
                     string>\"`{}",
                    if path_key.is_some() {
                        " instead of `path`"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(args)
    }
}

/// `path = "<non-empty string>"` or `path = <any expression of a type that is AsRef<Path>>`.
fn parse_path(meta: &ParseNestedMeta) -> syn::Result<Expr> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().is_empty() => Err(syn::Error::new(
            s.span(),
            "`path` must not be empty; give the lock file's path, such as \
             `path = \"/run/user/1000/myapp.pid\"`, or leave `path` out for the default",
        )),
        Expr::Lit(ExprLit { lit, .. }) if !matches!(lit, Lit::Str(_)) => Err(syn::Error::new(
            lit.span(),
            "`path` must be a string literal or an expression whose type implements \
             `AsRef<Path>`, such as `std::env::temp_dir().join(\"myapp.pid\")`",
        )),
        _ => Ok(expr),
    }
}

const BOTH_BACKENDS: &str = "`path` and `postgres` exclude each other: a function takes one \
                             lock, either a lock file (`path`) or a fleet lock on PostgreSQL \
                             (`postgres`)";

/// `postgres = "<connection string>"` or any expression of a type that is `AsRef<str>`.
fn parse_postgres(meta: &ParseNestedMeta) -> syn::Result<Expr> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().trim().is_empty() => Err(syn::Error::new(
            s.span(),
            "`postgres` must not be empty; give a connection string such as \
             `postgres = \"postgres://app@db.internal/app\"`, or an expression such as \
             `postgres = std::env::var(\"DATABASE_URL\").unwrap_or_default()`",
        )),
        Expr::Lit(ExprLit { lit, .. }) if !matches!(lit, Lit::Str(_)) => Err(syn::Error::new(
            lit.span(),
            "`postgres` must be a string literal or an expression whose type implements \
             `AsRef<str>`, such as `std::env::var(\"DATABASE_URL\").unwrap_or_default()`",
        )),
        _ => Ok(expr),
    }
}

/// `name = "<non-empty string>"` or any expression of a type that is `AsRef<str>`.
fn parse_name(meta: &ParseNestedMeta) -> syn::Result<Expr> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().is_empty() => Err(syn::Error::new(
            s.span(),
            "`name` must not be empty; give the fleet lock's name, such as \
             `name = \"nightly-report\"`, or leave it out for the binary's name",
        )),
        Expr::Lit(ExprLit { lit, .. }) if !matches!(lit, Lit::Str(_)) => Err(syn::Error::new(
            lit.span(),
            "`name` must be a string literal or an expression whose type implements `AsRef<str>`",
        )),
        _ => Ok(expr),
    }
}

/// The integer types' suffixes, which mean nothing more than the number here.
const INTEGER_SUFFIXES: [&str; 12] = [
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
];

/// `timeout = 5`, `timeout = 0.5`, `timeout = 500ms` (units `ms`, `s`, `m`, `h`), or
/// `timeout = "forever"`.
fn parse_timeout(meta: &ParseNestedMeta) -> syn::Result<Timeout> {
    const ACCEPTED: &str = "`timeout` takes a number of seconds (an integer or float literal, \
                            such as `timeout = 5` or `timeout = 0.5`), a number with a unit \
                            (`ms`, `s`, `m` or `h`, such as `timeout = 500ms` or \
                            `timeout = 2m`), or `timeout = \"forever\"`";
    const TOO_LONG: &str = "`timeout` is too long: it can be at most 18446744073709551615 \
                            seconds (about 584 billion years); use `timeout = \"forever\"` \
                            to wait without a limit";
    let value = meta.value()?;
    if value.peek(syn::Token![-]) {
        let expr: Expr = value.parse()?;
        return Err(syn::Error::new_spanned(
            expr,
            "`timeout` must not be negative; use `timeout = 0` (the default) to fail at once",
        ));
    }
    let lit: Lit = value
        .parse()
        .map_err(|e| syn::Error::new(e.span(), ACCEPTED))?;
    let (suffix, number) = match &lit {
        Lit::Int(int) => (int.suffix(), Number::Int(int.base10_digits())),
        Lit::Float(float) => (float.suffix(), Number::Float(float.base10_digits())),
        Lit::Str(s) if s.value() == "forever" => return Ok(Timeout::Forever),
        Lit::Str(s) => {
            return Err(syn::Error::new(
                s.span(),
                format!("unknown timeout {:?}; {ACCEPTED}", s.value()),
            ));
        }
        other => return Err(syn::Error::new(other.span(), ACCEPTED)),
    };
    // Nanoseconds per unit.
    let unit: u64 = match suffix {
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" | "s" | "f32" | "f64" => 1_000_000_000,
        _ if INTEGER_SUFFIXES.contains(&suffix) => 1_000_000_000,
        other => {
            let hint = match other {
                "sec" | "secs" | "second" | "seconds" => "; write `s` for seconds",
                "min" | "mins" | "minute" | "minutes" => "; write `m` for minutes",
                "hr" | "hrs" | "hour" | "hours" => "; write `h` for hours",
                "us" | "ns" | "µs" => "; the shortest unit is `ms`",
                "d" | "day" | "days" => "; write hours instead, such as `48h`",
                _ => "",
            };
            return Err(syn::Error::new(
                lit.span(),
                format!("unknown unit `{other}` on `timeout`{hint}; {ACCEPTED}"),
            ));
        }
    };
    let duration = match number {
        Number::Int(digits) => digits
            .parse::<u128>()
            .ok()
            .and_then(|n| n.checked_mul(u128::from(unit)))
            .and_then(|nanos| {
                let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
                let sub = u32::try_from(nanos % 1_000_000_000).ok()?;
                Some(Duration::new(secs, sub))
            }),
        Number::Float(digits) => digits
            .parse::<f64>()
            .ok()
            .map(|n| n * (unit as f64 / 1e9))
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
    };
    let Some(duration) = duration else {
        return Err(syn::Error::new(lit.span(), TOO_LONG));
    };
    if duration.is_zero() {
        return Ok(Timeout::Immediate);
    }
    Ok(Timeout::Duration {
        secs: duration.as_secs(),
        nanos: duration.subsec_nanos(),
        span: lit.span(),
    })
}

/// The digits of a numeric literal, without its suffix and underscores.
enum Number<'a> {
    Int(&'a str),
    Float(&'a str),
}

/// `exit_code = 0..=255`.
fn parse_exit_code(meta: &ParseNestedMeta) -> syn::Result<u8> {
    const ACCEPTED: &str =
        "`exit_code` takes an integer literal from 0 to 255, such as `exit_code = 75`";
    let value = meta.value()?;
    if value.peek(syn::Token![-]) {
        let expr: Expr = value.parse()?;
        return Err(syn::Error::new_spanned(expr, ACCEPTED));
    }
    let lit: Lit = value
        .parse()
        .map_err(|e| syn::Error::new(e.span(), ACCEPTED))?;
    let Lit::Int(int) = &lit else {
        return Err(syn::Error::new(lit.span(), ACCEPTED));
    };
    let suffix = int.suffix();
    if !suffix.is_empty() && !INTEGER_SUFFIXES.contains(&suffix) {
        return Err(syn::Error::new(
            int.span(),
            format!("unknown suffix `{suffix}` on `exit_code`; {ACCEPTED}"),
        ));
    }
    let digits = int.base10_digits();
    digits.parse::<u8>().map_err(|_| {
        syn::Error::new(
            int.span(),
            format!("exit code {digits} is out of range; {ACCEPTED}"),
        )
    })
}

/// `quiet` or `quiet = true` / `quiet = false`.
fn parse_flag(meta: &ParseNestedMeta) -> syn::Result<bool> {
    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
        return Ok(true);
    }
    let lit: Lit = meta.value()?.parse()?;
    match lit {
        Lit::Bool(b) => Ok(b.value),
        other => Err(syn::Error::new(
            other.span(),
            "`quiet` takes `true` or `false`, or stands alone: `quiet`",
        )),
    }
}

/// `crate = "path::to::pidlockfile"`.
fn parse_crate(meta: &ParseNestedMeta) -> syn::Result<syn::Path> {
    const ACCEPTED: &str = "`crate` takes the path to the pidlockfile crate as a string, such as \
                            `crate = \"::my_reexports::pidlockfile\"`";
    let value = meta.value()?;
    let Ok(Lit::Str(s)) = value.parse::<Lit>() else {
        let found: Expr = value
            .parse()
            .map_err(|e| syn::Error::new(e.span(), ACCEPTED))?;
        return Err(syn::Error::new_spanned(found, ACCEPTED));
    };
    parse_crate_path(&s).map_err(|_| {
        syn::Error::new(
            s.span(),
            format!("`{}` is not a path; {ACCEPTED}", s.value()),
        )
    })
}

fn parse_crate_path(s: &LitStr) -> syn::Result<syn::Path> {
    let path = s.parse_with(syn::Path::parse_mod_style)?;
    // Point generated references at the user's string, so a wrong path is reported there.
    Ok(respan_path(path, s.span()))
}

fn respan_path(path: syn::Path, span: Span) -> syn::Path {
    let respanned: TokenStream = quote::quote!(#path)
        .into_iter()
        .map(|mut tt| {
            tt.set_span(span);
            tt
        })
        .collect();
    syn::parse2(respanned).unwrap_or(path)
}

/// The accepted name closest to a misspelled one, if any is close.
fn suggestion(unknown: &str) -> Option<&'static str> {
    KNOWN
        .into_iter()
        .map(|known| (edit_distance(unknown, known), known))
        .filter(|(d, known)| *d <= known.len() / 3 + 1)
        .min()
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
