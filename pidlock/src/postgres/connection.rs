//! A session's connection, driven by a task on the process's runtime, and written on directly by
//! a thread that releases the lock.
//!
//! The task drives the connection at all times, so that a session that the server closes is
//! noticed at once (see `session.rs`). A statement given to the client only leaves when the
//! connection is next polled, which is on the runtime's thread: a release that went that way
//! would wait for that thread's wake-up (an `eventfd` write and a wake from `epoll_wait`, about
//! 40 µs on the 2-core VM of issue 15's figures) before its statement is sent, and the next
//! holder waits for that statement. [`Driver::send_here`] polls the connection on the calling
//! thread instead, which writes the statement to the socket at once. The answer still comes
//! through the runtime's thread, after the server has already let the next holder in.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::task::{AbortHandle, JoinHandle};
use tokio_postgres::{AsyncMessage, Connection};

/// A connection, as the task that drives it and a releasing thread share it.
struct Shared<S, T> {
    /// `None` once it has ended or has been cut: dropping it closes the socket.
    connection: Option<Connection<S, T>>,
    /// The driving task's waker, so that a poll from another thread leaves the connection
    /// registered to wake the task, as the task's own poll would have.
    waker: Option<Waker>,
    /// Why the connection ended, seen by a poll from another thread, for the task to act on.
    ended: Option<String>,
}

/// What a session needs of its connection, whatever its stream and TLS types.
trait Drive: Send + Sync {
    fn send_here(&self, send: &mut dyn FnMut());
    fn cut(&self);
}

/// The task that drives a connection, and the connection itself.
#[derive(Clone)]
pub(crate) struct Driver {
    task: AbortHandle,
    connection: Arc<dyn Drive>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Driver {
    /// Spawns the task that drives `connection` until it ends; `ended` is then called with the
    /// reason, on the runtime. The handle is that of the task, to wait for it to be gone.
    pub(crate) fn spawn<S, T>(
        connection: Connection<S, T>,
        ended: impl FnOnce(String) + Send + 'static,
    ) -> (Driver, JoinHandle<()>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Mutex::new(Shared {
            connection: Some(connection),
            waker: None,
            ended: None,
        }));
        let driven = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let reason = std::future::poll_fn(|cx| {
                let mut shared = driven.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(reason) = shared.ended.take() {
                    return Poll::Ready(reason);
                }
                if !shared
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    shared.waker = Some(cx.waker().clone());
                }
                let Some(connection) = shared.connection.as_mut() else {
                    return Poll::Ready("connection closed".to_owned());
                };
                let polled = poll(connection, cx);
                if polled.is_ready() {
                    shared.connection = None;
                }
                polled
            })
            .await;
            ended(reason);
        });
        let driver = Driver {
            task: task.abort_handle(),
            connection: shared,
        };
        (driver, task)
    }

    /// Runs `send`, which gives the client a statement, and writes that statement to the socket
    /// on the calling thread, without waking the runtime's thread. Does only `send` where the
    /// connection has ended (the statement then fails as the client's would).
    pub(crate) fn send_here(&self, send: &mut dyn FnMut()) {
        self.connection.send_here(send);
    }

    /// Ends the task and closes this process's copy of the socket now, without a word to the
    /// server, from any thread.
    pub(crate) fn cut(&self) {
        self.task.abort();
        self.connection.cut();
    }
}

impl<S, T> Drive for Mutex<Shared<S, T>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    fn send_here(&self, send: &mut dyn FnMut()) {
        let mut shared = self.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = &mut *shared;
        let (Some(connection), Some(task)) = (shared.connection.as_mut(), shared.waker.clone())
        else {
            send();
            return;
        };
        // First a poll that leaves the connection registered to wake no one: the statement
        // that `send` queues would otherwise wake the task, and with it the runtime's thread,
        // which has nothing to do for it. Then a poll with the task's waker, which writes the
        // statement and registers the task again for all that the first poll registered (each
        // poll goes through the reads, the writes and the queue alike).
        let mut ended = match poll_unbudgeted(connection, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(reason) => Some(reason),
            Poll::Pending => None,
        };
        send();
        if ended.is_none()
            && let Poll::Ready(reason) =
                poll_unbudgeted(connection, &mut Context::from_waker(&task))
        {
            ended = Some(reason);
        }
        if let Some(reason) = ended {
            shared.connection = None;
            shared.ended = Some(reason);
        }
        // A poll here that ended the connection leaves it to the task to say so.
        if shared.ended.is_some() {
            task.wake();
        }
    }

    fn cut(&self) {
        let connection = self
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connection
            .take();
        drop(connection);
    }
}

/// Polls the connection until it has nothing more to do now (`Pending`) or has ended (why).
/// Notices (the server's warnings) and notifications are of no interest here.
fn poll<S, T>(connection: &mut Connection<S, T>, cx: &mut Context<'_>) -> Poll<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match connection.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notice(_) | AsyncMessage::Notification(_)))) => {}
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(error))) => return Poll::Ready(super::session::describe(&error)),
            Poll::Ready(None) => return Poll::Ready("connection closed".to_owned()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// [`poll`] from a releasing thread, outside tokio's cooperative budget: the budget there is
/// that of the caller's task, if the caller is a task of some runtime, and a task that had used
/// it up would have its I/O put off until it yields, which it does not while it blocks for the
/// answer: the statement would stay unsent.
fn poll_unbudgeted<S, T>(connection: &mut Connection<S, T>, cx: &mut Context<'_>) -> Poll<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let polled = std::future::poll_fn(|cx| poll(connection, cx));
    std::pin::pin!(tokio::task::unconstrained(polled)).poll(cx)
}
