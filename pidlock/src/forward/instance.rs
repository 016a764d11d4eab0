//! What `#[single_instance(forward = handler)]` needs at run time: the handler as the options
//! carry it, the first try that hands the arguments over on a conflict, and, for an
//! `async fn main`, the pump that runs the async handler on the user's own runtime.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::{Admission, DEFAULT_FORWARD_TIMEOUT, ForwardError, Handler, SecondInstance, send};
use crate::instance::{Guard, Options};
use crate::{Error, LockError, PidLockFile};

/// The handler of `forward = ...`, as [`Options`] carries it.
#[derive(Clone)]
pub struct Forward {
    handler: Handler,
    /// [`first_try`], reached only through a `Forward`, so that a guarded program without
    /// `forward` never links the sender (see [`Handler`]'s `listen`).
    pub(crate) first_try: FirstTry,
}

/// The signature of [`first_try`].
pub(crate) type FirstTry = fn(&Options, &Path, Option<&Waker>) -> Option<Result<Guard, Error>>;

impl Forward {
    fn new(handler: Handler) -> Forward {
        Forward { handler, first_try }
    }
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Forward")
    }
}

/// `forward = handler` on a plain `fn main`: `handler` runs on the listener thread.
pub fn forward<F: FnMut(SecondInstance) + Send + 'static>(handler: F) -> Option<Forward> {
    Some(Forward::new(Handler::new(handler)))
}

/// `forward = handler` on an `async fn main`: the listener thread posts each message to a
/// mailbox, and the returned [`Pump`] awaits `handler(message)` for it on the user's runtime,
/// alongside the body (see [`Pump::serve_while`]), one message at a time. A message is accepted
/// only while the body runs, and every message accepted is handled before `serve_while`
/// returns the body's output.
pub fn forward_async<F, Fut>(handler: F) -> (Option<Forward>, Pump<F, Fut>)
where
    F: FnMut(SecondInstance) -> Fut,
    Fut: Future<Output = ()>,
{
    let mailbox = Arc::new(Mailbox::default());
    let posting = Arc::clone(&mailbox);
    let admission: Arc<dyn Admission> = Arc::clone(&mailbox) as Arc<dyn Admission>;
    let forward = Forward::new(Handler::with_admission(
        move |message| posting.post(message),
        admission,
    ));
    let pump = Pump {
        mailbox,
        handler: Box::new(handler),
        current: None,
    };
    (Some(forward), pump)
}

/// Starts listening on the lock `guard` holds, if that was not tried yet (a lock taken after a
/// wait): a first try that could not listen has said why once, and is not repeated.
pub fn forwarding(mut guard: Guard, options: &Options) -> Guard {
    if let (Guard::File(file), Some(Forward { handler, .. })) = (&mut guard, &options.forward)
        && !file.lock_file().tried_second_instances()
    {
        file.lock_file_mut().serve_second_instances(handler.clone());
    }
    guard
}

/// The first try of a guarded `main` with `forward`: take the lock (listening at once), or
/// hand this process's arguments to the holder and exit 0. `None`: go on as without
/// `forward` (the holder does not listen, did not answer in time, or refused), which prints
/// the conflict, or waits.
fn first_try(options: &Options, path: &Path, task: Option<&Waker>) -> Option<Result<Guard, Error>> {
    let try_lock = || {
        let mut lock = PidLockFile::new(path);
        if let Some(Forward { handler, .. }) = &options.forward {
            lock.forward.set_handler(handler.clone());
        }
        match lock.acquire(Some(Duration::ZERO)) {
            Ok(()) => Some(Ok(Guard::File(crate::PidLockGuard::new(lock)))),
            Err(LockError::AlreadyLocked { .. }) => None,
            Err(e) => Some(Err(e.into())),
        }
    };
    if let Some(done) = try_lock() {
        return Some(done);
    }
    // Our own lock (this thread or task holds it): reported as without `forward`.
    if PidLockFile::held_by_caller(path, task) {
        return None;
    }
    match send(path, &SecondInstance::current(), DEFAULT_FORWARD_TIMEOUT) {
        Ok(taken) => {
            if !options.quiet {
                eprintln!(
                    "handed to the running {} (pid {})",
                    options.program(),
                    taken.pid
                );
            }
            process::exit(0)
        }
        // The holder may have exited while we connected (or is releasing, and did not
        // answer): try the lock once more. Something else at the endpoint (another user's
        // socket): as if nobody listened, the message unsent.
        Err(
            ForwardError::NotListening { .. }
            | ForwardError::HolderGone { .. }
            | ForwardError::Untrusted { .. },
        ) => try_lock(),
        // A listening holder that refused the message, or a message over the limit any
        // holder refuses: the cases worth a word, unless quiet. Everything else (no answer
        // in time, a failure talking to it) leaves exactly the output of a launch without
        // `forward`.
        Err(e @ (ForwardError::Refused { .. } | ForwardError::TooLarge { .. })) => {
            if !options.quiet {
                eprintln!(
                    "note: {} could not hand its arguments to the running instance: {e}",
                    options.program()
                );
            }
            None
        }
        Err(_) => None,
    }
}

/// Where the listener thread leaves a message for the async handler, and waits until it has
/// been handled.
#[derive(Default)]
struct Mailbox {
    state: Mutex<MailState>,
    handled: Condvar,
}

#[derive(Default)]
struct MailState {
    message: Option<SecondInstance>,
    /// A message was posted and its handler has not finished.
    busy: bool,
    /// The pump's task, to wake when a message arrives.
    waker: Option<Waker>,
    /// Messages admitted (about to be answered "accepted") and not yet posted.
    reserved: usize,
    /// The body has returned: no more messages are admitted (those admitted are handled).
    admitting_closed: bool,
    /// The pump is gone: nobody will handle messages any more.
    closed: bool,
}

impl Mailbox {
    fn state(&self) -> MutexGuard<'_, MailState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// On the listener thread: hand over `message` and wait until it has been handled, so
    /// that messages are handled one at a time, and a handler that blocks holds the next
    /// sender back as in the plain form.
    fn post(&self, message: SecondInstance) {
        let mut state = self.state();
        state.reserved = state.reserved.saturating_sub(1);
        if state.closed {
            super::log(format_args!(
                "dropped a second instance's message from process {}: the program is finishing",
                message.pid
            ));
            return;
        }
        state.message = Some(message);
        state.busy = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        while state.busy && !state.closed {
            state = self
                .handled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The body has returned: admit no more messages.
    fn stop_admitting(&self) {
        self.state().admitting_closed = true;
    }

    /// Whether every admitted message has been handled (and none is being).
    fn drained(&self) -> bool {
        let state = self.state();
        state.reserved == 0 && state.message.is_none() && !state.busy
    }

    fn close(&self) {
        let mut state = self.state();
        state.admitting_closed = true;
        state.closed = true;
        state.message = None;
        state.waker = None;
        self.handled.notify_all();
    }
}

impl Admission for Mailbox {
    fn admit(&self) -> bool {
        let mut state = self.state();
        if state.admitting_closed || state.closed {
            return false;
        }
        state.reserved += 1;
        true
    }

    fn withdraw(&self) {
        let mut state = self.state();
        state.reserved = state.reserved.saturating_sub(1);
        // The pump may be waiting for this message before it lets the body's output go.
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// Runs the async `forward` handler inside the guarded `async fn main`'s own task.
pub struct Pump<F, Fut> {
    mailbox: Arc<Mailbox>,
    handler: Box<F>,
    current: Option<Pin<Box<Fut>>>,
}

impl<F, Fut> fmt::Debug for Pump<F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pump")
    }
}

impl<F, Fut> Pump<F, Fut>
where
    F: FnMut(SecondInstance) -> Fut,
    Fut: Future<Output = ()>,
{
    /// Polls `body` and the handler's futures together in one task, until `body` finishes;
    /// then no message is accepted any more (a sender gets no answer, and tries the lock
    /// again), the messages already accepted are handled, and the body's output is returned.
    pub fn serve_while<B: Future>(self, body: B) -> ServeWhile<B, F, Fut> {
        ServeWhile {
            body: Box::pin(body),
            output: None,
            pump: self,
        }
    }

    /// Handles what is in the mailbox until nothing is, or a handler's future is pending.
    fn poll_messages(&mut self, cx: &mut Context<'_>) {
        loop {
            if let Some(current) = &mut self.current {
                if current.as_mut().poll(cx).is_pending() {
                    return;
                }
                self.current = None;
                let mut state = self.mailbox.state();
                state.busy = false;
                self.mailbox.handled.notify_all();
            }
            let message = {
                let mut state = self.mailbox.state();
                match state.message.take() {
                    Some(message) => message,
                    None => {
                        state.waker = Some(cx.waker().clone());
                        return;
                    }
                }
            };
            self.current = Some(Box::pin((self.handler)(message)));
        }
    }
}

/// The future of [`Pump::serve_while`].
pub struct ServeWhile<B: Future, F, Fut> {
    body: Pin<Box<B>>,
    /// The body's output, kept while the messages accepted before it are handled.
    output: Option<Box<B::Output>>,
    pump: Pump<F, Fut>,
}

impl<B: Future, F, Fut> fmt::Debug for ServeWhile<B, F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServeWhile")
    }
}

impl<B, F, Fut> Future for ServeWhile<B, F, Fut>
where
    B: Future,
    F: FnMut(SecondInstance) -> Fut,
    Fut: Future<Output = ()>,
{
    type Output = B::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<B::Output> {
        let this = self.get_mut();
        if this.output.is_none()
            && let Poll::Ready(output) = this.body.as_mut().poll(cx)
        {
            this.pump.mailbox.stop_admitting();
            this.output = Some(Box::new(output));
        }
        this.pump.poll_messages(cx);
        if this.pump.current.is_none()
            && this.pump.mailbox.drained()
            && let Some(output) = this.output.take()
        {
            this.pump.mailbox.close();
            return Poll::Ready(*output);
        }
        Poll::Pending
    }
}

impl<B: Future, F, Fut> Drop for ServeWhile<B, F, Fut> {
    fn drop(&mut self) {
        self.pump.mailbox.close();
    }
}
