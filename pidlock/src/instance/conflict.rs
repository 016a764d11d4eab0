//! What a guarded function does when it did not get the lock, decided by its declared return
//! type at the type level, so that a `Result` behind an alias is a `Result`.
//!
//! The generated code calls
//! `Returns::<R>::new().__single_instance_conflict(context, &options, error)`, with `R` the
//! function's declared return type (its `Output` for an `async fn`). Method lookup tries the
//! receiver by value before it borrows it ("autoref specialization"), so:
//!
//! - for `Returns<Result<T, E>>`, [`ResultConflict`] applies (its receiver is `self`), whatever
//!   path or alias names the `Result`: the conflict is returned as `Err(E::from(error))`. An
//!   `E` without `From<pidlockfile::Error>` is a compile error that says what to add
//!   ([`ConflictError`]), rather than a silent fallback to a panic;
//! - for any other `R`, [`OtherConflict`] applies (its receiver is `&self`): `main` exits, any
//!   other function panics, located at the function (`#[track_caller]`).
//!
//! The `context` tells which function it is, and carries the checks that need the return type:
//! a panic out of a function whose ABI cannot unwind ([`UnwindContext`]), and, through
//! `__single_instance_exit_code`, `exit_code` on a `main` that returns a `Result`
//! ([`ResultContext`]). Both are compile errors placed on the user's tokens (the return type,
//! the `exit_code` key), because the generated calls carry their spans.

use core::fmt;
use core::future::IntoFuture;
use core::marker::PhantomData;

use super::Options;
use crate::Error;

/// The declared return type `R` of a guarded function.
pub struct Returns<R>(PhantomData<fn() -> R>);

impl<R> Returns<R> {
    /// The dispatcher for return type `R`.
    #[must_use]
    pub const fn new() -> Self {
        Returns(PhantomData)
    }
}

impl<R> Default for Returns<R> {
    fn default() -> Self {
        Returns::new()
    }
}

impl<R> fmt::Debug for Returns<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Returns")
    }
}

/// `fn main` without `exit_code`: exits with status 1 when it cannot return an error.
#[derive(Debug)]
pub struct Main;

/// `fn main` with `exit_code = N`: exits with status `N`. Refused on a `main` that returns a
/// `Result`, which reports the error itself.
#[derive(Debug)]
pub struct MainExitCode(pub u8);

/// Any other Rust function, by name: panics when it cannot return an error.
#[derive(Debug)]
pub struct Function(pub &'static str);

/// A function with an ABI that cannot unwind (`extern "C"`, ...): a panic would abort the
/// process, so it must return a `Result`.
#[derive(Debug)]
pub struct NoUnwind;

/// Where a conflict may be returned as an `Err`: anywhere but under `exit_code`.
#[diagnostic::on_unimplemented(
    message = "`exit_code` does not apply to a `main` that returns a `Result`",
    label = "remove `exit_code`",
    note = "on a conflict, this `main` returns the error as `Err(From::from(pidlockfile::Error))`, \
            and Rust prints it and exits with status 1; to choose the status, return \
            `std::process::ExitCode` or `()` instead"
)]
pub trait ResultContext {}

impl ResultContext for Main {}
impl ResultContext for Function {}
impl ResultContext for NoUnwind {}

/// Where a function that cannot return an error may exit or panic.
#[diagnostic::on_unimplemented(
    message = "#[single_instance] on a function with a non-Rust ABI must return a `Result`",
    label = "a panic cannot unwind out of this ABI: it would abort the process",
    note = "a conflict in a function that cannot return an error panics; return a `Result` \
            whose error type has `From<pidlockfile::Error>`, or use an ABI that can unwind, such \
            as `extern \"C-unwind\"`"
)]
pub trait UnwindContext {
    /// Exits or panics with the conflict's message.
    #[track_caller]
    fn fail(self, options: &Options, error: Error) -> !;
}

impl UnwindContext for Main {
    fn fail(self, options: &Options, error: Error) -> ! {
        super::exit(options, error, 1)
    }
}

impl UnwindContext for MainExitCode {
    fn fail(self, options: &Options, error: Error) -> ! {
        super::exit(options, error, self.0)
    }
}

impl UnwindContext for Function {
    #[track_caller]
    fn fail(self, options: &Options, error: Error) -> ! {
        super::panic(options, error, self.0)
    }
}

/// An error type that a conflict can be returned as: any type with `From<pidlockfile::Error>`.
#[diagnostic::on_unimplemented(
    message = "#[single_instance] cannot return a lock conflict as `{Self}`",
    label = "the error type of this `Result` has no `From<pidlockfile::Error>`",
    note = "on a conflict, a function returning a `Result` returns `Err(From::from(err))` with \
            `err` a `pidlockfile::Error`, as `?` would; add `impl From<pidlockfile::Error> for {Self}`, \
            or return an error type that has it, such as `pidlockfile::Error`, `std::io::Error`, \
            `Box<dyn std::error::Error>` or `anyhow::Error`"
)]
pub trait ConflictError {
    /// The conflict as this error type.
    fn from_conflict(error: Error) -> Self;
}

#[diagnostic::do_not_recommend]
impl<E: From<Error>> ConflictError for E {
    fn from_conflict(error: Error) -> Self {
        E::from(error)
    }
}

/// A function returning `Result<T, E>`: the conflict is its `Err`.
pub trait ResultConflict<T, E> {
    /// `Err(E::from(error))`.
    fn __single_instance_conflict<C>(
        self,
        context: C,
        options: &Options,
        error: Error,
    ) -> Result<T, E>
    where
        E: ConflictError;

    /// Refuses `exit_code` (`C` is [`MainExitCode`]), which a `Result` makes meaningless.
    fn __single_instance_exit_code<C: ResultContext>(self, context: C);
}

impl<T, E> ResultConflict<T, E> for Returns<Result<T, E>> {
    fn __single_instance_conflict<C>(
        self,
        _context: C,
        _options: &Options,
        error: Error,
    ) -> Result<T, E>
    where
        E: ConflictError,
    {
        Err(E::from_conflict(error))
    }

    fn __single_instance_exit_code<C: ResultContext>(self, _context: C) {}
}

/// A function returning anything else: exit from `main`, panic elsewhere.
pub trait OtherConflict<R> {
    /// Never returns; typed `R` so that it stands where the function's value goes.
    #[track_caller]
    fn __single_instance_conflict<C: UnwindContext>(
        self,
        context: C,
        options: &Options,
        error: Error,
    ) -> R;

    /// `exit_code` applies: nothing to refuse.
    fn __single_instance_exit_code<C>(self, context: C);
}

impl<R> OtherConflict<R> for &Returns<R> {
    #[track_caller]
    fn __single_instance_conflict<C: UnwindContext>(
        self,
        context: C,
        options: &Options,
        error: Error,
    ) -> R {
        context.fail(options, error)
    }

    fn __single_instance_exit_code<C>(self, _context: C) {}
}

/// Refuses, at compile time, a plain `fn` whose declared return type is a future however it is
/// spelled (an alias, `std::future::Ready`): the lock would be released when the function
/// returns, before the future runs. The generated code calls
/// `(&Returns::<R>::new()).__single_instance_not_a_future()`: by value, [`FutureReturned`]
/// applies when `R: IntoFuture`, and its method demands [`NotAFuture`], which nothing
/// implements; for any other `R`, [`PlainReturned`] applies through the extra borrow, and does
/// nothing.
pub trait FutureReturned<R> {
    /// A compile error: `R` is a future.
    fn __single_instance_not_a_future(&self)
    where
        R: NotAFuture;
}

impl<R: IntoFuture> FutureReturned<R> for Returns<R> {
    fn __single_instance_not_a_future(&self)
    where
        R: NotAFuture,
    {
    }
}

/// What a guarded plain `fn` must return: anything but a future.
#[diagnostic::on_unimplemented(
    message = "#[single_instance] cannot guard a function that returns a future: `{Self}` is one",
    label = "the lock would be released when the function returns, before this future runs",
    note = "make it an `async fn`, so that the lock is held while its body runs"
)]
pub trait NotAFuture {}

/// Any return type that is not a future: nothing to refuse.
pub trait PlainReturned {
    /// Does nothing.
    fn __single_instance_not_a_future(&self) {}
}

impl<R> PlainReturned for &Returns<R> {}
