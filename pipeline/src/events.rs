//! The event stream: everything scened tells the world, as one kind of JSON object with an
//! `event` field — a label, the source lost and back, a stage failed, the run started and
//! stopped. stdout, MQTT and the HTTP side's `/events` all carry these same objects.
//!
//! [`Events`] is a [`Bus`] of them: each output subscribes with its own bounded queue and its
//! own declared policy for when it is full; every output of scened drops its oldest and counts
//! what it dropped, so a slow one never holds back the pipeline or the others
//! (`docs/running.md` lists them).

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::bus::{self, Bus};
pub use crate::bus::{NoEvent, Subscriber};
use crate::frame::LabelEvent;

/// The stream of events: who publishes holds a clone, each output subscribes.
pub type Events = Bus<Event>;
/// An output's subscription to the stream.
pub type Subscription = bus::Subscription<Event>;

/// One line of the stream. Serialized, the variant is the `event` field and its fields sit
/// beside it: `{"event":"label","frame":812,"ts":"2026-01-01T12:00:00.123Z",…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Label(Label),
    SourceLost(SourceLost),
    SourceBack(SourceBack),
    StageFailed(StageFailed),
    Started(Started),
    Stopped(Stopped),
    Reloaded(Reloaded),
    ReloadFailed(ReloadFailed),
}

/// A smoothed label: the line scened has always printed, with the same fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The frame's sequence number at the source.
    pub frame: u64,
    /// Capture time, RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub label: String,
    /// The smoother's score for `label`, to four decimals.
    pub score: f64,
    /// Capture to label, to a tenth of a millisecond.
    pub latency_ms: f64,
    /// The camera, when the daemon runs several (`[cameras.<name>]`); absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
}

/// The source stopped delivering; it is reopened after `retry_in_ms`, then again with
/// backoff until it is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLost {
    pub ts: String,
    /// What the source is, e.g. `camera 0`.
    pub source: String,
    /// Why it is lost: the error and its causes.
    pub reason: String,
    /// Times it was lost and reopened before in this run.
    pub reconnects: u64,
    pub retry_in_ms: u64,
    /// The camera, when the daemon runs several (`[cameras.<name>]`); absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
}

/// A lost source reopened: frames flow again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBack {
    pub ts: String,
    pub source: String,
    /// Times it was lost and reopened in this run, this one included.
    pub reconnects: u64,
    /// Reopen attempts this time, the one that worked included.
    pub attempts: u64,
    /// From the loss to the reopen.
    pub down_ms: u64,
    /// The camera, when the daemon runs several (`[cameras.<name>]`); absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
}

/// A stage stopped by a fault; the run ends, non-zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFailed {
    pub ts: String,
    /// `capture`, `resize`, `infer` or `smooth`.
    pub stage: String,
    /// `failed` (a fatal error), `panicked` or `stalled`, as in `scened_stage_failures_total`.
    pub reason: String,
    /// What went wrong, as the report says it.
    pub error: String,
    /// The camera, when the daemon runs several (`[cameras.<name>]`); absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
}

/// The model is loaded, the source open and frames about to flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub ts: String,
    /// The model file's name.
    pub model: String,
    /// Its weights' type: `float32`, `int8`, `uint8`.
    pub dtype: String,
    /// What the source is, e.g. `camera 0`, `clip (built-in demo clip)`.
    pub source: String,
    /// `[telemetry] camera`, `default` when unset.
    pub camera: String,
    /// Inference workers (frames in parallel: throughput) and threads per inference (one
    /// frame split between cores: latency), as the run uses them (docs/inference.md).
    pub workers: usize,
    pub threads: usize,
}

/// A reload took (SIGHUP, `scened reload`): what it changed, between two frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reloaded {
    pub ts: String,
    /// The config file read.
    pub file: String,
    /// The model file now running, and its weights' type.
    pub model: String,
    pub dtype: String,
    /// Whether the model (or another `[infer]` setting) was swapped in.
    pub model_changed: bool,
    pub cameras_added: Vec<String>,
    pub cameras_removed: Vec<String>,
    /// Cameras that reopened (their source, or their label set, changed).
    pub cameras_reopened: Vec<String>,
    /// Cameras whose resize or smoothing settings changed, taken from their next frame.
    pub cameras_changed: Vec<String>,
    /// Outputs reconnected with their new settings: `output.mqtt`.
    pub reconnected: Vec<String>,
    /// Keys that cannot change while running, e.g. `telemetry.listen`: their old values are
    /// kept until a restart.
    pub refused: Vec<String>,
}

/// A reload changed nothing: the config or its model is bad. The daemon runs on as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadFailed {
    pub ts: String,
    pub file: String,
    /// Why, naming the field: `infer.threads must be 0 to 64, got 99`.
    pub error: String,
}

/// The run is over: the report's summary. Always the last event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stopped {
    pub ts: String,
    /// `end_of_stream` (the source ended, or a `[stop]` limit was reached), `shutdown` (a
    /// signal, or the output went away), `stage_failed`, or, for one of several cameras,
    /// `removed` (by a reload; the others run on).
    pub reason: String,
    /// Frames labelled (each came out of the pipeline, printed or not).
    pub frames: u64,
    /// Frames labelled per second over the run.
    pub fps: f64,
    /// Frames dropped on the queues, for any reason.
    pub drops: u64,
    /// Frames a stage failed on and skipped.
    pub errors: u64,
    pub seconds: f64,
    /// The process's peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// The camera, when the daemon runs several (`[cameras.<name>]`); absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
}

/// Wall-clock time as every event's `ts` shows it.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

pub fn now() -> String {
    timestamp(SystemTime::now())
}

/// `x` rounded to `decimals` places: f32 scores printed as f64 show noise digits.
pub fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl From<&LabelEvent> for Label {
    fn from(event: &LabelEvent) -> Self {
        Self {
            frame: event.frame,
            ts: timestamp(event.captured),
            label: event.label.clone(),
            score: round(f64::from(event.score), 4),
            latency_ms: round(event.latency.as_secs_f64() * 1e3, 1),
            camera: None,
        }
    }
}

impl Event {
    /// The `event` field's value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Label(_) => "label",
            Self::SourceLost(_) => "source_lost",
            Self::SourceBack(_) => "source_back",
            Self::StageFailed(_) => "stage_failed",
            Self::Started(_) => "started",
            Self::Stopped(_) => "stopped",
            Self::Reloaded(_) => "reloaded",
            Self::ReloadFailed(_) => "reload_failed",
        }
    }

    /// The source lost now, `reconnects` times before, reopened after `retry_in`.
    pub fn source_lost(
        source: String,
        reason: String,
        reconnects: u64,
        retry_in: Duration,
    ) -> Self {
        Self::SourceLost(SourceLost {
            ts: now(),
            source,
            reason,
            reconnects,
            retry_in_ms: millis(retry_in),
            camera: None,
        })
    }

    /// The source back now, after being lost since `lost_at`.
    pub fn source_back(source: String, reconnects: u64, attempts: u64, lost_at: Instant) -> Self {
        Self::SourceBack(SourceBack {
            ts: now(),
            source,
            reconnects,
            attempts,
            down_ms: millis(lost_at.elapsed()),
            camera: None,
        })
    }

    /// The run starts: `workers` inference workers of `threads` threads each.
    pub fn started(
        model: &str,
        dtype: &str,
        source: String,
        camera: &str,
        (workers, threads): (usize, usize),
    ) -> Self {
        Self::Started(Started {
            ts: now(),
            model: model.to_owned(),
            dtype: dtype.to_owned(),
            source,
            camera: camera.to_owned(),
            workers,
            threads,
        })
    }

    /// The camera the event is about, when it says.
    pub fn camera(&self) -> Option<&str> {
        match self {
            Self::Label(Label { camera, .. })
            | Self::SourceLost(SourceLost { camera, .. })
            | Self::SourceBack(SourceBack { camera, .. })
            | Self::StageFailed(StageFailed { camera, .. })
            | Self::Stopped(Stopped { camera, .. }) => camera.as_deref(),
            Self::Started(started) => Some(&started.camera),
            Self::Reloaded(_) | Self::ReloadFailed(_) => None,
        }
    }

    /// Says which camera the event is about, unless it says so already.
    pub fn set_camera(&mut self, name: &str) {
        let camera = match self {
            Self::Label(Label { camera, .. })
            | Self::SourceLost(SourceLost { camera, .. })
            | Self::SourceBack(SourceBack { camera, .. })
            | Self::StageFailed(StageFailed { camera, .. })
            | Self::Stopped(Stopped { camera, .. }) => camera,
            Self::Started(_) | Self::Reloaded(_) | Self::ReloadFailed(_) => return,
        };
        camera.get_or_insert_with(|| name.to_owned());
    }

    /// The event as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and numbers serialize")
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes each event of `subscription` to `out` as a line of JSON, flushed, until the stream
/// closes. On a write error the subscription is dropped, so a publisher waiting for room in
/// it goes on.
pub fn write_lines(subscription: Subscription, mut out: impl Write) -> io::Result<()> {
    while let Some(event) = subscription.recv() {
        writeln!(out, "{event}")?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(frame: u64) -> Event {
        Event::Label(Label {
            frame,
            ts: "2026-01-01T12:00:00.123Z".into(),
            label: "espresso".into(),
            score: 0.91,
            latency_ms: 14.2,
            camera: None,
        })
    }

    #[test]
    fn a_label_serializes_as_the_line_scened_always_printed_tagged_label() {
        let line = label(812).to_json();
        assert_eq!(
            line,
            r#"{"event":"label","frame":812,"ts":"2026-01-01T12:00:00.123Z","label":"espresso","score":0.91,"latency_ms":14.2}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), label(812));
    }

    #[test]
    fn a_label_event_rounds_the_score_and_the_latency() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_268_800_123);
        let event = LabelEvent {
            frame: 3,
            captured: at,
            class: 967,
            label: "espresso".into(),
            score: 0.912_345_6,
            latency: Duration::from_micros(14_249),
            changed: true,
        };
        let label = Label::from(&event);
        assert_eq!(label.ts, "2026-01-01T12:00:00.123Z");
        assert_eq!((label.score, label.latency_ms), (0.9123, 14.2));
    }

    #[test]
    fn every_kind_is_tagged_with_its_name_and_reads_back() {
        let events = [
            label(1),
            Event::source_lost(
                "camera 0".into(),
                "no frame".into(),
                2,
                Duration::from_secs(1),
            ),
            Event::source_back("camera 0".into(), 3, 2, Instant::now()),
            Event::started("m.tflite", "int8", "camera 0".into(), "default", (1, 2)),
        ];
        for event in events {
            let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(json["event"], event.kind(), "{json}");
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        }
    }
}
