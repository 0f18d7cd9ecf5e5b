//! The whole pipeline from one config: source → resize → infer → smooth → the caller's sink
//!
//! [`Pipeline::build`] does everything that can fail before a frame moves (checks each stage's
//! settings, loads the model, opens the source), so start-up fails fast and `scened validate`
//! reuses it. [`Pipeline::run`] starts a thread per stage, feeds the caller's sink on the
//! calling thread until the stream ends, the shutdown is triggered or the sink says stop, then
//! joins every thread and returns the report. Each label's capture-to-label latency is
//! measured there, once, as it leaves for the sink.

use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Invalid};
use crate::events::{Event, Events, Label};
use crate::frame::{Frame, ModelInput, Scores};
use crate::infer::stage::InferStage;
use crate::infer::{Engine, InferError, ModelError};
use crate::labels::{LabelsError, Names};
use crate::metrics;
use crate::mqtt::MqttConfig;
use crate::queue::{EdgeConfig, EdgeReceiver, EdgeSender, EdgeWatch, WhenFull};
use crate::resize::ResizeStage;
use crate::rss;
use crate::runner::{
    spawn_source, spawn_stage, spawn_workers, LatencyMeter, PipelineReport, Probe, SinkReport,
    StageHandle, Watchdog,
};
use crate::smooth::{Smoothed, Smoother};
use crate::source::{Limited, SourceError};
use crate::stage::{Shutdown, Source};
use crate::telemetry::view::{Preview, Watched};
use crate::telemetry::LiveStatus;

/// The edges, each named after the stage it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgesConfig {
    /// Capture → resize.
    pub resize: EdgeConfig,
    /// Resize → infer.
    pub infer: EdgeConfig,
    /// Infer → smooth.
    pub smooth: EdgeConfig,
    /// Smooth → the sink.
    pub sink: EdgeConfig,
}

/// Live defaults. In front of inference, the slowest stage, a stale frame is worse than a
/// lost one: keep one frame, the newest.
pub const DEFAULT_EDGE_BEFORE_INFER: EdgeConfig = EdgeConfig {
    capacity: 1,
    when_full: WhenFull::DropOldest,
};
/// After inference every score counts and the stages are cheap: block, so a slow reader of
/// the output holds back inference rather than lose labels.
pub const DEFAULT_EDGE_SMOOTH: EdgeConfig = EdgeConfig {
    capacity: 4,
    when_full: WhenFull::Block,
};
pub const DEFAULT_EDGE_SINK: EdgeConfig = EdgeConfig {
    capacity: 16,
    when_full: WhenFull::Block,
};

impl Default for EdgesConfig {
    fn default() -> Self {
        Self {
            resize: DEFAULT_EDGE_BEFORE_INFER,
            infer: DEFAULT_EDGE_BEFORE_INFER,
            smooth: DEFAULT_EDGE_SMOOTH,
            sink: DEFAULT_EDGE_SINK,
        }
    }
}

impl EdgesConfig {
    pub fn check(&self) -> Result<(), Invalid> {
        self.resize.check("resize")?;
        self.infer.check("infer")?;
        self.smooth.check("smooth")?;
        self.sink.check("sink")
    }
}

/// Limits on a run; without any, it lasts until the source ends or a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StopConfig {
    /// Stop after this many frames from the source, at least 1.
    pub after_frames: Option<u64>,
    /// Stop reading frames after this many seconds, more than 0.
    pub after_seconds: Option<f64>,
    /// A stage busy this many seconds on one item is stalled: the run is aborted and fails.
    pub stall_seconds: f64,
}

/// A frame takes milliseconds; seconds on one is a hang, not a slow machine.
pub const DEFAULT_STALL_SECONDS: f64 = 10.0;

impl Default for StopConfig {
    fn default() -> Self {
        Self {
            after_frames: None,
            after_seconds: None,
            stall_seconds: DEFAULT_STALL_SECONDS,
        }
    }
}

/// Which smoothed labels reach the sink, and where the events go besides stdout.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Every frame's label, not only changes.
    pub every_frame: bool,
    /// The event stream to an MQTT broker; off without the table.
    pub mqtt: Option<MqttConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    // Not `#[from]`: that would also make the error its source, and print it twice in a chain.
    #[error("infer: {0}")]
    Model(ModelError),
    #[error("infer: {0}")]
    Session(InferError),
    #[error(transparent)]
    Labels(#[from] LabelsError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl StopConfig {
    /// The run time limit and the stall limit.
    pub fn check(&self) -> Result<(Option<Duration>, Duration), Invalid> {
        let frames = self.after_frames;
        Invalid::check(frames != Some(0), "stop.after_frames", "at least 1", 0)?;
        let run_for = self
            .after_seconds
            .map(|seconds| Invalid::positive_seconds("stop.after_seconds", seconds))
            .transpose()?;
        let stall_after = Invalid::positive_seconds("stop.stall_seconds", self.stall_seconds)?;
        Ok((run_for, stall_after))
    }
}

struct Edges {
    resize: (EdgeSender<Frame>, EdgeReceiver<Frame>),
    infer: (EdgeSender<ModelInput>, EdgeReceiver<ModelInput>),
    smooth: (EdgeSender<Scores>, EdgeReceiver<Scores>),
    sink: (EdgeSender<Smoothed>, EdgeReceiver<Smoothed>),
}

/// A built pipeline, ready to run.
pub struct Pipeline {
    engine: Engine,
    source: Limited<Box<dyn Source>>,
    resize: ResizeStage,
    /// One per worker, each with its own session of `engine`.
    infer: Vec<InferStage>,
    smooth: Smoother,
    names: Arc<Names>,
    edges: Edges,
    /// A frame later than this (the source's frame period) counts as a deadline miss.
    deadline: Option<Duration>,
    stall_after: Duration,
    every_frame: bool,
    status: Option<Arc<LiveStatus>>,
    preview: Option<Arc<Preview>>,
    events: Events,
    /// What the `started` event names.
    source_name: String,
    camera: String,
}

/// A smoothed label as the sink gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelEvent {
    /// The frame's sequence number at the source.
    pub frame: u64,
    /// When the frame was captured, by the wall clock.
    pub captured: SystemTime,
    /// The model class behind the label, in the model's label order: with groups, the
    /// label's member that scored highest in this frame.
    pub class: usize,
    /// A group's name with groups, else a class's; `unknown` below `labels.min_score`.
    pub label: String,
    /// The smoother's score for `label`.
    pub score: f32,
    /// Capture to the sink.
    pub latency: Duration,
    /// The label differs from the previous frame's (or is the first).
    pub changed: bool,
}

impl Pipeline {
    /// Loads the model and opens the source, after checking each stage's settings, cheapest
    /// first. Install a metrics recorder before: the edges register their metrics here.
    pub fn build(config: &Config) -> Result<Self, BuildError> {
        let edges = Edges {
            resize: config.edges.resize.build("resize")?,
            infer: config.edges.infer.build("infer")?,
            smooth: config.edges.smooth.build("smooth")?,
            sink: config.edges.sink.build("sink")?,
        };
        let smooth = config.smooth.build()?;
        config.labels.check()?;
        config.resize.check()?;
        let (run_for, stall_after) = config.stop.check()?;
        let workers = config.infer.check()?;
        let engine = config.infer.build().map_err(BuildError::Model)?;
        let infer = (0..workers)
            .map(|_| InferStage::new(&engine))
            .collect::<Result<_, _>>()
            .map_err(BuildError::Session)?;
        let labels = config.labels.build(&engine)?;
        let names = labels.names();
        let smooth = smooth.with_labels(labels);
        let resize = config.resize.build(&engine)?;
        // Last, so a camera does not stream into its buffers while the model loads.
        let source = config.source.build()?;
        let mut source = Limited::new(source, config.stop.after_frames, run_for);
        let events = Events::new();
        source.publish_to(&events);
        Ok(Self {
            engine,
            source,
            resize,
            infer,
            smooth,
            names,
            edges,
            deadline: config.source.frame_period(),
            stall_after,
            every_frame: config.output.every_frame,
            status: None,
            preview: None,
            events,
            source_name: config.source.describe(),
            camera: config.telemetry.camera_name().to_owned(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Inference workers it runs.
    pub fn workers(&self) -> usize {
        self.infer.len()
    }

    /// Keeps `status` up to date while running: started, every label, stopped.
    pub fn report_to(mut self, status: Arc<LiveStatus>) -> Self {
        status.watch_edges(self.edges());
        self.status = Some(status);
        self
    }

    /// Hands the live view frames (resize's input) while it asks for them.
    pub fn show_to(mut self, preview: Arc<Preview>) -> Self {
        self.preview = Some(preview);
        self
    }

    /// Publishes the run's events to `events` rather than to a stream of its own; the source
    /// says there when it is lost and back. The stream is closed after `stopped`.
    pub fn publish_to(mut self, events: Events) -> Self {
        self.source.publish_to(&events);
        self.events = events;
        self
    }

    /// The stream the run's events go to: subscribe before [`run`](Self::run).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Views of the edges' counters, in pipeline order (`resize`, `infer`, `smooth`, `sink`);
    /// they stay readable while the pipeline runs and after.
    pub fn edges(&self) -> Vec<EdgeWatch> {
        vec![
            self.edges.resize.0.watch(),
            self.edges.infer.0.watch(),
            self.edges.smooth.0.watch(),
            self.edges.sink.0.watch(),
        ]
    }

    /// Runs until the source ends or `shutdown` is triggered, then drains what is in flight.
    /// `sink` gets each label change (each label with `output.every_frame`) on this thread;
    /// `Break` stops the run as a shutdown does. The events stream gets the same labels, framed
    /// by `started` and `stopped` (after a `stage_failed` for each failed stage), and is then
    /// closed. `Err` only if a thread could not be started.
    pub fn run(
        self,
        shutdown: &Shutdown,
        mut sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<PipelineReport> {
        let Pipeline {
            engine,
            source,
            resize,
            infer,
            smooth,
            names,
            edges,
            deadline,
            stall_after,
            every_frame,
            status,
            preview,
            events,
            source_name,
            camera,
        } = self;
        let (to_resize, resize_in) = edges.resize;
        let (to_infer, infer_in) = edges.infer;
        let (to_smooth, smooth_in) = edges.smooth;
        let (to_sink, sink_in) = edges.sink;
        let sink_watch = sink_in.watch();
        let model = engine
            .path()
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let dtype = engine.inspection().precision().name();
        // Before the source starts, so that every frame's label comes after it.
        let parallel = (infer.len(), engine.threads());
        events.publish(Event::started(
            &model,
            &dtype,
            source_name,
            &camera,
            parallel,
        ));
        let mut handles = Vec::with_capacity(3 + infer.len());
        let started = (|| {
            handles.push(spawn_source(
                "capture",
                source,
                to_resize,
                shutdown.clone(),
            )?);
            handles.push(spawn_stage(
                "resize",
                Watched::new(resize, preview.clone()),
                resize_in,
                to_infer,
                Probe::None,
                shutdown.clone(),
            )?);
            spawn_workers(
                "infer",
                infer,
                infer_in,
                to_smooth,
                Probe::FrameAge,
                shutdown,
                &mut handles,
            )?;
            handles.push(spawn_stage(
                "smooth",
                smooth,
                smooth_in,
                to_sink,
                Probe::None,
                shutdown.clone(),
            )?);
            Watchdog::spawn(&handles, shutdown.clone(), stall_after)
        })();
        let watchdog = match started {
            Ok(watchdog) => watchdog,
            Err(error) => {
                // What did start stops once the edge to the missing stage is found closed.
                shutdown.trigger();
                drop(sink_in);
                PipelineReport::join(handles);
                events.close();
                return Err(error);
            }
        };
        metrics::record_run(&model, &dtype, deadline);
        if let Some(status) = &status {
            status.started(&model, &dtype, names.clone());
            let watches = handles.iter().map(StageHandle::watch);
            status.workers(watches.filter(|watch| watch.worker.is_some()).collect());
        }
        let clock = WallClock::now();
        let mut latencies = LatencyMeter::new(deadline);
        // The label shown, for the metric to unmark when it changes.
        let mut shown: Option<&str> = None;
        while let Ok(Some(smoothed)) = sink_in.recv_unless(shutdown.aborted()) {
            let now = Instant::now();
            let stamp = smoothed.stamp;
            let latency = latencies.record(stamp, now);
            let label = names.label(smoothed.label);
            if smoothed.changed {
                metrics::record_label_change(shown, label);
                shown = Some(label);
            }
            if let Some(status) = &status {
                status.labelled(&smoothed, latency, now);
            }
            if !(every_frame || smoothed.changed) {
                continue;
            }
            let event = LabelEvent {
                frame: stamp.seq,
                captured: clock.at(stamp.captured_at),
                class: smoothed.class,
                label: label.to_owned(),
                score: smoothed.score,
                latency,
                changed: smoothed.changed,
            };
            let stop = sink(&event).is_break();
            events.publish(Event::Label(Label::from(&event)));
            if stop {
                shutdown.trigger();
                break;
            }
        }
        if let Some(status) = &status {
            status.stopped();
        }
        drop(sink_in);
        let mut report = PipelineReport::join(handles);
        watchdog.stop();
        report.sink = Some(SinkReport {
            edge: sink_watch.stats(),
            latency: latencies.finish(),
        });
        Event::stage_failures(&report).for_each(|failed| events.publish(failed));
        let seconds = clock.instant.elapsed().as_secs_f64();
        events.publish(Event::stopped(&report, seconds, rss::peak_bytes()));
        events.close();
        Ok(report)
    }
}

/// Maps the monotonic clock frames are stamped with to the wall clock, for output.
struct WallClock {
    instant: Instant,
    system: SystemTime,
}

impl WallClock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    fn at(&self, instant: Instant) -> SystemTime {
        match instant.checked_duration_since(self.instant) {
            Some(after) => self.system + after,
            None => self.system - self.instant.duration_since(instant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_limits_are_checked_naming_the_key() {
        let check = |after_frames, after_seconds, stall_seconds| {
            StopConfig {
                after_frames,
                after_seconds,
                stall_seconds,
            }
            .check()
            .map_err(|e| e.to_string())
        };
        let stall = DEFAULT_STALL_SECONDS;
        let stall_after = Duration::from_secs(10);
        assert_eq!(check(None, None, stall), Ok((None, stall_after)));
        assert_eq!(
            check(Some(5), Some(1.5), 0.25),
            Ok((
                Some(Duration::from_millis(1500)),
                Duration::from_millis(250)
            ))
        );
        assert_eq!(
            check(Some(0), None, stall),
            Err("stop.after_frames must be at least 1, got 0".into())
        );
        for seconds in [0.0, -1.0, f64::NAN] {
            let err = check(None, Some(seconds), stall).expect_err("refused");
            assert!(
                err.starts_with("stop.after_seconds must be more than 0"),
                "{err}"
            );
            let err = check(None, None, seconds).expect_err("refused");
            assert!(
                err.starts_with("stop.stall_seconds must be more than 0"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_wall_clock_follows_the_monotonic_one_both_ways() {
        let clock = WallClock::now();
        let later = clock.instant + Duration::from_millis(250);
        assert_eq!(clock.at(later), clock.system + Duration::from_millis(250));
        if let Some(earlier) = clock.instant.checked_sub(Duration::from_millis(250)) {
            assert_eq!(clock.at(earlier), clock.system - Duration::from_millis(250));
        }
    }
}
