//! The whole pipeline from one config: source → resize → infer → smooth → out.
//!
//! [`Pipeline::build`] does everything that can fail before a frame moves (checks each stage's
//! settings, loads the model, opens the source), so start-up fails fast and `scened validate`
//! reuses it. [`Pipeline::run`] starts a thread per stage and takes each smoothed frame as it
//! comes out, on the calling thread, until the stream ends, the shutdown is triggered or the
//! caller's sink says stop; then it joins every thread and returns the report.
//!
//! Each frame's capture-to-label latency is measured there, once, and the frame is published:
//! its result to [`Pipeline::results`] (`/status` follows every frame), its label, when it
//! changed or `[output] every_frame` asks for each, to [`Pipeline::events`] (stdout, MQTT,
//! `/events`) and to the caller's sink. The pipeline knows none of its outputs: each
//! subscribes, with its own queue and policy for falling behind ([`crate::bus`]); only the
//! caller's sink, on the pipeline's own thread, holds the pipeline back, as `[edges.sink]`
//! declares.

use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::bus::Bus;
use crate::config::Config;
use crate::error::Invalid;
use crate::events::{Event, Events, Label};
use crate::frame::{Frame, LabelEvent, Labelled, ModelInput, Scores, Smoothed};
use crate::infer::stage::InferStage;
use crate::infer::{Engine, InferError, ModelError};
use crate::labels::{LabelsError, Names};
use crate::metrics;
use crate::queue::{EdgeReceiver, EdgeSender, EdgeWatch};
use crate::resize::ResizeStage;
use crate::rss;
use crate::runner::{
    spawn_source, spawn_stage, spawn_workers, LatencyMeter, PipelineReport, Probe, SinkReport,
    StageHandle, Watchdog, WorkerWatches,
};
use crate::smooth::Smoother;
use crate::source::{Limited, SourceError};
use crate::stage::{Shutdown, Source, Tap, Tapped};

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

struct Edges {
    resize: (EdgeSender<Frame>, EdgeReceiver<Frame>),
    infer: (EdgeSender<ModelInput>, EdgeReceiver<ModelInput>),
    smooth: (EdgeSender<Scores>, EdgeReceiver<Scores>),
    sink: (EdgeSender<Smoothed>, EdgeReceiver<Smoothed>),
}

/// The stages, built, before their threads start.
struct Stages {
    source: Limited<Box<dyn Source>>,
    resize: ResizeStage,
    /// One per worker, each with its own session of the engine.
    infer: Vec<InferStage>,
    smooth: Smoother,
}

/// A built pipeline, ready to run.
pub struct Pipeline {
    engine: Engine,
    stages: Stages,
    names: Arc<Names>,
    edges: Edges,
    /// A frame later than this (the source's frame period) counts as a deadline miss.
    deadline: Option<Duration>,
    stall_after: Duration,
    every_frame: bool,
    /// Offered resize's input: the live view.
    tap: Option<Arc<dyn Tap<Frame>>>,
    events: Events,
    results: Bus<Labelled>,
    workers: WorkerWatches,
    /// What the `started` event names.
    source_name: String,
    camera: String,
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
            stages: Stages {
                source,
                resize,
                infer,
                smooth,
            },
            names,
            edges,
            deadline: config.source.frame_period(),
            stall_after,
            every_frame: config.output.every_frame,
            tap: None,
            events,
            results: Bus::new(),
            workers: WorkerWatches::default(),
            source_name: config.source.describe(),
            camera: config.telemetry.camera_name().into_owned(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The model file's name and its weights' type, as the `started` event names them.
    pub fn model(&self) -> (String, String) {
        let model = self.engine.path().file_name().unwrap_or_default();
        let dtype = self.engine.inspection().precision().name();
        (model.to_string_lossy().into_owned(), dtype.to_string())
    }

    /// What the label indices of its results name.
    pub fn names(&self) -> Arc<Names> {
        Arc::clone(&self.names)
    }

    /// Inference workers it runs.
    pub fn workers(&self) -> usize {
        self.stages.infer.len()
    }

    /// The inference workers' live counts, readable once the run has started them.
    pub fn worker_watches(&self) -> WorkerWatches {
        self.workers.clone()
    }

    /// Offers `tap` each frame before resize takes it: how the live view sees the camera.
    pub fn show_to(mut self, tap: Arc<dyn Tap<Frame>>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Publishes the run's events to `events` rather than to a stream of its own; the source
    /// says there when it is lost and back. The stream is closed after `stopped`.
    pub fn publish_to(mut self, events: Events) -> Self {
        self.stages.source.publish_to(&events);
        self.events = events;
        self
    }

    /// The stream the run's events go to: subscribe before [`run`](Self::run).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Every frame's result as it comes out, closed when the run ends: subscribe before
    /// [`run`](Self::run).
    pub fn results(&self) -> &Bus<Labelled> {
        &self.results
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
    /// closed, as the results are. `Err` only if a thread could not be started.
    pub fn run(
        self,
        shutdown: &Shutdown,
        sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<PipelineReport> {
        let (model, dtype) = self.model();
        let parallel = (self.workers(), self.engine.threads());
        let Pipeline {
            stages,
            names,
            edges,
            deadline,
            stall_after,
            every_frame,
            tap,
            events,
            results,
            workers,
            source_name,
            camera,
            ..
        } = self;
        // Before the source starts, so that every frame's label comes after it.
        events.publish(Event::started(
            &model,
            &dtype,
            source_name,
            &camera,
            parallel,
        ));
        let (to_sink, sink_in) = edges.sink;
        let sink_watch = sink_in.watch();
        let inner = (edges.resize, edges.infer, edges.smooth, to_sink);
        let (handles, watchdog) = match stages.spawn(inner, tap, shutdown, stall_after) {
            Ok(running) => running,
            Err((error, handles)) => {
                // What did start stops once the edge to the missing stage is found closed.
                shutdown.trigger();
                drop(sink_in);
                PipelineReport::join(handles);
                results.close();
                events.close();
                return Err(error);
            }
        };
        metrics::record_run(&model, &dtype, deadline);
        let watches = handles.iter().map(StageHandle::watch);
        workers.set(watches.filter(|watch| watch.worker.is_some()).collect());
        let mut out = Out {
            names: &names,
            every_frame,
            events: &events,
            results: &results,
            latencies: LatencyMeter::new(deadline),
            clock: WallClock::now(),
        };
        out.deliver(&sink_in, shutdown, sink);
        results.close();
        drop(sink_in);
        let mut report = PipelineReport::join(handles);
        watchdog.stop();
        report.sink = Some(SinkReport {
            edge: sink_watch.stats(),
            latency: out.latencies.finish(),
        });
        report
            .failure_events()
            .for_each(|failed| events.publish(failed));
        let seconds = out.clock.instant.elapsed().as_secs_f64();
        events.publish(report.stopped_event(seconds, rss::peak_bytes()));
        events.close();
        Ok(report)
    }
}

/// The edges between the stages, sink excluded: it is read on the caller's thread.
type Inner = (
    (EdgeSender<Frame>, EdgeReceiver<Frame>),
    (EdgeSender<ModelInput>, EdgeReceiver<ModelInput>),
    (EdgeSender<Scores>, EdgeReceiver<Scores>),
    EdgeSender<Smoothed>,
);

impl Stages {
    /// A thread per stage (per worker for inference) and the watchdog over them; on an
    /// error, the handles of what did start.
    fn spawn(
        self,
        (resize, infer, smooth, to_sink): Inner,
        tap: Option<Arc<dyn Tap<Frame>>>,
        shutdown: &Shutdown,
        stall_after: Duration,
    ) -> Result<(Vec<StageHandle>, Watchdog), (io::Error, Vec<StageHandle>)> {
        let mut handles = Vec::with_capacity(3 + self.infer.len());
        let started = (|| {
            handles.push(spawn_source(
                "capture",
                self.source,
                resize.0,
                shutdown.clone(),
            )?);
            handles.push(spawn_stage(
                "resize",
                Tapped::new(self.resize, tap),
                resize.1,
                infer.0,
                Probe::None,
                shutdown.clone(),
            )?);
            spawn_workers(
                "infer",
                self.infer,
                infer.1,
                smooth.0,
                Probe::FrameAge,
                shutdown,
                &mut handles,
            )?;
            handles.push(spawn_stage(
                "smooth",
                self.smooth,
                smooth.1,
                to_sink,
                Probe::None,
                shutdown.clone(),
            )?);
            Watchdog::spawn(&handles, shutdown.clone(), stall_after)
        })();
        match started {
            Ok(watchdog) => Ok((handles, watchdog)),
            Err(error) => Err((error, handles)),
        }
    }
}

/// The pipeline's end, on the caller's thread: each smoothed frame timed once and published.
struct Out<'a> {
    names: &'a Names,
    every_frame: bool,
    events: &'a Events,
    results: &'a Bus<Labelled>,
    latencies: LatencyMeter,
    clock: WallClock,
}

impl Out<'_> {
    /// Takes the smoothed frames until the edge closes or the run is aborted, or `sink` says
    /// stop, which stops the run as a shutdown does.
    fn deliver(
        &mut self,
        input: &EdgeReceiver<Smoothed>,
        shutdown: &Shutdown,
        mut sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) {
        while let Ok(Some(smoothed)) = input.recv_unless(shutdown.aborted()) {
            let Some(event) = self.publish(smoothed) else {
                continue;
            };
            if sink(&event).is_break() {
                shutdown.trigger();
                break;
            }
        }
    }

    /// Publishes a frame's result, and its label event when it makes one.
    fn publish(&mut self, smoothed: Smoothed) -> Option<LabelEvent> {
        let at = Instant::now();
        let stamp = smoothed.stamp;
        let latency = self.latencies.record(stamp, at);
        self.results.publish(Labelled {
            smoothed,
            latency,
            at,
        });
        if !(self.every_frame || smoothed.changed) {
            return None;
        }
        let event = LabelEvent {
            frame: stamp.seq,
            captured: self.clock.at(stamp.captured_at),
            class: smoothed.class,
            label: self.names.label(smoothed.label).to_owned(),
            score: smoothed.score,
            latency,
            changed: smoothed.changed,
        };
        self.events.publish(Event::Label(Label::from(&event)));
        Some(event)
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
    fn the_wall_clock_follows_the_monotonic_one_both_ways() {
        let clock = WallClock::now();
        let later = clock.instant + Duration::from_millis(250);
        assert_eq!(clock.at(later), clock.system + Duration::from_millis(250));
        if let Some(earlier) = clock.instant.checked_sub(Duration::from_millis(250)) {
            assert_eq!(clock.at(earlier), clock.system - Duration::from_millis(250));
        }
    }
}
