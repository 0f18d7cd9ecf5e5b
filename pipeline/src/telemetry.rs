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
mod server;
pub mod view;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Invalid;
use crate::events::Events;
use crate::labels::Names;
use crate::metrics;
use crate::queue::EdgeWatch;
use crate::runner::StageWatch;
use crate::smooth::Smoothed;
use crate::stats;
use auth::Access;
use view::{Preview, View};

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

/// The camera name when `camera` is unset.
pub const DEFAULT_CAMERA: &str = "default";

impl TelemetryConfig {
    /// The camera's name, as events and MQTT topics say it.
    pub fn camera_name(&self) -> &str {
        self.camera.as_deref().unwrap_or(DEFAULT_CAMERA)
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
    /// recorder and starts the HTTP thread, whose `/events` carries `events`; `None` when
    /// telemetry is disabled. Call before building the pipeline, whose stages register their
    /// metrics as they are built.
    pub fn start(&self, events: &Events) -> Result<Option<Telemetry>, TelemetryError> {
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
            .build()
            .map_err(TelemetryError::Start)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(TelemetryError::Start)?
        };

        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are not empty");
        if let Some(camera) = &self.camera {
            builder = builder.add_global_label(metrics::CAMERA, camera);
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderInstalled)?;
        metrics::describe();
        let process = metrics_process::Collector::default();
        process.describe();
        metrics::record_build(env!("CARGO_PKG_VERSION"));

        let status = Arc::new(LiveStatus::new(limits.stale_after));
        let preview = Arc::new(Preview::default());
        let view = Arc::new(View::new(
            preview.clone(),
            status.clone(),
            limits.preview_period,
        ));
        let (stop, stopped) = watch::channel(false);
        let app = server::App {
            metrics: handle,
            process,
            status: status.clone(),
            view: view.clone(),
            events: events.clone(),
            access,
            protect_metrics: self.protect_metrics,
            limits,
        };
        let mut telemetry = Telemetry {
            status,
            preview,
            local_addr,
            stop,
            view: view.clone(),
            threads: Vec::with_capacity(2),
        };
        // On an error, dropping `telemetry` stops what did start.
        telemetry
            .threads
            .push(spawn("scened-view", move || view.run())?);
        let serve = server::serve(listener, Arc::new(app), stopped);
        let serve = move || runtime.block_on(serve);
        telemetry.threads.push(spawn("scened-telemetry", serve)?);
        Ok(Some(telemetry))
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
    status: Arc<LiveStatus>,
    preview: Arc<Preview>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    view: Arc<View>,
    threads: Vec<JoinHandle<()>>,
}

impl Telemetry {
    /// The address actually bound (the configured one, with port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What `/readyz` and `/status` report; give it to [`crate::pipeline::Pipeline::report_to`].
    pub fn status(&self) -> Arc<LiveStatus> {
        self.status.clone()
    }

    /// Where the live view takes frames and scores from; give it to
    /// [`crate::pipeline::Pipeline::show_to`].
    pub fn preview(&self) -> Arc<Preview> {
        self.preview.clone()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Open streams end with the runtime: a viewer is not waited for.
        let _ = self.stop.send(true);
        self.view.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The pipeline's state as `/readyz` and `/status` see it, updated by the pipeline per label.
#[derive(Debug)]
pub struct LiveStatus {
    stale_after: Duration,
    inner: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    model: Option<(String, String)>,
    /// What the indices of a [`Smoothed`] name; given with the model.
    names: Option<Arc<Names>>,
    stopped: bool,
    last: Option<Last>,
    labelled: u64,
    first_at: Option<Instant>,
    /// When each label of the last [`FPS_WINDOW`] came out, and its latency.
    recent: VecDeque<(Instant, Duration)>,
    /// The pipeline's edges, whose drops `/status` adds up.
    edges: Vec<EdgeWatch>,
    /// The inference workers, while they run.
    workers: Vec<StageWatch>,
}

#[derive(Debug)]
struct Last {
    smoothed: Smoothed,
    latency: Duration,
    at: Instant,
}

/// Why `/readyz` fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotReady {
    #[error("the model is not loaded yet")]
    Loading,
    #[error("the pipeline has stopped")]
    Stopped,
    #[error("no frame labelled yet")]
    NoLabel,
    #[error(
        "no frame labelled for {:.1} s (limit {:.1} s)",
        since.as_secs_f64(),
        stale_after.as_secs_f64()
    )]
    Stale {
        since: Duration,
        stale_after: Duration,
    },
}

/// `/status`'s JSON body.
#[derive(Debug, PartialEq, Serialize)]
pub struct Status {
    pub ready: bool,
    /// Why not ready, when not.
    pub reason: Option<String>,
    pub model: Option<String>,
    pub dtype: Option<String>,
    /// The label: a group with `[labels] groups`, else a model class; `unknown` below
    /// `labels.min_score`.
    pub label: Option<String>,
    /// The model class behind the label: with groups, its member that scored highest in the
    /// last frame.
    pub class: Option<String>,
    /// The smoother's score for the label.
    pub score: Option<f32>,
    /// The last frame's best scores among the labels (groups, or classes), best first.
    pub top: Vec<Ranked>,
    /// Labels per second over the last two seconds.
    pub fps: f64,
    /// Frames labelled since the start.
    pub frames: u64,
    /// Capture to label, of the last frame.
    pub last_latency_ms: Option<f64>,
    /// Capture to label, the median over the last two seconds.
    pub latency_p50_ms: Option<f64>,
    /// Frames dropped on the pipeline's queues since the start, for any reason.
    pub dropped: u64,
    /// Since the last label came out.
    pub last_label_age_ms: Option<f64>,
    /// The inference workers, in worker order.
    pub workers: Vec<WorkerStatus>,
}

/// One inference worker in `/status`.
#[derive(Debug, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub worker: usize,
    /// Frames it has run the model on.
    pub frames: u64,
    /// Frames it failed on.
    pub errors: u64,
    /// How long it has been on its current frame; `None` while it waits for one.
    pub busy_ms: Option<f64>,
}

/// One of `/status`'s `top`.
#[derive(Debug, PartialEq, Serialize)]
pub struct Ranked {
    pub label: String,
    pub score: f32,
}

impl LiveStatus {
    pub fn new(stale_after: Duration) -> Self {
        Self {
            stale_after,
            inner: Mutex::default(),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // Every update leaves the state whole, so a panic elsewhere does not spoil it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The model is loaded and frames are about to flow; `names` names its labels.
    pub fn started(&self, model: &str, dtype: &str, names: Arc<Names>) {
        let mut live = self.live();
        live.model = Some((model.to_owned(), dtype.to_owned()));
        live.names = Some(names);
        live.stopped = false;
    }

    /// The pipeline's queues, whose drops `/status` reports.
    pub fn watch_edges(&self, edges: Vec<EdgeWatch>) {
        self.live().edges = edges;
    }

    /// The pipeline has stopped; no more labels will come.
    pub fn stopped(&self) {
        self.live().stopped = true;
    }

    /// The inference workers are running: `/status` shows their counts live.
    pub fn workers(&self, workers: Vec<StageWatch>) {
        self.live().workers = workers;
    }

    /// A frame's smoothed label came out at `at`, `latency` after its capture. Kept as
    /// indices: names are looked up when `/status` is asked, not per frame.
    pub fn labelled(&self, smoothed: &Smoothed, latency: Duration, at: Instant) {
        let mut live = self.live();
        live.labelled += 1;
        live.first_at.get_or_insert(at);
        live.recent.push_back((at, latency));
        while live
            .recent
            .front()
            .is_some_and(|&(t, _)| at.saturating_duration_since(t) > FPS_WINDOW)
        {
            live.recent.pop_front();
        }
        live.last = Some(Last {
            smoothed: *smoothed,
            latency,
            at,
        });
    }

    /// `Ok` when the model is loaded and the last label is recent; else why not.
    pub fn readiness(&self, now: Instant) -> Result<(), NotReady> {
        Self::readiness_of(&self.live(), self.stale_after, now)
    }

    fn readiness_of(live: &Live, stale_after: Duration, now: Instant) -> Result<(), NotReady> {
        if live.model.is_none() {
            return Err(NotReady::Loading);
        }
        if live.stopped {
            return Err(NotReady::Stopped);
        }
        let Some(last) = &live.last else {
            return Err(NotReady::NoLabel);
        };
        let since = now.saturating_duration_since(last.at);
        if since > stale_after {
            return Err(NotReady::Stale { since, stale_after });
        }
        Ok(())
    }

    pub fn snapshot(&self, now: Instant) -> Status {
        let live = self.live();
        let ready = Self::readiness_of(&live, self.stale_after, now);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut in_window: Vec<f64> = live
            .recent
            .iter()
            .filter(|&&(t, _)| now.saturating_duration_since(t) <= FPS_WINDOW)
            .map(|&(_, latency)| ms(latency))
            .collect();
        in_window.sort_by(f64::total_cmp);
        // Early in a run the window is not full yet: divide by the time there has been.
        let span = live
            .first_at
            .map_or(FPS_WINDOW, |first| now.saturating_duration_since(first))
            .min(FPS_WINDOW);
        let fps = if span.is_zero() {
            0.0
        } else {
            in_window.len() as f64 / span.as_secs_f64()
        };
        let named = live.names.as_deref().zip(live.last.as_ref());
        Status {
            ready: ready.is_ok(),
            reason: ready.err().map(|why| why.to_string()),
            model: live.model.as_ref().map(|(model, _)| model.clone()),
            dtype: live.model.as_ref().map(|(_, dtype)| dtype.clone()),
            label: named.map(|(names, last)| names.label(last.smoothed.label).to_owned()),
            class: named.map(|(names, last)| names.class(last.smoothed.class).to_owned()),
            score: live.last.as_ref().map(|last| last.smoothed.score),
            top: named.map_or_else(Vec::new, |(names, last)| {
                let top = last.smoothed.top.iter();
                top.map(|(label, score)| Ranked {
                    label: names.label(Some(label)).to_owned(),
                    score,
                })
                .collect()
            }),
            fps,
            frames: live.labelled,
            last_latency_ms: live.last.as_ref().map(|last| ms(last.latency)),
            latency_p50_ms: stats::quantile(&in_window, 0.5),
            dropped: live
                .edges
                .iter()
                .map(|edge| edge.stats().dropped.total())
                .sum(),
            last_label_age_ms: live
                .last
                .as_ref()
                .map(|last| ms(now.saturating_duration_since(last.at))),
            workers: live
                .workers
                .iter()
                .map(|watch| WorkerStatus {
                    worker: watch.worker.unwrap_or(0),
                    frames: watch.frames(),
                    errors: watch.errors(),
                    busy_ms: watch.busy_for(now).map(ms),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Stamp;
    use crate::smooth::Top;

    const LATENCY: Duration = Duration::from_millis(20);

    /// Classes `tabby`, `Egyptian cat`, `espresso`; `grouped`: as `Cat` and `Drink`.
    fn names(grouped: bool) -> Arc<Names> {
        let classes = ["tabby", "Egyptian cat", "espresso"]
            .map(String::from)
            .to_vec();
        let groups = grouped.then(|| vec!["Cat".into(), "Drink".into()]);
        Arc::new(Names::new(classes, groups))
    }

    /// A smoothed `label` (`None`: unknown) led by `class`, over `ranked` scores.
    fn smoothed(label: Option<usize>, class: usize, ranked: &[f32]) -> Smoothed {
        let top = Top::of(ranked);
        let (_, score) = top.iter().next().expect("a score");
        Smoothed {
            stamp: Stamp {
                seq: 0,
                captured_at: Instant::now(),
            },
            label,
            score,
            class,
            changed: false,
            top,
        }
    }

    #[test]
    fn ready_means_model_loaded_and_labels_flowing() {
        let status = LiveStatus::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let why = |ready: Result<(), NotReady>| ready.unwrap_err().to_string();
        assert_eq!(why(status.readiness(t0)), "the model is not loaded yet");
        status.started("m.tflite", "int8", names(false));
        assert_eq!(why(status.readiness(t0)), "no frame labelled yet");
        let espresso = smoothed(Some(2), 2, &[0.05, 0.05, 0.9]);
        status.labelled(&espresso, LATENCY, t0);
        assert_eq!(status.readiness(t0 + Duration::from_secs(1)), Ok(()));
        let stale = why(status.readiness(t0 + Duration::from_secs(3)));
        assert_eq!(stale, "no frame labelled for 3.0 s (limit 2.0 s)");
        status.labelled(&espresso, LATENCY, t0 + Duration::from_secs(3));
        assert_eq!(status.readiness(t0 + Duration::from_secs(3)), Ok(()));
        status.stopped();
        assert_eq!(
            why(status.readiness(t0 + Duration::from_secs(3))),
            "the pipeline has stopped"
        );
    }

    #[test]
    fn status_reports_the_last_label_and_the_recent_rate() {
        let status = LiveStatus::new(Duration::from_secs(2));
        status.started("m.tflite", "float32", names(false));
        let t0 = Instant::now();
        let tabby = smoothed(Some(0), 0, &[0.5, 0.3, 0.2]);
        let espresso = smoothed(Some(2), 2, &[0.1, 0.1, 0.8]);
        // 10 labels per second for 4 s, then silence.
        for i in 0..40 {
            let label = if i < 30 { &tabby } else { &espresso };
            status.labelled(label, LATENCY, t0 + Duration::from_millis(100 * i));
        }
        let now = t0 + Duration::from_millis(3950);
        let snap = status.snapshot(now);
        assert!(snap.ready);
        assert_eq!(snap.label.as_deref(), Some("espresso"));
        assert_eq!(snap.class.as_deref(), Some("espresso"));
        assert_eq!(snap.score, Some(0.8));
        assert_eq!(snap.frames, 40);
        assert_eq!(snap.dtype.as_deref(), Some("float32"));
        assert!((snap.fps - 10.0).abs() < 0.6, "fps {}", snap.fps);
        assert_eq!(snap.last_latency_ms, Some(20.0));
        assert_eq!(snap.latency_p50_ms, Some(20.0));
        let quiet = status.snapshot(t0 + Duration::from_secs(10));
        assert_eq!(quiet.fps, 0.0);
        assert!(!quiet.ready);
        // Early on the rate is over the time there has been, not the whole window.
        let early = LiveStatus::new(Duration::from_secs(2));
        early.labelled(&tabby, LATENCY, t0);
        early.labelled(&tabby, LATENCY, t0 + Duration::from_millis(100));
        let snap = early.snapshot(t0 + Duration::from_millis(200));
        assert!((snap.fps - 10.0).abs() < 1e-9, "fps {}", snap.fps);
    }

    #[test]
    fn status_gives_the_group_as_label_its_leading_class_and_the_top_groups() {
        let status = LiveStatus::new(Duration::from_secs(2));
        status.started("m.tflite", "float32", names(true));
        let t0 = Instant::now();
        status.labelled(&smoothed(Some(0), 1, &[0.75, 0.25]), LATENCY, t0);
        let snap = status.snapshot(t0);
        assert_eq!(snap.label.as_deref(), Some("Cat"));
        assert_eq!(snap.class.as_deref(), Some("Egyptian cat"));
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(
            json["top"],
            serde_json::json!([{"label": "Cat", "score": 0.75}, {"label": "Drink", "score": 0.25}])
        );
        status.labelled(&smoothed(None, 0, &[0.5, 0.5]), LATENCY, t0);
        let snap = status.snapshot(t0);
        assert_eq!(snap.label.as_deref(), Some("unknown"));
        assert_eq!(snap.class.as_deref(), Some("tabby"));
    }

    /// One request over plain HTTP/1.0: the whole response.
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
        let telemetry = config.start(&Events::new()).unwrap().expect("enabled");
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
            again.start(&Events::new()),
            Err(TelemetryError::RecorderInstalled)
        ));
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let bad = |change: fn(&mut TelemetryConfig)| {
            let mut config = TelemetryConfig::default();
            change(&mut config);
            config
                .start(&Events::new())
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
