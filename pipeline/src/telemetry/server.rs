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

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Sleep};
use tracing::{debug, warn};

use super::auth::Access;
use super::view::{View, Watching};
use super::{Limits, LiveStatus};
use crate::events::{Events, NoEvent, Subscriber};
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
/// A snapshot waits this long for a frame; then the pipeline is taken to be stopped.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// Events queued for one `/events` viewer; a viewer further behind loses the oldest.
const EVENTS_QUEUE: usize = 64;
/// The separator of `/stream.mjpeg`'s parts.
const BOUNDARY: &str = "scened-frame";
/// What a connection over the limit gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
    Retry-After: 1\r\nContent-Length: 0\r\n\r\n";
/// The live view, HTML, CSS and JavaScript in one file.
const PAGE: &str = include_str!("page.html");
/// The page is all there is: scripts and styles inline, pictures and events from this server.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";

/// What the requests are answered from.
pub(super) struct App {
    pub(super) metrics: PrometheusHandle,
    pub(super) process: metrics_process::Collector,
    pub(super) status: Arc<LiveStatus>,
    pub(super) view: Arc<View>,
    pub(super) events: Events,
    pub(super) access: Access,
    pub(super) protect_metrics: bool,
    pub(super) limits: Limits,
}

/// The paths served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    Healthz,
    Readyz,
    Status,
    Page,
    Snapshot,
    Stream,
    Events,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "/metrics" => Self::Metrics,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/status" => Self::Status,
            "/" | "/index.html" => Self::Page,
            "/snapshot.jpg" => Self::Snapshot,
            "/stream.mjpeg" => Self::Stream,
            "/events" => Self::Events,
            _ => return None,
        })
    }

    /// The camera's picture and what happens in it: asks for the token when there is one.
    fn is_private(self) -> bool {
        matches!(
            self,
            Self::Page | Self::Snapshot | Self::Stream | Self::Events
        )
    }
}

/// Accepts connections until `stop` turns true.
pub(super) async fn serve(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let upkeep = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                app.metrics.run_upkeep();
            }
        })
    };
    let counters = Counters::register();
    let streams = Arc::new(Streams::new(app.limits.max_viewers));
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
    events_dropped: ::metrics::Counter,
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
            events_dropped: ::metrics::counter!(metrics::HTTP_EVENTS_DROPPED_TOTAL),
        };
        // A counter shows in a scrape once it is touched.
        for counter in [
            &counters.refused,
            &counters.accept_errors,
            &counters.header_timeout,
            &counters.too_large,
            &counters.stalled,
            &counters.bad_request,
            &counters.events_dropped,
        ] {
            counter.increment(0);
        }
        counters.open.set(0.0);
        counters
    }
}

/// The open streams of each kind, capped.
struct Streams {
    pictures: Arc<Seats>,
    figures: Arc<Seats>,
}

impl Streams {
    fn new(max: usize) -> Self {
        Self {
            pictures: Arc::new(Seats::new(max, "mjpeg")),
            figures: Arc::new(Seats::new(max, "events")),
        }
    }
}

/// Up to `max` holders at once, counted in a gauge.
struct Seats {
    taken: AtomicUsize,
    max: usize,
    gauge: ::metrics::Gauge,
}

/// One of [`Seats`], given back on drop.
struct Seat(Arc<Seats>);

impl Seats {
    fn new(max: usize, stream: &'static str) -> Self {
        let gauge = ::metrics::gauge!(metrics::HTTP_VIEWERS, metrics::STREAM => stream);
        gauge.set(0.0);
        Self {
            taken: AtomicUsize::new(0),
            max,
            gauge,
        }
    }

    fn take(self: &Arc<Self>) -> Option<Seat> {
        let taken = self
            .taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        self.gauge.set((taken + 1) as f64);
        Some(Seat(self.clone()))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let left = self.0.taken.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.gauge.set(left as f64);
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
        let (app, streams, counters) = (
            self.app.clone(),
            self.streams.clone(),
            self.counters.clone(),
        );
        let service = service_fn(move |request| {
            let (app, streams, counters) = (app.clone(), streams.clone(), counters.clone());
            async move { Ok::<_, Infallible>(answer(&app, &streams, &counters, request).await) }
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

async fn answer(
    app: &App,
    streams: &Streams,
    counters: &Counters,
    request: Request<Incoming>,
) -> Response<Body> {
    let response = route(app, streams, counters, &request).await;
    let code = response.status().as_u16().to_string();
    ::metrics::counter!(metrics::HTTP_REQUESTS_TOTAL, metrics::CODE => code).increment(1);
    response
}

async fn route(
    app: &App,
    streams: &Streams,
    counters: &Counters,
    request: &Request<Incoming>,
) -> Response<Body> {
    let method = request.method();
    let path = request.uri().path();
    debug!(%method, path, "telemetry request");
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        let allow = HeaderValue::from_static("GET, HEAD");
        response.headers_mut().insert(header::ALLOW, allow);
        return response;
    }
    let Some(endpoint) = Endpoint::of(path) else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try / /metrics /healthz /readyz /status /snapshot.jpg /stream.mjpeg /events\n",
        );
    };
    let asks_token = endpoint.is_private() || app.protect_metrics;
    if asks_token
        && !app
            .access
            .admits(request.headers().get(header::AUTHORIZATION))
    {
        let mut response = text(StatusCode::UNAUTHORIZED, "a token is needed\n");
        // A browser asks the person for it; the password is the token.
        let challenge = HeaderValue::from_static("Basic realm=\"scened\", charset=\"UTF-8\"");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        return response;
    }
    let head = method == Method::HEAD;
    match endpoint {
        Endpoint::Metrics => {
            app.process.collect();
            let scrape = cpu_as_counter(app.metrics.render());
            full(StatusCode::OK, PROMETHEUS_TEXT, scrape)
        }
        Endpoint::Healthz => text(StatusCode::OK, "ok\n"),
        Endpoint::Readyz => match app.status.readiness(Instant::now()) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        Endpoint::Status => {
            let status = app.status.snapshot(Instant::now());
            let json = serde_json::to_string(&status).expect("a struct of plain fields");
            full(StatusCode::OK, JSON, json + "\n")
        }
        Endpoint::Page => {
            let mut response = full(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            let policy = HeaderValue::from_static(PAGE_POLICY);
            response
                .headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, policy);
            response
        }
        Endpoint::Snapshot => snapshot(app).await,
        Endpoint::Stream => match streams.pictures.take() {
            Some(seat) => stream_pictures(app, seat, head),
            None => too_many_viewers(),
        },
        Endpoint::Events => match streams.figures.take() {
            Some(seat) => stream_events(app, seat, head, &counters.events_dropped),
            None => too_many_viewers(),
        },
    }
}

/// The next frame as JPEG.
async fn snapshot(app: &App) -> Response<Body> {
    let mut pictures = app.view.pictures();
    let _viewer = app.view.watch(Watching::Pictures);
    let next = tokio::time::timeout(SNAPSHOT_WAIT, pictures.changed()).await;
    let jpeg = match next {
        Ok(Ok(())) => pictures.borrow_and_update().clone(),
        _ => None,
    };
    match jpeg {
        Some(jpeg) => full(StatusCode::OK, "image/jpeg", jpeg),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no frame in {} s: the pipeline is not running\n",
                SNAPSHOT_WAIT.as_secs()
            ),
        ),
    }
}

/// `/stream.mjpeg`: each new JPEG as a part, for as long as the viewer reads.
fn stream_pictures(app: &App, seat: Seat, head: bool) -> Response<Body> {
    let content_type = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    if head {
        return streaming(&content_type, Body::Full(None));
    }
    let mut pictures = app.view.pictures();
    let viewer = app.view.watch(Watching::Pictures);
    let (parts, body) = mpsc::channel(3);
    tokio::spawn(async move {
        let _held = (seat, viewer);
        loop {
            tokio::select! {
                () = parts.closed() => return,
                changed = pictures.changed() => if changed.is_err() { return },
            }
            let Some(jpeg) = pictures.borrow_and_update().clone() else {
                continue;
            };
            let head = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            );
            // A viewer slower than the frames waits here, and then gets the newest one.
            for part in [Bytes::from(head), jpeg, Bytes::from_static(b"\r\n")] {
                if parts.send(part).await.is_err() {
                    return;
                }
            }
        }
    });
    streaming(&content_type, Body::Stream(body))
}

/// `/events`: Server-Sent Events. Each of the run's events goes out as stdout prints it, named
/// by its kind (`event: label`, `data: {"event":"label",…}`); between them, at most
/// `preview_fps` times a second, `event: status` carries the page's figures.
fn stream_events(
    app: &App,
    seat: Seat,
    head: bool,
    dropped: &::metrics::Counter,
) -> Response<Body> {
    let content_type = "text/event-stream";
    if head {
        return streaming(content_type, Body::Full(None));
    }
    // The publisher (a pipeline thread) only queues and wakes: a viewer behind loses the
    // oldest events, counted, and never holds the pipeline back.
    let queued = Arc::new(Notify::new());
    let subscriber = Subscriber::dropping_oldest(EVENTS_QUEUE, dropped.clone()).waking({
        let queued = queued.clone();
        move || queued.notify_one()
    });
    let subscription = app.events.subscribe(subscriber);
    let mut figures = app.view.figures();
    let viewer = app.view.watch(Watching::Figures);
    let (out, body) = mpsc::channel(2);
    tokio::spawn(async move {
        let _held = (seat, viewer);
        // A browser reconnects after a second when the stream breaks.
        let mut next = Some(Bytes::from_static(b"retry: 1000\n\n"));
        // The run's stream closes after `stopped`; the figures go on till the daemon exits.
        let mut open = true;
        loop {
            if let Some(bytes) = next.take() {
                if out.send(bytes).await.is_err() {
                    return;
                }
            }
            match open.then(|| subscription.try_recv()) {
                Some(Ok(event)) => {
                    next = Some(sse(event.kind(), event.to_json().as_bytes()));
                    continue;
                }
                Some(Err(NoEvent::Closed)) => open = false,
                Some(Err(NoEvent::Empty)) | None => {}
            }
            tokio::select! {
                () = out.closed() => return,
                () = queued.notified(), if open => {}
                changed = figures.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    next = figures.borrow_and_update().as_deref().map(|json| sse("status", json));
                }
            }
        }
    });
    streaming(content_type, Body::Stream(body))
}

/// One Server-Sent Event: its name and its data, a line of JSON.
fn sse(name: &str, json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + name.len() + 16);
    event.extend_from_slice(b"event: ");
    event.extend_from_slice(name.as_bytes());
    event.extend_from_slice(b"\ndata: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

fn too_many_viewers() -> Response<Body> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many viewers: telemetry.max_viewers are watching\n",
    );
    let retry = HeaderValue::from_static("5");
    response.headers_mut().insert(header::RETRY_AFTER, retry);
    response
}

fn streaming(content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(content_type).expect("a valid header");
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    full(code, TEXT, body)
}

fn full(code: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(body.into())));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Everything served is live.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Declares the process's CPU seconds a counter, which it is. The facade's counters are whole
/// numbers, so `metrics-process` records fractional seconds as a gauge; typed so, its `_total`
/// name breaks Prometheus's naming rules (`promtool check metrics` fails).
fn cpu_as_counter(text: String) -> String {
    let cpu = metrics::PROCESS_CPU_SECONDS_TOTAL;
    text.replacen(
        &format!("# TYPE {cpu} gauge\n"),
        &format!("# TYPE {cpu} counter\n"),
        1,
    )
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
