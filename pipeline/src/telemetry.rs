//! Telemetry: the Prometheus recorder, and one HTTP thread that serves it with the pipeline's
//! live state and a live view of what the camera sees.
//!
//! | path | answers |
//! |---|---|
//! | `/metrics` | every metric in [`crate::metrics`] and the process's, Prometheus text format |
//! | `/healthz` | 200 while the process serves requests |
//! | `/readyz` | 200 once the model is loaded and while labels keep coming; else 503 and why |
//! | `/status` | JSON: model, current label, its class and score, the top five, fps, latency, drops, the workers |
//! | `/` | the live view: one self-contained page (picture, label, top 5, figures) |
//! | `/snapshot.jpg` | the next captured frame, JPEG |
//! | `/stream.mjpeg` | the frames as `multipart/x-mixed-replace` JPEG parts, at most `preview_fps` |
//! | `/events` | Server-Sent Events: the run's [`Event`](crate::events::Event)s as stdout prints them, and the page's figures (`event: status`: `/status`'s object) |
//!
//! Nothing served changes state: GET and HEAD only, and the address is loopback unless the
//! config says otherwise; off loopback the picture asks for a token ([`auth`]). The server
//! ([`server`]) is hyper on a current-thread tokio runtime owned by the HTTP thread, bounded
//! in connections, time and header size; nothing async reaches the pipeline, which hands the
//! live view frames and scores through slots only while someone watches ([`view`]). The
//! recorder is built here rather than by the exporter's own listener because that one serves
//! `/metrics` alone; the same thread does the recorder's upkeep (draining histogram samples)
//! every second, so memory stays flat when nobody scrapes.

mod auth;
mod routes;
mod server;
pub mod status;
mod streams;
pub mod view;

use std::borrow::Cow;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;
use tokio::sync::watch;

use crate::bus::{Bus, Subscriber};
use crate::contain::{read, write};
use crate::error::Invalid;
use crate::events::Events;
use crate::frame::Labelled;
use crate::metrics;
use auth::Access;
use status::RESULTS_QUEUE;
pub use status::{
    ConfigLoaded, LiveStatus, NotReady, Ranked, RunInfo, Status, StatusPage, WorkerStatus,
};
use view::{Pictures, Preview, View};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9898";
pub const DEFAULT_STALE_AFTER_SECONDS: f64 = 2.0;
/// Far more than Prometheus, a few browsers and probes need, far fewer than the 256 files
/// macOS allows a process by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_CLIENT_TIMEOUT_SECONDS: f64 = 10.0;
pub const DEFAULT_MAX_VIEWERS: usize = 4;
pub const DEFAULT_PREVIEW_FPS: f64 = 10.0;
const MAX_PREVIEW_FPS: f64 = 60.0;

/// Upper bounds of every `_seconds` histogram's buckets: fine around common frame periods
/// (60, 30 and 15 fps), so `histogram_quantile` resolves a deadline, and up to 10 s for stalls.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.0125, 0.015, 0.0167, 0.020, 0.025, 0.030,
    0.0333, 0.040, 0.050, 0.0667, 0.080, 0.100, 0.150, 0.200, 0.300, 0.500, 1.0, 2.5, 5.0, 10.0,
];
/// The span `/status` averages fps and takes the latency median over.
const FPS_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Serve metrics and status over HTTP. Off, no recorder is installed and every metric
    /// handle is a no-op.
    pub enabled: bool,
    /// Address to serve on; port 0 picks a free port (the address is logged).
    pub listen: SocketAddr,
    /// A `camera` label on every series, so one Prometheus tells several daemons' cameras apart.
    pub camera: Option<String>,
    /// `/readyz` fails when no label has come out for this long.
    pub stale_after_seconds: f64,
    /// Open connections at most, 1 to 4096; more are answered 503 and closed at once.
    pub max_connections: usize,
    /// A client taking longer than this to send a request's head (an idle connection too) or
    /// to take the next bytes of a response is cut off.
    pub client_timeout_seconds: f64,
    /// Open `/stream.mjpeg` and `/events` responses at most, of each, 1 to 64.
    pub max_viewers: usize,
    /// Frames per second of `/stream.mjpeg` (and updates of the page's figures) at most.
    pub preview_fps: f64,
    /// The environment variable holding the token the picture endpoints ask for.
    pub token_env: Option<String>,
    /// Serve the picture without a token on an address other than loopback.
    pub expose_unauthenticated: bool,
    /// Ask the token on `/metrics`, `/healthz`, `/readyz` and `/status` too.
    pub protect_metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN.parse().expect("a valid socket address"),
            camera: None,
            stale_after_seconds: DEFAULT_STALE_AFTER_SECONDS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            client_timeout_seconds: DEFAULT_CLIENT_TIMEOUT_SECONDS,
            max_viewers: DEFAULT_MAX_VIEWERS,
            preview_fps: DEFAULT_PREVIEW_FPS,
            token_env: None,
            expose_unauthenticated: false,
            protect_metrics: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("telemetry.listen: cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("telemetry.token_env: the environment variable {var} is not set")]
    TokenUnset { var: String },
    #[error(
        "telemetry.token_env: the token in {var} must be at least {min} characters, got {len}"
    )]
    TokenShort { var: String, min: usize, len: usize },
    #[error("telemetry: a metrics recorder is already installed in this process")]
    RecorderInstalled,
    #[error("telemetry: cannot start the HTTP side: {0}")]
    Start(std::io::Error),
}

/// The checked settings the server runs by.
#[derive(Debug, Clone, Copy)]
struct Limits {
    stale_after: Duration,
    max_connections: usize,
    client_timeout: Duration,
    max_viewers: usize,
    preview_period: Duration,
}

/// The camera name when `camera` is unset and the host has no usable name.
pub const DEFAULT_CAMERA: &str = "default";

/// This machine's name, as the system says it.
pub fn host_name() -> Option<String> {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is what gethostname is given.
    let done = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    let end = name.iter().position(|&b| b == 0)?;
    (done == 0).then(|| String::from_utf8_lossy(&name[..end]).into_owned())
}

/// A host name as a camera name: its first label (`Johns-MacBook.local` → `johns-macbook`),
/// lower case, with what MQTT topic levels and Home Assistant ids do not take replaced by
/// `_`; `default` if nothing is left.
pub fn camera_of_host(host: &str) -> String {
    let first = host.split('.').next().unwrap_or_default();
    let name: String = first
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if name.trim_matches('_').is_empty() {
        DEFAULT_CAMERA.to_owned()
    } else {
        name
    }
}

impl TelemetryConfig {
    /// The camera's name, as events and MQTT topics say it: `camera`, else the host's name
    /// ([`camera_of_host`]), so two machines' daemons do not publish as one camera.
    pub fn camera_name(&self) -> Cow<'_, str> {
        match &self.camera {
            Some(camera) => Cow::Borrowed(camera),
            None => Cow::Owned(camera_of_host(&host_name().unwrap_or_default())),
        }
    }

    /// Checks the settings that can be checked without binding or reading the environment.
    pub fn check(&self) -> Result<(), Invalid> {
        self.limits().map(|_| ())
    }

    fn limits(&self) -> Result<Limits, Invalid> {
        let stale_after =
            Invalid::positive_seconds("telemetry.stale_after_seconds", self.stale_after_seconds)?;
        let client_timeout = Invalid::positive_seconds(
            "telemetry.client_timeout_seconds",
            self.client_timeout_seconds,
        )?;
        let (connections, viewers, fps) =
            (self.max_connections, self.max_viewers, self.preview_fps);
        let key = "telemetry.max_connections";
        Invalid::check(
            (1..=4096).contains(&connections),
            key,
            "1 to 4096",
            connections,
        )?;
        Invalid::check(
            (1..=64).contains(&viewers),
            "telemetry.max_viewers",
            "1 to 64",
            viewers,
        )?;
        // Written so NaN fails too.
        let fps_ok = fps > 0.0 && fps <= MAX_PREVIEW_FPS;
        Invalid::check(
            fps_ok,
            "telemetry.preview_fps",
            "more than 0 and at most 60",
            fps,
        )?;
        let key = "telemetry.preview_fps";
        Invalid::check(
            1.0 / fps <= Invalid::MAX_SECONDS,
            key,
            "a frame every 1e9 s or more often",
            fps,
        )?;
        auth::check_exposure(self)?;
        Ok(Limits {
            stale_after,
            max_connections: connections,
            client_timeout,
            max_viewers: viewers,
            preview_period: Duration::from_secs_f64(1.0 / fps),
        })
    }

    /// Checks the settings, reads the token, binds the address, installs the process-wide
    /// recorder and starts the HTTP thread, whose `/events` carries `events`, and a live view
    /// per camera of `cameras` (names, not empty; `several` for `[cameras]`, whose metrics
    /// each say their camera, rather than the one `[source]`); `None` when telemetry is
    /// disabled. Call before building the pipeline, whose stages register their metrics as
    /// they are built.
    pub fn start(
        &self,
        events: &Events,
        cameras: &[String],
        several: bool,
    ) -> Result<Option<Telemetry>, TelemetryError> {
        if !self.enabled {
            return Ok(None);
        }
        let limits = self.limits()?;
        let access = Access::from_config(self)?;
        // Bound first: a port in use must not leave a recorder behind.
        let bind_error = |e: std::io::Error| TelemetryError::Bind {
            addr: self.listen,
            reason: e.to_string(),
        };
        let listener = TcpListener::bind(self.listen).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        listener
            .set_nonblocking(true)
            .map_err(TelemetryError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            // Scrapes and the recorder's upkeep run there, one at a time, off the thread
            // that feeds the viewers: a flood of scrapes queues rather than spawns threads.
            .max_blocking_threads(1)
            .build()
            .map_err(TelemetryError::Start)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(TelemetryError::Start)?
        };

        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are not empty");
        // With several cameras each series says its own camera instead.
        if let Some(camera) = self.camera.as_ref().filter(|_| !several) {
            builder = builder.add_global_label(metrics::CAMERA, camera);
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderInstalled)?;
        metrics::describe();
        let process = metrics_process::Collector::default();
        process.describe();
        metrics::record_build(env!("CARGO_PKG_VERSION"));

        let views = cameras
            .iter()
            .map(|name| CameraView::new(name, several, &limits))
            .collect();
        let cameras = Cameras::new(views);
        let (stop, stopped) = watch::channel(false);
        let reload = routes::Reload::default();
        let app = routes::App {
            metrics: handle,
            process,
            cameras: cameras.clone(),
            several,
            events: events.clone(),
            access,
            protect_metrics: self.protect_metrics,
            limits,
            reload: reload.clone(),
        };
        let mut telemetry = Telemetry {
            reload,
            cameras,
            several,
            limits,
            local_addr,
            stop,
            threads: Vec::with_capacity(2),
        };
        // On an error, dropping `telemetry` stops what did start.
        for camera in telemetry.cameras.list() {
            telemetry.threads.push(camera.show()?);
        }
        let serve = server::serve(listener, Arc::new(app), stopped);
        let serve = move || runtime.block_on(serve);
        telemetry.threads.push(spawn("scened-telemetry", serve)?);
        Ok(Some(telemetry))
    }
}

/// One camera's side of the HTTP server: what its status and live view are made from.
#[derive(Clone)]
pub(crate) struct CameraView {
    pub(crate) name: String,
    pub(crate) status: Arc<LiveStatus>,
    pub(crate) preview: Arc<Preview>,
    pub(crate) view: Arc<View>,
}

impl CameraView {
    fn new(name: &str, several: bool, limits: &Limits) -> Self {
        let status = Arc::new(LiveStatus::new(limits.stale_after));
        let preview = Arc::new(Preview::default());
        let view = metrics::for_camera(several.then_some(name), || {
            View::new(preview.clone(), status.clone(), limits.preview_period)
        });
        Self {
            name: name.to_owned(),
            status,
            preview,
            view: Arc::new(view),
        }
    }

    /// Starts the thread that makes its live view's pictures.
    fn show(&self) -> Result<JoinHandle<()>, TelemetryError> {
        let view = Arc::clone(&self.view);
        spawn("scened-view", move || view.run())
    }
}

/// The cameras the HTTP side serves, shared with its handlers: a reload adds and removes
/// them, and says when the config was loaded.
#[derive(Clone)]
pub(crate) struct Cameras(Arc<RwLock<(Vec<CameraView>, Option<ConfigLoaded>)>>);

impl Cameras {
    pub(crate) fn new(views: Vec<CameraView>) -> Self {
        Self(Arc::new(RwLock::new((views, None))))
    }

    /// Every camera now, in the pipeline's order.
    pub(crate) fn list(&self) -> Vec<CameraView> {
        read(&self.0).0.clone()
    }

    fn find(&self, name: &str) -> Option<CameraView> {
        self.list().into_iter().find(|camera| camera.name == name)
    }

    pub(crate) fn config(&self) -> Option<ConfigLoaded> {
        read(&self.0).1.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, (Vec<CameraView>, Option<ConfigLoaded>)> {
        write(&self.0)
    }
}

fn spawn(
    name: &str,
    run: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, TelemetryError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map_err(TelemetryError::Start)
}

/// The running HTTP side; dropping it stops its threads. The recorder stays installed, so
/// metrics recorded after the drop are kept but no longer served.
pub struct Telemetry {
    /// What `POST /reload` runs.
    reload: routes::Reload,
    /// Each camera's, in the pipeline's order; the first is what the top-level paths show.
    cameras: Cameras,
    several: bool,
    limits: Limits,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Telemetry {
    /// The address actually bound (the configured one, with port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Camera `camera`'s side, which must be served.
    fn camera(&self, camera: &str) -> CameraView {
        let found = self.cameras.find(camera);
        found.unwrap_or_else(|| panic!("camera {camera} is not served"))
    }

    /// What `/cameras/<name>/status` reports of camera `camera` (with one camera, `/status`).
    pub fn status(&self, camera: &str) -> Arc<LiveStatus> {
        self.camera(camera).status
    }

    /// Camera `camera`'s live view pictures, for a consumer off the HTTP side.
    pub fn pictures(&self, camera: &str) -> Pictures {
        Pictures::new(self.camera(camera).view)
    }

    /// Serves camera `camera` too, from now on (a reload added it).
    pub fn add_camera(&mut self, camera: &str) -> Result<(), TelemetryError> {
        let view = CameraView::new(camera, self.several, &self.limits);
        self.threads.push(view.show()?);
        self.cameras.write().0.push(view);
        Ok(())
    }

    /// Stops serving camera `camera` (a reload removed it).
    pub fn remove_camera(&mut self, camera: &str) {
        let mut cameras = self.cameras.write();
        if let Some(at) = cameras.0.iter().position(|view| view.name == camera) {
            cameras.0.remove(at).view.stop();
        }
    }

    /// Lets `POST /reload` run `reload` (from now on): whether it took, and the event as JSON.
    pub fn on_reload(&self, reload: impl Fn() -> (bool, String) + Send + Sync + 'static) {
        let _ = self.reload.set(Box::new(reload));
    }

    /// Says every camera's frames now run on `model` (a reload swapped it in).
    pub fn model_runs(&self, model: &str, dtype: &str) {
        for camera in self.cameras.list() {
            camera.status.runs(model, dtype);
        }
    }

    /// Says when the config now running was loaded, and how many reloads took or failed.
    pub fn config_loaded(&self, loaded: ConfigLoaded) {
        self.cameras.write().1 = Some(loaded);
    }

    /// The live view's address: the bound one, or this host's name when bound to every
    /// address.
    pub fn live_view_url(&self) -> String {
        let (ip, port) = (self.local_addr.ip(), self.local_addr.port());
        let host = match ip {
            ip if ip.is_unspecified() => host_name().unwrap_or_else(|| "localhost".into()),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{port}/")
    }

    /// Where camera `camera`'s live view takes frames from: a tap to offer them to
    /// ([`crate::pipeline::Pipeline::show_camera_to`]).
    pub fn preview(&self, camera: &str) -> Arc<Preview> {
        self.camera(camera).preview
    }

    /// Follows camera `camera` of a pipeline about to run: its `/status` names `run`'s model
    /// and labels and counts its edges and workers, and a thread follows what it publishes on
    /// `results` until the run closes them.
    pub fn follow(
        &mut self,
        camera: &str,
        run: RunInfo,
        results: &Bus<Labelled>,
    ) -> Result<(), TelemetryError> {
        let RunInfo {
            model,
            dtype,
            names,
            edges,
            workers,
        } = run;
        let CameraView { name, status, .. } = &self.camera(camera);
        status.started(&model, &dtype, Arc::clone(&names));
        status.watch_edges(edges);
        status.workers(workers);
        let dropped = metrics::output_dropped("status");
        let results = results.subscribe(Subscriber::dropping_oldest(RESULTS_QUEUE, dropped));
        let status = status.clone();
        let scope = self.several.then(|| name.clone());
        let thread = spawn("scened-status", move || {
            // The label metric is registered as labels come, on this thread.
            metrics::for_camera(scope.as_deref(), || {
                status::follow(&status, &names, &results);
            });
        })?;
        self.threads.push(thread);
        Ok(())
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Open streams end with the runtime: a viewer is not waited for.
        let _ = self.stop.send(true);
        for camera in self.cameras.list() {
            camera.view.stop();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "{method} {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn every_series_carries_the_configured_camera_label() {
        // nextest runs each test in its own process, so this one may install the global recorder.
        let config = TelemetryConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            camera: Some("porch".into()),
            ..TelemetryConfig::default()
        };
        let telemetry = config
            .start(&Events::new(), &["porch".into()], false)
            .unwrap()
            .expect("enabled");
        ::metrics::counter!(metrics::FRAMES_TOTAL, metrics::STAGE => "infer").increment(3);
        let scrape = request(telemetry.local_addr(), "GET", "/metrics");
        assert!(scrape.starts_with("HTTP/1.0 200"), "{scrape}");
        assert!(
            scrape.contains("scened_frames_total{camera=\"porch\",stage=\"infer\"} 3")
                || scrape.contains("scened_frames_total{stage=\"infer\",camera=\"porch\"} 3"),
            "{scrape}"
        );
        let series: Vec<&str> = scrape
            .lines()
            .filter(|l| l.starts_with("scened_") || l.starts_with("process_"))
            .collect();
        assert!(series.len() > 5, "{scrape}");
        for line in series {
            assert!(line.contains("camera=\"porch\""), "{line}");
        }
        // HEAD answers like GET, without the body.
        let head = request(telemetry.local_addr(), "HEAD", "/healthz");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(!head.contains("ok\n"), "{head}");
        // Not ready before a pipeline reports to it.
        let ready = request(telemetry.local_addr(), "GET", "/readyz");
        assert!(ready.starts_with("HTTP/1.0 503"), "{ready}");
        assert!(
            ready.ends_with("not ready: the model is not loaded yet\n"),
            "{ready}"
        );
        // A second recorder in one process is an error, not a silent no-op.
        let again = TelemetryConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..TelemetryConfig::default()
        };
        assert!(matches!(
            again.start(&Events::new(), &["porch".into()], false),
            Err(TelemetryError::RecorderInstalled)
        ));
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let bad = |change: fn(&mut TelemetryConfig)| {
            let mut config = TelemetryConfig::default();
            change(&mut config);
            config
                .start(&Events::new(), &["porch".into()], false)
                .err()
                .expect("refused")
                .to_string()
        };
        for (change, message) in [
            (
                (|c| c.stale_after_seconds = 0.0) as fn(&mut TelemetryConfig),
                "telemetry.stale_after_seconds must be more than 0, got 0",
            ),
            (
                |c| c.stale_after_seconds = f64::NAN,
                "telemetry.stale_after_seconds must be more than 0, got NaN",
            ),
            (
                |c| c.client_timeout_seconds = -1.0,
                "telemetry.client_timeout_seconds must be more than 0, got -1",
            ),
            (
                |c| c.max_connections = 0,
                "telemetry.max_connections must be 1 to 4096, got 0",
            ),
            (
                |c| c.max_viewers = 65,
                "telemetry.max_viewers must be 1 to 64, got 65",
            ),
            (
                |c| c.preview_fps = 61.0,
                "telemetry.preview_fps must be more than 0 and at most 60, got 61",
            ),
            (
                |c| c.preview_fps = f64::NAN,
                "telemetry.preview_fps must be more than 0 and at most 60, got NaN",
            ),
        ] {
            assert_eq!(bad(change), message);
        }
    }
}
