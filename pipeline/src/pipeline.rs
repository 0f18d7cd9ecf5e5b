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
//!
//! With several cameras (`[cameras.<name>]`) each has its own capture, resize, smoothing,
//! edges and results, its metrics labelled `camera="<name>"` and its events saying its name;
//! the model is loaded once and its inference workers serve the cameras in turn
//! ([`spawn_workers`]), so a fast camera cannot starve a slow one, and a camera whose
//! source is lost costs the others nothing.

use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Select, TryRecvError};

use crate::bus::Bus;
use crate::config::{Camera, Config};
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
    spawn_source, spawn_stage, spawn_workers, Lane, LatencyMeter, PipelineReport, Probe,
    SinkReport, StageHandle, Watchdog, WorkerWatches,
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
    /// One of several cameras' parts.
    #[error("cameras.{camera}: {error}")]
    Camera {
        camera: String,
        error: Box<BuildError>,
    },
}

struct Edges {
    resize: (EdgeSender<Frame>, EdgeReceiver<Frame>),
    infer: (EdgeSender<ModelInput>, EdgeReceiver<ModelInput>),
    smooth: (EdgeSender<Scores>, EdgeReceiver<Scores>),
    sink: (EdgeSender<Smoothed>, EdgeReceiver<Smoothed>),
}

/// One camera's part, built, before its threads start: everything but inference.
struct CameraPart {
    name: String,
    source: Limited<Box<dyn Source>>,
    resize: ResizeStage,
    smooth: Smoother,
    names: Arc<Names>,
    edges: Edges,
    /// A frame later than this (the source's frame period) counts as a deadline miss.
    deadline: Option<Duration>,
    /// Offered resize's input: the live view.
    tap: Option<Arc<dyn Tap<Frame>>>,
    results: Bus<Labelled>,
    /// What the `started` event names.
    source_name: String,
}

/// A built pipeline, ready to run.
pub struct Pipeline {
    engine: Engine,
    /// One per worker, each with its own session of the engine, shared by the cameras.
    infer: Vec<InferStage>,
    cameras: Vec<CameraPart>,
    /// `[cameras]`' several rather than `[source]`'s one: each says its name in its metrics
    /// and events.
    several: bool,
    stall_after: Duration,
    every_frame: bool,
    events: Events,
    workers: WorkerWatches,
}

impl Pipeline {
    /// Loads the model once and opens every camera's source, after checking each stage's
    /// settings, cheapest first. Install a metrics recorder before: the edges register their
    /// metrics here.
    pub fn build(config: &Config) -> Result<Self, BuildError> {
        config.edges.check()?;
        let cameras = config.cameras();
        let several = !config.cameras.is_empty();
        for camera in &cameras {
            camera.check()?;
        }
        let (run_for, stall_after) = config.stop.check()?;
        let workers = config.infer.check()?;
        let engine = config.infer.build().map_err(BuildError::Model)?;
        let infer = (0..workers)
            .map(|_| InferStage::new(&engine))
            .collect::<Result<_, _>>()
            .map_err(BuildError::Session)?;
        let events = Events::new();
        let cameras = cameras
            .iter()
            .map(|camera| {
                let part = CameraPart::build(camera, config, &engine, run_for);
                part.map_err(|error| match several {
                    true => BuildError::Camera {
                        camera: camera.name.to_string(),
                        error: Box::new(error),
                    },
                    false => error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pipeline = Self {
            engine,
            infer,
            cameras,
            several,
            stall_after,
            every_frame: config.output.every_frame,
            events: events.clone(),
            workers: WorkerWatches::default(),
        };
        Ok(pipeline.publish_to(events))
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

    /// The cameras' names, in the order the other `_of` methods take them.
    pub fn camera_names(&self) -> Vec<String> {
        self.cameras
            .iter()
            .map(|camera| camera.name.clone())
            .collect()
    }

    /// Whether the cameras are `[cameras]`' several, not `[source]`'s one.
    pub fn several(&self) -> bool {
        self.several
    }

    /// What the label indices of the first camera's results name.
    pub fn names(&self) -> Arc<Names> {
        self.names_of(0)
    }

    /// What the label indices of camera `camera`'s results name.
    pub fn names_of(&self, camera: usize) -> Arc<Names> {
        Arc::clone(&self.cameras[camera].names)
    }

    /// Inference workers it runs.
    pub fn workers(&self) -> usize {
        self.infer.len()
    }

    /// The inference workers' live counts, readable once the run has started them.
    pub fn worker_watches(&self) -> WorkerWatches {
        self.workers.clone()
    }

    /// Offers `tap` each frame of the first camera before resize takes it: how the live view
    /// sees the camera.
    pub fn show_to(self, tap: Arc<dyn Tap<Frame>>) -> Self {
        self.show_camera_to(0, tap)
    }

    /// [`show_to`](Self::show_to) for camera `camera`.
    pub fn show_camera_to(mut self, camera: usize, tap: Arc<dyn Tap<Frame>>) -> Self {
        self.cameras[camera].tap = Some(tap);
        self
    }

    /// Publishes the run's events to `events` rather than to a stream of its own; each
    /// source says there when it is lost and back. The stream is closed after `stopped`.
    pub fn publish_to(mut self, events: Events) -> Self {
        for camera in &mut self.cameras {
            let said = camera_events(&events, self.several, &camera.name);
            camera.source.publish_to(&said);
        }
        self.events = events;
        self
    }

    /// The stream the run's events go to: subscribe before [`run`](Self::run).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The first camera's result for every frame as it comes out, closed when the run ends:
    /// subscribe before [`run`](Self::run).
    pub fn results(&self) -> &Bus<Labelled> {
        self.results_of(0)
    }

    /// [`results`](Self::results) of camera `camera`.
    pub fn results_of(&self, camera: usize) -> &Bus<Labelled> {
        &self.cameras[camera].results
    }

    /// Views of every camera's edges' counters, in pipeline order (`resize`, `infer`,
    /// `smooth`, `sink`) camera after camera; they stay readable while the pipeline runs
    /// and after.
    pub fn edges(&self) -> Vec<EdgeWatch> {
        (0..self.cameras.len())
            .flat_map(|camera| self.edges_of(camera))
            .collect()
    }

    /// [`edges`](Self::edges) of camera `camera`.
    pub fn edges_of(&self, camera: usize) -> Vec<EdgeWatch> {
        let edges = &self.cameras[camera].edges;
        vec![
            edges.resize.0.watch(),
            edges.infer.0.watch(),
            edges.smooth.0.watch(),
            edges.sink.0.watch(),
        ]
    }

    /// Runs until every source ends or `shutdown` is triggered, then drains what is in
    /// flight. `sink` gets each label change (each label with `output.every_frame`) on this
    /// thread; `Break` stops the run as a shutdown does. The events stream gets the same
    /// labels, framed by `started` (one per camera) and `stopped` (one per camera when there
    /// are several; after a `stage_failed` for each failed stage), and is then closed, as the
    /// results are. `Err` only if a thread could not be started.
    pub fn run(
        self,
        shutdown: &Shutdown,
        sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<PipelineReport> {
        let (model, dtype) = self.model();
        let parallel = (self.workers(), self.engine.threads());
        let Pipeline {
            infer,
            cameras,
            several,
            stall_after,
            every_frame,
            events,
            workers,
            ..
        } = self;
        // Before the sources start, so that every frame's label comes after them.
        for camera in &cameras {
            let source = camera.source_name.clone();
            let started = Event::started(&model, &dtype, source, &camera.name, parallel);
            events.publish(started);
        }
        let mut camera_names = Vec::with_capacity(cameras.len());
        let mut infer_edges = Vec::with_capacity(cameras.len());
        let mut sinks = Vec::with_capacity(cameras.len());
        let mut fronts = Vec::with_capacity(cameras.len());
        let mut lanes = Vec::with_capacity(cameras.len());
        let mut smooths = Vec::with_capacity(cameras.len());
        let mut outs = Vec::with_capacity(cameras.len());
        for camera in cameras {
            let scope = several.then(|| camera.name.clone());
            let CameraPart {
                name,
                source,
                resize,
                smooth,
                names,
                edges,
                deadline,
                tap,
                results,
                ..
            } = camera;
            let (to_sink, sink_in) = edges.sink;
            camera_names.push(name.clone());
            infer_edges.push(edges.infer.1.watch());
            sinks.push(sink_in.watch());
            let resize = Tapped::new(resize, tap);
            fronts.push((scope.clone(), source, resize, edges.resize, edges.infer.0));
            lanes.push((edges.infer.1, edges.smooth.0));
            smooths.push((scope.clone(), smooth, edges.smooth.1, to_sink));
            metrics::for_camera(scope.as_deref(), || {
                metrics::record_run(&model, &dtype, deadline);
                outs.push(Out {
                    names,
                    every_frame,
                    events: camera_events(&events, several, &name),
                    results,
                    latencies: LatencyMeter::new(deadline),
                    input: sink_in,
                });
            });
        }
        let spawned = spawn_all(fronts, infer, lanes, smooths, shutdown, stall_after);
        let (handles, watchdog) = match spawned {
            Ok(running) => running,
            Err((error, handles)) => {
                // What did start stops once the edge to the missing stage is found closed.
                shutdown.trigger();
                for out in &outs {
                    out.results.close();
                }
                drop(outs);
                PipelineReport::join(handles);
                events.close();
                return Err(error);
            }
        };
        let watches = handles.iter().map(StageHandle::watch);
        workers.set(watches.filter(|watch| watch.worker.is_some()).collect());
        let clock = WallClock::now();
        deliver(&mut outs, &clock, shutdown, sink);
        let latencies: Vec<_> = outs
            .into_iter()
            .map(|out| {
                out.results.close();
                out.latencies.finish()
            })
            .collect();
        let mut report = PipelineReport::join(handles);
        watchdog.stop();
        let sinks: Vec<SinkReport> = sinks
            .iter()
            .zip(latencies)
            .map(|(edge, latency)| SinkReport {
                edge: edge.stats(),
                latency,
            })
            .collect();
        if several {
            let infer_edges = infer_edges.iter().map(EdgeWatch::stats).collect();
            report = report.of_cameras(camera_names, infer_edges, sinks);
        } else {
            report.sink = sinks.into_iter().next();
        }
        report
            .failure_events()
            .for_each(|failed| events.publish(failed));
        let seconds = clock.instant.elapsed().as_secs_f64();
        for stopped in report.stopped_events(seconds, rss::peak_bytes()) {
            events.publish(stopped);
        }
        events.close();
        Ok(report)
    }
}

impl CameraPart {
    /// `camera`'s stages and edges, its metrics labelled with its name when there are
    /// several; after the model is loaded and with its source last, so a camera does not
    /// stream into its buffers during the load.
    fn build(
        camera: &Camera<'_>,
        config: &Config,
        engine: &Engine,
        run_for: Option<Duration>,
    ) -> Result<Self, BuildError> {
        let scope = camera.several.then_some(&*camera.name);
        let locate = |error: Invalid| camera.locate(error);
        metrics::for_camera(scope, || {
            let edges = Edges {
                resize: config.edges.resize.build("resize")?,
                infer: config.edges.infer.build("infer")?,
                smooth: config.edges.smooth.build("smooth")?,
                sink: config.edges.sink.build("sink")?,
            };
            let smooth = camera.smooth.build().map_err(locate)?;
            let labels = camera.labels.build(engine)?;
            let names = labels.names();
            let smooth = smooth.with_labels(labels);
            let resize = camera.resize.build(engine).map_err(locate)?;
            let source = camera.source.build()?;
            Ok(Self {
                name: camera.name.to_string(),
                source: Limited::new(source, config.stop.after_frames, run_for),
                resize,
                smooth,
                names,
                edges,
                deadline: camera.source.frame_period(),
                tap: None,
                results: Bus::new(),
                source_name: camera.source.describe(),
            })
        })
    }
}

/// The handle a camera publishes events through: the stream itself with one camera; with
/// several, one that says the camera's name in each event.
fn camera_events(events: &Events, several: bool, name: &str) -> Events {
    if !several {
        return events.clone();
    }
    let name = name.to_owned();
    events.stamping(move |event| event.set_camera(&name))
}

/// A camera's capture and resize, with the edges around them.
type Front = (
    Option<String>,
    Limited<Box<dyn Source>>,
    Tapped<ResizeStage>,
    (EdgeSender<Frame>, EdgeReceiver<Frame>),
    EdgeSender<ModelInput>,
);
/// A camera's smoothing, between its edge from the workers and its sink.
type Back = (
    Option<String>,
    Smoother,
    EdgeReceiver<Scores>,
    EdgeSender<Smoothed>,
);

/// A thread per stage (per worker for inference): each camera's capture and resize, the
/// workers they share, each camera's smoothing; then the watchdog over them. On an error, the
/// handles of what did start.
fn spawn_all(
    fronts: Vec<Front>,
    infer: Vec<InferStage>,
    lanes: Vec<Lane<ModelInput, Scores>>,
    backs: Vec<Back>,
    shutdown: &Shutdown,
    stall_after: Duration,
) -> Result<(Vec<StageHandle>, Watchdog), (io::Error, Vec<StageHandle>)> {
    let mut handles = Vec::with_capacity(3 * backs.len() + infer.len());
    let started = (|| {
        for (scope, source, resize, (to_resize, resize_in), to_infer) in fronts {
            metrics::for_camera(scope.as_deref(), || -> io::Result<()> {
                handles.push(spawn_source(
                    "capture",
                    source,
                    to_resize,
                    shutdown.clone(),
                )?);
                let resize = spawn_stage(
                    "resize",
                    resize,
                    resize_in,
                    to_infer,
                    Probe::None,
                    shutdown.clone(),
                )?;
                handles.push(resize);
                Ok(())
            })?;
        }
        spawn_workers(
            "infer",
            infer,
            lanes,
            Probe::FrameAge,
            shutdown,
            &mut handles,
        )?;
        for (scope, smooth, smooth_in, to_sink) in backs {
            let spawned = metrics::for_camera(scope.as_deref(), || {
                let shutdown = shutdown.clone();
                spawn_stage("smooth", smooth, smooth_in, to_sink, Probe::None, shutdown)
            })?;
            handles.push(spawned);
        }
        Watchdog::spawn(&handles, shutdown.clone(), stall_after)
    })();
    match started {
        Ok(watchdog) => Ok((handles, watchdog)),
        Err(error) => Err((error, handles)),
    }
}

/// Takes the cameras' smoothed frames as they come, on the caller's thread, until every
/// camera's edge closes or the run is aborted, or `sink` says stop, which stops the run as a
/// shutdown does.
fn deliver(
    outs: &mut [Out],
    clock: &WallClock,
    shutdown: &Shutdown,
    mut sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
) {
    let mut open: Vec<usize> = (0..outs.len()).collect();
    while !open.is_empty() && !shutdown.is_aborted() {
        let mut ready = Select::new();
        ready.recv(shutdown.aborted());
        for &camera in &open {
            outs[camera].input.ready_in(&mut ready);
        }
        let Some(at) = ready.ready().checked_sub(1) else {
            break;
        };
        let camera = open[at];
        let out = &mut outs[camera];
        let smoothed = match out.input.try_recv() {
            Ok(smoothed) => smoothed,
            Err(TryRecvError::Empty) => continue,
            Err(TryRecvError::Disconnected) => {
                open.remove(at);
                continue;
            }
        };
        let Some(event) = out.publish(smoothed, clock) else {
            continue;
        };
        if sink(&event).is_break() {
            shutdown.trigger();
            break;
        }
    }
}

/// A camera's end of the pipeline, on the caller's thread: each smoothed frame timed once and
/// published.
struct Out {
    names: Arc<Names>,
    every_frame: bool,
    events: Events,
    results: Bus<Labelled>,
    latencies: LatencyMeter,
    input: EdgeReceiver<Smoothed>,
}

impl Out {
    /// Publishes a frame's result, and its label event when it makes one.
    fn publish(&mut self, smoothed: Smoothed, clock: &WallClock) -> Option<LabelEvent> {
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
            captured: clock.at(stamp.captured_at),
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
