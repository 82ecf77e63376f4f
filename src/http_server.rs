//! Serving the HTTP application on a listener (plain TCP or TLS) with the limits that keep one
//! client from hurting the others (`[limits]`): a request's headers must arrive within
//! `header_read_timeout`, so a client trickling them (slow-loris) is cut off, and so is a
//! connection that sends nothing at all in that time ([`FirstByteDeadline`]: hyper arms its
//! header timer at the first byte); at most
//! `max_connections` connections are served at once, and one beyond them is answered
//! 503 `M_LIMIT_EXCEEDED` and closed. (Bodies have their own timeout where they are read.)
//!
//! On shutdown, connections finish the requests they are serving and close; those still open
//! [`SHUTDOWN_GRACE`] later (HTTP/2 clients keeping an idle connection) are dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::config::Limits;
use crate::error::Error;

/// How long a shutdown waits for open connections once their requests are done.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a connection beyond the cap is kept to be told so.
const REJECTION_LINGER: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` completes, then closes the connections.
pub async fn serve<L>(mut listener: L, app: Router, limits: &Limits, shutdown: impl Future<Output = ()>)
where
    L: Listener<Addr = SocketAddr>,
{
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let io = TokioIo::new(FirstByteDeadline::new(io, limits.header_read_timeout));
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            let connection = builder.serve_connection(io, hyper::service::service_fn(refuse)).into_owned();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REJECTION_LINGER, connection).await;
            });
            continue;
        };
        let app = app.clone();
        // The handlers read the client's address from the request, as `axum::serve` gives it.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::info!("stopping with connections still open after {SHUTDOWN_GRACE:?}");
        }
    }
}

/// The one answer of a connection beyond `limits.max_connections`.
async fn refuse(_: hyper::Request<Incoming>) -> Result<axum::response::Response, std::convert::Infallible> {
    let mut response = Error::LimitExceeded { retry_after_ms: 1000 }.into_response();
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    Ok(response)
}

/// A connection that fails its reads once `deadline` passes without a first byte from the
/// client, so hyper closes it (hyper's own header timer starts only with the first byte, and the
/// HTTP/1-or-2 detection before it waits without one).
struct FirstByteDeadline<T> {
    io: T,
    /// Dropped at the first byte read.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> FirstByteDeadline<T> {
    fn new(io: T, timeout: Duration) -> Self {
        FirstByteDeadline {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.deadline = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.deadline.as_mut().is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready()) => Poll::Ready(Err(
                io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing within the header read timeout"),
            )),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
