//! The HTTP server: hyper's HTTP/1 on the telemetry thread's current-thread runtime, bounded so
//! that no client, nor a crowd of them, can take it down.
//!
//! - Connections: at most `max_connections` open; one more is answered 503 and closed at once
//!   (counted), so clients the server will not serve do not sit in the kernel's backlog.
//! - Accept errors (EMFILE when the process is out of files, …) are counted and retried after a
//!   backoff, never fatal: tiny_http, which this replaces, ended its accept loop on the first,
//!   and Prometheus then saw the daemon down for good.
//! - Time: a client has `client_timeout` to send a request's head, from the connection's start
//!   or the end of its last response (hyper's header read timeout, which idle connections hit
//!   too), and as long for each write of a response to go out ([`Stalling`]): a viewer that
//!   stops reading is cut off, not held.
//! - Size: a request head (request line and headers) over [`MAX_HEAD_BYTES`] is answered 431
//!   by hyper and the connection closed; no more of it is read. Request bodies are never read.
//! - Methods and paths: GET and HEAD only (405), the paths in [`Endpoint`] only (404).
//! - Viewers: at most `max_viewers` open streams of each kind (503 beyond); an `/events` viewer
//!   that falls behind loses its oldest events, counted.
//!
//! One OS thread serves every connection: an idle one costs a socket and a few KiB.
//!
//! What each request gets is [`routes`](super::routes)' job, the viewers' streams
//! [`streams`](super::streams)'.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Sleep};
use tracing::{debug, warn};

use super::routes::{route, App};
use super::streams::Streams;
use crate::metrics;

/// Request line and headers together, at most: far more than any browser or scraper sends.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The kernel's send buffer of a connection: a few live-view frames.
const SEND_BUFFER_BYTES: usize = 256 * 1024;
/// How long the HTTP side does the recorder's upkeep (draining histogram samples) apart.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// Waits after a failed accept: doubling from the first to the last, back to the first once
/// one succeeds. Short enough that the server is back within a second of files freeing up.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(640));
/// What a connection over the limit gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
    Retry-After: 1\r\nContent-Length: 0\r\n\r\n";

/// Accepts connections until `stop` turns true.
pub(super) async fn serve(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let upkeep = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                let metrics = app.metrics.clone();
                // Off this thread, which feeds the viewers: see `routes::render_metrics`.
                let _ = tokio::task::spawn_blocking(move || metrics.run_upkeep()).await;
            }
        })
    };
    let counters = Counters::register();
    let streams = Arc::new(Streams::new(app.limits.max_viewers));
    let numbering = streams.feed(&app.events);
    let open = Arc::new(Semaphore::new(app.limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut failing_since = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                if let Some(since) = failing_since.take() {
                    warn!(after = ?Instant::now().duration_since(since), "telemetry: accepting connections again");
                }
                backoff = ACCEPT_BACKOFF.0;
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    counters.refused.increment(1);
                    // Best effort: a client that sent nothing yet reads why it is closed.
                    let _ = stream.try_write(REFUSED);
                    continue;
                };
                let connection = Connection {
                    app: app.clone(),
                    streams: streams.clone(),
                    counters: counters.clone(),
                    _permit: permit,
                };
                tokio::spawn(connection.serve(stream));
            }
            Err(error) => {
                counters.accept_errors.increment(1);
                // Logged when a run of failures starts and when it ends, not per retry.
                if failing_since.is_none() {
                    warn!(%error, "telemetry: cannot accept a connection; retrying with backoff");
                    failing_since = Some(Instant::now());
                }
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => break,
                    () = sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
    upkeep.abort();
    numbering.abort();
}

/// The metrics of the server, registered once at start so every series shows from the first
/// scrape.
#[derive(Clone)]
struct Counters {
    open: ::metrics::Gauge,
    refused: ::metrics::Counter,
    accept_errors: ::metrics::Counter,
    header_timeout: ::metrics::Counter,
    too_large: ::metrics::Counter,
    stalled: ::metrics::Counter,
    bad_request: ::metrics::Counter,
}

impl Counters {
    fn register() -> Self {
        let cut = |reason: &'static str| ::metrics::counter!(metrics::HTTP_CONNECTIONS_CUT_TOTAL, metrics::REASON => reason);
        let counters = Self {
            open: ::metrics::gauge!(metrics::HTTP_CONNECTIONS),
            refused: ::metrics::counter!(metrics::HTTP_CONNECTIONS_REFUSED_TOTAL),
            accept_errors: ::metrics::counter!(metrics::HTTP_ACCEPT_ERRORS_TOTAL),
            header_timeout: cut("header_timeout"),
            too_large: cut("too_large"),
            stalled: cut("stalled"),
            bad_request: cut("bad_request"),
        };
        // A counter shows in a scrape once it is touched.
        for counter in [
            &counters.refused,
            &counters.accept_errors,
            &counters.header_timeout,
            &counters.too_large,
            &counters.stalled,
            &counters.bad_request,
        ] {
            counter.increment(0);
        }
        counters.open.set(0.0);
        counters
    }
}

/// One accepted connection, holding its place under the cap until it closes.
struct Connection {
    app: Arc<App>,
    streams: Arc<Streams>,
    counters: Counters,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        self.counters.open.increment(1.0);
        // Frames and events are small writes that should go out at once.
        let _ = stream.set_nodelay(true);
        // The kernel's buffer for a client that stops reading: a few frames, not the megabytes
        // autotuning grows to, so a stalled viewer is found out (and cut) within seconds.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
        let timeout = self.app.limits.client_timeout;
        let io = TokioIo::new(Stalling::new(stream, timeout));
        let (app, streams) = (self.app.clone(), self.streams.clone());
        let service = service_fn(move |request| {
            let (app, streams) = (app.clone(), streams.clone());
            async move { Ok::<_, Infallible>(answer(&app, &streams, request).await) }
        });
        let served = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(io, service)
            .await;
        if let Err(error) = served {
            self.count_cut(&error);
        }
        self.counters.open.decrement(1.0);
    }

    fn count_cut(&self, error: &hyper::Error) {
        let counters = &self.counters;
        let stalled = std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut);
        let cut = if error.is_timeout() {
            &counters.header_timeout
        } else if error.is_parse_too_large() {
            &counters.too_large
        } else if stalled {
            &counters.stalled
        } else if error.is_parse() {
            &counters.bad_request
        } else {
            // The client went away: its right.
            debug!(%error, "telemetry: connection ended");
            return;
        };
        debug!(%error, "telemetry: cut a client off");
        cut.increment(1);
    }
}

async fn answer(app: &App, streams: &Streams, request: Request<Incoming>) -> Response<Body> {
    let response = route(app, streams, &request).await;
    let code = response.status().as_u16().to_string();
    ::metrics::counter!(metrics::HTTP_REQUESTS_TOTAL, metrics::CODE => code).increment(1);
    response
}

/// A response body: whole, or streamed from a channel for as long as its sender lives.
pub(super) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take()),
            Self::Stream(parts) => parts.poll_recv(cx),
        };
        data.map(|data| data.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

/// A connection whose writes may not wait longer than `limit` for the client to take bytes:
/// a client that stops reading is cut off once the socket's buffers are full, instead of
/// holding its connection, a viewer's seat and the memory of what was queued for it.
struct Stalling {
    stream: TcpStream,
    limit: Duration,
    /// Armed while a write waits.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl Stalling {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            waiting: None,
        }
    }

    /// `poll` (a write) with the stall limit on its waits.
    fn limited<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let polled = poll(Pin::new(&mut self.stream), cx);
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let waiting = self.waiting.get_or_insert_with(|| Box::pin(sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no bytes for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .limited(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .limited(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .limited(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
