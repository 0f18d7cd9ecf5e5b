//! The pipeline's state as `/readyz` and `/status` see it: [`LiveStatus`], kept up to date by
//! [`follow`], a subscriber to the pipeline's results on a thread of its own, which also moves
//! the label metric. It drops the oldest results when it falls behind (counted in
//! `scened_output_dropped_total{output="status"}`): it only ever needs the newest.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::FPS_WINDOW;
use crate::bus::Subscription;
use crate::frame::{Labelled, Smoothed};
use crate::labels::Names;
use crate::metrics;
use crate::queue::EdgeWatch;
use crate::runner::WorkerWatches;
use crate::stats;

/// Results waiting for the status thread: a burst's worth; it only needs the newest.
pub const RESULTS_QUEUE: usize = 64;

/// What `/status` shows of a pipeline besides its results, given before it runs.
pub struct RunInfo {
    /// The model file's name and its weights' type.
    pub model: String,
    pub dtype: String,
    /// What the label indices of the results name.
    pub names: Arc<Names>,
    /// The pipeline's queues, whose drops `/status` adds up.
    pub edges: Vec<EdgeWatch>,
    pub workers: WorkerWatches,
}

/// Follows `results` until the run closes them: every frame into `status`, every change of
/// label into the label metric; then marks the run stopped.
pub fn follow(status: &LiveStatus, names: &Names, results: &Subscription<Labelled>) {
    let mut shown: Option<&str> = None;
    while let Some(result) = results.recv() {
        let smoothed = &result.smoothed;
        if smoothed.changed {
            let label = names.label(smoothed.label);
            metrics::record_label_change(shown, label);
            shown = Some(label);
        }
        status.labelled(smoothed, result.latency, result.at);
    }
    status.stopped();
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
    /// Runs of the camera being followed: a reload's new one starts before the old one ends.
    followers: usize,
    last: Option<Last>,
    labelled: u64,
    first_at: Option<Instant>,
    /// When each label of the last [`FPS_WINDOW`] came out, and its latency.
    recent: VecDeque<(Instant, Duration)>,
    /// The pipeline's edges, whose drops `/status` adds up.
    edges: Vec<EdgeWatch>,
    /// The inference workers, once they run.
    workers: WorkerWatches,
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
#[derive(Debug, Default, PartialEq, Serialize)]
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

/// `/status`'s body: the one camera's status, or with several the whole daemon's
/// ([`Status::overall`]), and each camera's by name.
#[derive(Debug, Serialize)]
pub struct StatusPage {
    #[serde(flatten)]
    pub status: Status,
    pub cameras: BTreeMap<String, Status>,
    /// The config running: when it was loaded, and how many reloads it has seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigLoaded>,
}

/// When the config now running was loaded (at start or by the last reload that took).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigLoaded {
    /// RFC 3339, UTC.
    pub loaded_at: String,
    /// Reloads that took, since the start.
    pub reloads: u64,
    /// Reloads that changed nothing because they failed.
    pub failed_reloads: u64,
}

/// One inference worker in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        live.followers += 1;
    }

    /// A reload swapped the model in: its frames now run on `model`.
    pub fn runs(&self, model: &str, dtype: &str) {
        self.live().model = Some((model.to_owned(), dtype.to_owned()));
    }

    /// The pipeline's queues, whose drops `/status` reports.
    pub fn watch_edges(&self, edges: Vec<EdgeWatch>) {
        self.live().edges = edges;
    }

    /// The pipeline has stopped; no more labels will come.
    pub fn stopped(&self) {
        let mut live = self.live();
        live.followers = live.followers.saturating_sub(1);
        live.stopped = live.followers == 0;
    }

    /// The inference workers, whose counts `/status` shows live once they run.
    pub fn workers(&self, workers: WorkerWatches) {
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
                .get()
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

impl Status {
    /// The daemon's status over its cameras' (not empty): ready when every camera is, else
    /// the first one's reason, naming it; frames, fps and drops summed; the model and the
    /// workers, which they share; no label, which is each camera's own.
    pub fn overall(cameras: &BTreeMap<String, Status>) -> Status {
        let first = cameras.values().next();
        let not_ready = cameras.iter().find(|(_, status)| !status.ready);
        let reason = not_ready.map(|(name, status)| {
            let why = status.reason.as_deref().unwrap_or("not ready");
            format!("camera {name}: {why}")
        });
        Status {
            ready: reason.is_none(),
            reason,
            model: first.and_then(|status| status.model.clone()),
            dtype: first.and_then(|status| status.dtype.clone()),
            fps: cameras.values().map(|status| status.fps).sum(),
            frames: cameras.values().map(|status| status.frames).sum(),
            dropped: cameras.values().map(|status| status.dropped).sum(),
            workers: first.map_or_else(Vec::new, |status| status.workers.clone()),
            ..Status::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Stamp, Top};

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
}
