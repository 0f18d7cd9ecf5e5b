//! What each request gets, as a function of the request and the state it is answered from:
//! methods, paths, the token, and each endpoint's response. Tested without a socket.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::debug;

use super::auth::Access;
use super::server::Body;
use super::streams::{snapshot, stream_events, stream_pictures, Streams};
use super::{CameraView, Cameras, Limits, LiveStatus, Status, StatusPage};
use crate::events::Events;
use crate::metrics;

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
    /// Every camera, in the pipeline's order (not empty): `/cameras/<name>/…` serve each,
    /// the top-level paths the first. A reload adds and removes them.
    pub(super) cameras: Cameras,
    /// `[cameras]`' several: `/status` and `/readyz` speak for them all.
    pub(super) several: bool,
    pub(super) events: Events,
    pub(super) access: Access,
    pub(super) protect_metrics: bool,
    pub(super) limits: Limits,
    /// What `POST /reload` runs, once the daemon has given it: the outcome and its event.
    pub(super) reload: Reload,
}

/// A reload of the config, as the HTTP side asks for it: whether it took, and the event.
pub(super) type Reload = Arc<OnceLock<Box<dyn Fn() -> (bool, String) + Send + Sync>>>;

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
    Reload,
}

impl Endpoint {
    /// The endpoint at `path`, and the camera it is about: the one a `/cameras/<name>/` path
    /// names, else `None` (the first camera, or all of them for `/status` and `/readyz`).
    fn of<'a>(path: &str, cameras: &'a [CameraView]) -> Option<(Self, Option<&'a CameraView>)> {
        if let Some(rest) = path.strip_prefix("/cameras/") {
            let (name, what) = rest.split_once('/')?;
            let camera = cameras.iter().find(|camera| camera.name == name)?;
            let endpoint = match what {
                "status" => Self::Status,
                "snapshot.jpg" => Self::Snapshot,
                "stream.mjpeg" => Self::Stream,
                _ => return None,
            };
            return Some((endpoint, Some(camera)));
        }
        Some((Self::top(path)?, None))
    }

    fn top(path: &str) -> Option<Self> {
        Some(match path {
            "/metrics" => Self::Metrics,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/status" => Self::Status,
            "/" | "/index.html" => Self::Page,
            "/snapshot.jpg" => Self::Snapshot,
            "/stream.mjpeg" => Self::Stream,
            "/events" => Self::Events,
            "/reload" => Self::Reload,
            _ => return None,
        })
    }

    /// The camera's picture and what happens in it: asks for the token when there is one.
    fn is_private(self) -> bool {
        matches!(
            self,
            Self::Page | Self::Snapshot | Self::Stream | Self::Events | Self::Reload
        )
    }
}

/// The response to `request`; a stream's response carries its body's sender's task.
pub(super) async fn route<B>(app: &App, streams: &Streams, request: &Request<B>) -> Response<Body> {
    let method = request.method();
    let path = request.uri().path();
    debug!(%method, path, "telemetry request");
    // A reload changes the daemon: only asked for, never followed as a link or prefetched.
    let reload = path == "/reload";
    let allowed = match reload {
        true => method == Method::POST,
        false => method == Method::GET || method == Method::HEAD,
    };
    if !allowed {
        if reload {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
            let allow = HeaderValue::from_static("POST");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        let allow = HeaderValue::from_static("GET, HEAD");
        response.headers_mut().insert(header::ALLOW, allow);
        return response;
    }
    let cameras = app.cameras.list();
    let Some((endpoint, camera)) = Endpoint::of(path, &cameras) else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try / /metrics /healthz /readyz /status /snapshot.jpg /stream.mjpeg /events \
             /cameras/<name>/status|snapshot.jpg|stream.mjpeg\n",
        );
    };
    let Some(shown) = camera.or(cameras.first()) else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no camera\n");
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
        Endpoint::Metrics => match render_metrics(app).await {
            Some(scrape) => full(StatusCode::OK, PROMETHEUS_TEXT, scrape),
            None => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics\n",
            ),
        },
        Endpoint::Healthz => text(StatusCode::OK, "ok\n"),
        Endpoint::Readyz => match readiness(app, &cameras) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        Endpoint::Status => {
            let now = Instant::now();
            let json = match camera {
                Some(camera) => serde_json::to_string(&camera.status.snapshot(now)),
                None => serde_json::to_string(&status_page(app, &cameras, now)),
            };
            let json = json.expect("a struct of plain fields");
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
        Endpoint::Snapshot => snapshot(&shown.view).await,
        Endpoint::Stream => match streams.pictures.take() {
            Some(seat) => stream_pictures(&shown.view, seat, head),
            None => too_many_viewers(),
        },
        Endpoint::Events => match streams.figures.take() {
            Some(seat) => stream_events(app, streams, seat, head, last_event_id(request)),
            None => too_many_viewers(),
        },
        Endpoint::Reload => {
            let reload = Arc::clone(&app.reload);
            // Loading a model takes a while: off the thread that feeds the viewers.
            let outcome = tokio::task::spawn_blocking(move || reload.get().map(|reload| reload()));
            match outcome.await {
                Ok(Some((true, event))) => full(StatusCode::OK, JSON, event + "\n"),
                Ok(Some((false, event))) => {
                    full(StatusCode::UNPROCESSABLE_ENTITY, JSON, event + "\n")
                }
                Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "not running yet\n"),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the reload panicked\n"),
            }
        }
    }
}

/// `/readyz`: the one camera's readiness; with several, every camera's, the first that is not
/// ready named.
fn readiness(app: &App, cameras: &[CameraView]) -> Result<(), String> {
    let now = Instant::now();
    if !app.several {
        return shown_status(cameras)
            .readiness(now)
            .map_err(|why| why.to_string());
    }
    cameras.iter().try_for_each(|camera| {
        let ready = camera.status.readiness(now);
        ready.map_err(|why| format!("camera {}: {why}", camera.name))
    })
}

/// `/status`: the one camera's status, or with several the daemon's over theirs; and each
/// camera's by name.
fn status_page(app: &App, shown: &[CameraView], now: Instant) -> StatusPage {
    let cameras = shown.iter();
    let cameras = cameras.map(|camera| (camera.name.clone(), camera.status.snapshot(now)));
    let cameras = cameras.collect();
    let status = match app.several {
        true => Status::overall(&cameras),
        false => shown_status(shown).snapshot(now),
    };
    let config = app.cameras.config();
    StatusPage {
        status,
        cameras,
        config,
    }
}

/// The one camera's status: a reload that replaces it leaves one.
fn shown_status(cameras: &[CameraView]) -> Arc<LiveStatus> {
    match cameras.first() {
        Some(camera) => Arc::clone(&camera.status),
        None => Arc::new(LiveStatus::new(Duration::ZERO)),
    }
}

/// The `Last-Event-ID` an `/events` client reconnects with, if it is one of ours (a number).
fn last_event_id<B>(request: &Request<B>) -> Option<u64> {
    let value = request.headers().get("last-event-id")?;
    value.to_str().ok()?.trim().parse().ok()
}

pub(super) fn too_many_viewers() -> Response<Body> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many viewers: telemetry.max_viewers are watching\n",
    );
    let retry = HeaderValue::from_static("5");
    response.headers_mut().insert(header::RETRY_AFTER, retry);
    response
}

pub(super) fn streaming(content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(content_type).expect("a valid header");
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    full(code, TEXT, body)
}

pub(super) fn full(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
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

/// The scrape, made on the runtime's blocking thread: reading `/proc` for the process metrics
/// and rendering every series takes milliseconds, which the thread that feeds the MJPEG and
/// `/events` viewers should not spend. `None` if that thread panicked.
async fn render_metrics(app: &App) -> Option<String> {
    let (process, metrics) = (app.process.clone(), app.metrics.clone());
    let render = move || {
        process.collect();
        cpu_as_counter(metrics.render())
    };
    tokio::task::spawn_blocking(render).await.ok()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;
    use crate::telemetry::view::{Preview, View};
    use crate::telemetry::{LiveStatus, TelemetryConfig};

    const TOKEN: &str = "routes-test-token-0123456789";

    /// The state a request is answered from, as `TelemetryConfig::start` makes it, minus the
    /// socket and the process-wide recorder.
    fn app(token: bool, protect_metrics: bool) -> App {
        let config = TelemetryConfig {
            max_viewers: 1,
            // A variable of this test's own: tests run in processes of their own (nextest).
            token_env: token.then(|| "SCENED_TEST_ROUTES_TOKEN".to_owned()),
            ..TelemetryConfig::default()
        };
        std::env::set_var("SCENED_TEST_ROUTES_TOKEN", TOKEN);
        let limits = config.limits().unwrap();
        let status = Arc::new(LiveStatus::new(limits.stale_after));
        let preview = Arc::<Preview>::default();
        let view = View::new(preview.clone(), status.clone(), limits.preview_period);
        let camera = CameraView {
            name: "porch".into(),
            status,
            preview,
            view: Arc::new(view),
        };
        App {
            metrics: PrometheusBuilder::new().build_recorder().handle(),
            process: metrics_process::Collector::default(),
            cameras: Cameras::new(vec![camera]),
            several: false,
            events: Events::new(),
            access: Access::from_config(&config).unwrap(),
            protect_metrics,
            limits,
            reload: Reload::default(),
        }
    }

    fn request(method: Method, path: &str, authorization: Option<&str>) -> Request<()> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(()).unwrap()
    }

    /// Answers each request in turn on a runtime like the server's; streams' tasks live until
    /// the end of `run`.
    fn answers(app: &App, requests: Vec<Request<()>>) -> Vec<Response<Body>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let streams = Streams::new(app.limits.max_viewers);
        runtime.block_on(async {
            let mut responses = Vec::new();
            for request in &requests {
                responses.push(route(app, &streams, request).await);
            }
            responses
        })
    }

    fn answer(app: &App, request: Request<()>) -> Response<Body> {
        answers(app, vec![request]).pop().unwrap()
    }

    fn body(response: &Response<Body>) -> String {
        match response.body() {
            Body::Full(Some(bytes)) => String::from_utf8(bytes.to_vec()).unwrap(),
            Body::Full(None) => String::new(),
            Body::Stream(_) => panic!("a stream"),
        }
    }

    fn header(response: &Response<Body>, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    #[test]
    fn only_get_and_head_are_served() {
        let app = app(false, false);
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let response = answer(&app, request(method.clone(), "/status", None));
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(header(&response, header::ALLOW), "GET, HEAD");
        }
        let head = answer(&app, request(Method::HEAD, "/healthz", None));
        assert_eq!(head.status(), StatusCode::OK);
    }

    #[test]
    fn unknown_paths_are_404_naming_the_known_ones() {
        let app = app(false, false);
        for path in ["/nope", "/metrics/", "/index.htm", "/events?x=1/"] {
            let response = answer(&app, request(Method::GET, path, None));
            if path.starts_with("/events") {
                // The query is not part of the path.
                assert_eq!(response.status(), StatusCode::OK);
                continue;
            }
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(body(&response).contains("/metrics /healthz /readyz /status"));
        }
    }

    #[test]
    fn health_readiness_and_status_answer_from_the_live_state() {
        let app = app(false, false);
        let healthz = answer(&app, request(Method::GET, "/healthz", None));
        assert_eq!(
            (healthz.status(), body(&healthz).as_str()),
            (StatusCode::OK, "ok\n")
        );
        assert_eq!(header(&healthz, header::CACHE_CONTROL), "no-store");
        assert_eq!(header(&healthz, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let readyz = answer(&app, request(Method::GET, "/readyz", None));
        assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(&readyz), "not ready: the model is not loaded yet\n");
        app.cameras.list()[0].status.stopped();
        let status = answer(&app, request(Method::GET, "/status", None));
        assert_eq!(header(&status, header::CONTENT_TYPE), JSON);
        let json: serde_json::Value = serde_json::from_str(&body(&status)).unwrap();
        assert_eq!(json["ready"], false);
        assert_eq!(json["reason"], "the model is not loaded yet");
        assert_eq!(json["frames"], 0);
    }

    #[test]
    fn the_page_comes_with_its_content_policy() {
        let app = app(false, false);
        for path in ["/", "/index.html"] {
            let page = answer(&app, request(Method::GET, path, None));
            assert_eq!(page.status(), StatusCode::OK);
            assert_eq!(
                header(&page, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(header(&page, header::CONTENT_SECURITY_POLICY), PAGE_POLICY);
            assert!(body(&page).contains("<img id=\"picture\" src=\"stream.mjpeg\""));
        }
    }

    #[test]
    fn with_a_token_the_picture_asks_for_it_and_metrics_only_when_protected() {
        let open = |app: &App, path: &str, authorization: Option<&str>| {
            let response = answer(app, request(Method::HEAD, path, authorization));
            if response.status() == StatusCode::UNAUTHORIZED {
                let challenge = header(&response, header::WWW_AUTHENTICATE);
                assert_eq!(challenge, "Basic realm=\"scened\", charset=\"UTF-8\"");
            }
            response.status() != StatusCode::UNAUTHORIZED
        };
        let bearer = format!("Bearer {TOKEN}");
        let app = app(true, false);
        for path in ["/", "/snapshot.jpg", "/stream.mjpeg", "/events"] {
            assert!(!open(&app, path, None), "{path}");
            assert!(!open(&app, path, Some("Bearer wrong")), "{path}");
            if path != "/snapshot.jpg" {
                assert!(open(&app, path, Some(&bearer)), "{path}");
            }
        }
        for path in ["/metrics", "/healthz", "/readyz", "/status"] {
            assert!(open(&app, path, None), "{path}");
        }
        let protected = self::app(true, true);
        for path in ["/metrics", "/healthz", "/readyz", "/status"] {
            assert!(!open(&protected, path, None), "{path}");
            assert!(open(&protected, path, Some(&bearer)), "{path}");
        }
        // Without a token nothing is asked, even with protect_metrics.
        assert!(open(&self::app(false, true), "/metrics", None));
    }

    #[test]
    fn metrics_render_off_the_serving_thread_in_prometheus_text() {
        let app = app(false, false);
        let response = answer(&app, request(Method::GET, "/metrics", None));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, header::CONTENT_TYPE), PROMETHEUS_TEXT);
        let cpu = metrics::PROCESS_CPU_SECONDS_TOTAL;
        let scrape = format!("# TYPE {cpu} gauge\n{cpu} 1.5\n");
        assert_eq!(
            cpu_as_counter(scrape),
            format!("# TYPE {cpu} counter\n{cpu} 1.5\n")
        );
    }

    #[test]
    fn each_stream_has_its_seats_and_head_takes_none() {
        let app = app(false, false);
        let get = |path| request(Method::GET, path, None);
        let head = |path| request(Method::HEAD, path, None);
        let responses = answers(
            &app,
            vec![
                head("/stream.mjpeg"),
                get("/stream.mjpeg"),
                get("/stream.mjpeg"),
                get("/events"),
                get("/events"),
            ],
        );
        let seen: Vec<_> = responses.iter().map(|r| r.status().as_u16()).collect();
        assert_eq!(seen, [200, 200, 503, 200, 503]);
        assert_eq!(
            header(&responses[0], header::CONTENT_TYPE),
            "multipart/x-mixed-replace; boundary=scened-frame"
        );
        assert!(matches!(responses[1].body(), Body::Stream(_)));
        assert_eq!(
            header(&responses[3], header::CONTENT_TYPE),
            "text/event-stream"
        );
        assert_eq!(header(&responses[2], header::RETRY_AFTER), "5");
        assert!(body(&responses[4]).starts_with("too many viewers"));
    }
}
