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

mod camera;

use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

pub use self::camera::CameraPart;
use self::camera::{NotStarted, Retired, RunSettings, Running, WallClock};
use crate::bus::Bus;
use crate::config::Config;
use crate::error::Invalid;
use crate::events::{Event, Events};
use crate::frame::{LabelEvent, Labelled, ModelInput, Scores};
use crate::infer::stage::InferStage;
use crate::infer::{Engine, InferError, ModelError};
use crate::labels::{LabelsError, Names};
use crate::queue::EdgeWatch;
use crate::resize::ResizeStage;
use crate::rss;
use crate::runner::{
    spawn_workers, CameraReport, Lanes, PipelineReport, Probe, StageHandle, Watchdog, WorkerWatches,
};
use crate::smooth::Smoother;
use crate::source::SourceError;
use crate::stage::{Replace, Shutdown, Swap, Tap};

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

/// A built pipeline, ready to run.
pub struct Pipeline {
    engine: Arc<Engine>,
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
    /// What a reload tells the run.
    changes: (Sender<Change>, Receiver<Change>),
}

/// What a reload tells a running pipeline; applied between two frames, on its thread.
pub enum Change {
    /// The model: a stage per worker, in worker order, with the file's name and weights' type,
    /// and each camera's resize for it (by name).
    Model {
        infer: Vec<InferStage>,
        model: (String, String),
        resize: Vec<(String, ResizeStage)>,
    },
    /// A camera's resize and smoothing, from its next frame on.
    Stages(Box<Restage>),
    /// A camera to start; one of its name already running stops once it has (its source or
    /// label set changed).
    Add(Box<CameraPart>),
    /// A camera to stop: its frames in flight drain, and it says `stopped`.
    Remove(String),
}

/// A camera's new resize and smoothing, each if it changed.
pub struct Restage {
    pub camera: String,
    pub resize: Option<ResizeStage>,
    pub smooth: Option<Smoother>,
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
        let (_, stall_after) = config.stop.check()?;
        let workers = config.infer.check()?;
        let engine = Arc::new(config.infer.build().map_err(BuildError::Model)?);
        let infer = (0..workers)
            .map(|_| InferStage::new(&engine))
            .collect::<Result<_, _>>()
            .map_err(BuildError::Session)?;
        let events = Events::new();
        let cameras = cameras
            .iter()
            .map(|camera| CameraPart::build(camera, config, &engine))
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
            changes: crossbeam_channel::unbounded(),
        };
        Ok(pipeline.publish_to(events))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for a reload that builds a camera's parts for the model running.
    pub fn shared_engine(&self) -> Arc<Engine> {
        Arc::clone(&self.engine)
    }

    /// The model file's name and its weights' type, as the `started` event names them.
    pub fn model(&self) -> (String, String) {
        self.engine.model()
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
    pub fn show_to(self, tap: Arc<dyn Tap<crate::frame::Frame>>) -> Self {
        self.show_camera_to(0, tap)
    }

    /// [`show_to`](Self::show_to) for camera `camera`.
    pub fn show_camera_to(mut self, camera: usize, tap: Arc<dyn Tap<crate::frame::Frame>>) -> Self {
        self.cameras[camera].show_to(tap);
        self
    }

    /// Publishes the run's events to `events` rather than to a stream of its own; each
    /// source says there when it is lost and back. The stream is closed after `stopped`.
    pub fn publish_to(mut self, events: Events) -> Self {
        for camera in &mut self.cameras {
            camera.publish_to(&events);
        }
        self.events = events;
        self
    }

    /// Where a reload sends what changed to the run; a change sent before the run starts is
    /// applied as it starts, one sent after it ends is dropped.
    pub fn changes(&self) -> Sender<Change> {
        self.changes.0.clone()
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
        self.cameras[camera].edges()
    }

    /// Runs until every source ends or `shutdown` is triggered, then drains what is in
    /// flight. `sink` gets each label change (each label with `output.every_frame`) on this
    /// thread; `Break` stops the run as a shutdown does. The events stream gets the same
    /// labels, framed by `started` (one per camera) and `stopped` (one per camera when there
    /// are several; after a `stage_failed` for each failed stage), and is then closed, as the
    /// results are. What a reload sends ([`changes`](Self::changes)) is applied between two
    /// frames. `Err` only if a thread could not be started.
    pub fn run(
        self,
        shutdown: &Shutdown,
        mut sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<PipelineReport> {
        let settings = RunSettings {
            model: self.model(),
            parallel: (self.workers(), self.engine.threads()),
            every_frame: self.every_frame,
            events: self.events.clone(),
        };
        let Pipeline {
            engine,
            infer,
            cameras,
            several,
            stall_after,
            events,
            workers,
            changes: (_, changes),
            ..
        } = self;
        // Its sessions hold what they run: a model a reload replaces is not kept here.
        drop(engine);
        // Before the sources start, so that every frame's label comes after them.
        for camera in &cameras {
            events.publish(camera.started(&settings));
        }
        let mut run = Run {
            running: Vec::with_capacity(cameras.len()),
            finished: Vec::new(),
            workers: Vec::with_capacity(infer.len()),
            replace_infer: Vec::new(),
            lanes: None,
            settings,
            stall_after,
            shutdown: shutdown.clone(),
        };
        let watchdog = match run.start(cameras, infer) {
            Ok(watchdog) => watchdog,
            Err((error, orphans)) => {
                // What did start stops once the edge to the missing stage is found closed.
                shutdown.trigger();
                run.lanes = None;
                PipelineReport::join(orphans);
                drop(run.finish(several));
                events.close();
                return Err(error);
            }
        };
        let watches = run.workers.iter().map(StageHandle::watch);
        workers.set(watches.collect());
        let clock = WallClock::now();
        let mut changes = Some(changes);
        while !run.running.is_empty() && !shutdown.is_aborted() {
            let mut ready = Select::new();
            ready.recv(shutdown.aborted());
            let changes_at = changes.as_ref().map(|changes| ready.recv(changes));
            let first = changes_at.map_or(1, |at| at + 1);
            for camera in &run.running {
                camera.out.input.ready_in(&mut ready);
            }
            let index = ready.ready();
            if index == 0 {
                break;
            }
            if Some(index) == changes_at {
                match changes.as_ref().map(Receiver::try_recv) {
                    Some(Ok(change)) => run.apply(change),
                    Some(Err(TryRecvError::Disconnected)) => changes = None,
                    _ => {}
                }
                continue;
            }
            let at = index - first;
            let out = &mut run.running[at].out;
            match out.input.try_recv() {
                Ok(smoothed) => {
                    let Some(event) = out.publish(smoothed, &clock) else {
                        continue;
                    };
                    if sink(&event).is_break() {
                        shutdown.trigger();
                        break;
                    }
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    let camera = run.running.remove(at);
                    run.end(camera, &clock);
                }
            }
        }
        let report = run.finish(several);
        watchdog.stop();
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

/// A run's cameras and the workers they share, as a reload changes them.
struct Run {
    running: Vec<Running>,
    /// Cameras whose stream ended, in the order they ended.
    finished: Vec<CameraReport>,
    /// The inference workers' threads.
    workers: Vec<StageHandle>,
    /// Where each worker's replacement goes, in worker order.
    replace_infer: Vec<Replace<InferStage>>,
    lanes: Option<Lanes<ModelInput, Scores>>,
    settings: RunSettings,
    stall_after: Duration,
    shutdown: Shutdown,
}

impl Run {
    /// A thread per stage (per worker for inference): each camera's capture, resize and
    /// smoothing, the workers they share; then the watchdogs over them. On an error, the
    /// handles of what did start and is not in `running`.
    fn start(
        &mut self,
        cameras: Vec<CameraPart>,
        infer: Vec<InferStage>,
    ) -> Result<Watchdog, NotStarted> {
        let mut lanes = Vec::with_capacity(cameras.len());
        for camera in cameras {
            let (running, lane) = camera.start(&self.shutdown, &self.settings)?;
            self.running.push(running);
            lanes.push(lane);
        }
        let (infer, replace): (Vec<_>, Vec<_>) = infer.into_iter().map(Swap::new).unzip();
        self.replace_infer = replace;
        let (probe, shutdown) = (Probe::FrameAge, &self.shutdown);
        let spawned = spawn_workers("infer", infer, lanes, probe, shutdown, &mut self.workers);
        self.lanes = Some(spawned.map_err(|error| (error, Vec::new()))?);
        // A watchdog per camera, so its stall counts say its name, and one over the workers.
        for camera in &mut self.running {
            let watched = camera.watch(&self.shutdown, self.stall_after);
            watched.map_err(|error| (error, Vec::new()))?;
        }
        Watchdog::spawn(&self.workers, self.shutdown.clone(), self.stall_after)
            .map_err(|error| (error, Vec::new()))
    }

    /// Applies a reload's change, between two frames.
    fn apply(&mut self, change: Change) {
        match change {
            Change::Model {
                infer,
                model,
                resize,
            } => {
                // A worker that has ended takes nothing more.
                for (replace, stage) in self.replace_infer.iter().zip(infer) {
                    let _ = replace.send(stage);
                }
                for (name, resize) in resize {
                    if let Some(camera) = self.camera(&name) {
                        camera.replace(Some(resize), None);
                    }
                }
                for camera in &self.running {
                    camera.record_model(&self.settings.model, &model);
                }
                self.settings.model = model;
            }
            Change::Stages(restage) => {
                let Restage {
                    camera,
                    resize,
                    smooth,
                } = *restage;
                if let Some(camera) = self.camera(&camera) {
                    camera.replace(resize, smooth);
                }
            }
            Change::Add(part) => {
                let mut part = *part;
                part.publish_to(&self.settings.events);
                let name = part.name().to_owned();
                let started = part.started(&self.settings);
                let (mut running, lane) = match part.start(&self.shutdown, &self.settings) {
                    Ok(started) => started,
                    Err((error, handles)) => {
                        tracing::error!(camera = %name, "cannot start the camera: {error}");
                        PipelineReport::join(handles);
                        return;
                    }
                };
                running.added = Some(Instant::now());
                if let Err(error) = running.watch(&self.shutdown, self.stall_after) {
                    tracing::warn!(camera = %name, "no stall watch for the camera: {error}");
                }
                if let Some(lanes) = &self.lanes {
                    lanes.add(lane);
                }
                if let Some(replaced) = self.camera(&name) {
                    replaced.retire(Retired::Replaced);
                }
                self.settings.events.publish(started);
                self.running.push(running);
            }
            Change::Remove(name) => {
                if let Some(camera) = self.camera(&name) {
                    camera.retire(Retired::Removed);
                }
            }
        }
    }

    /// The running camera named `name` that no reload has retired.
    fn camera(&mut self, name: &str) -> Option<&mut Running> {
        let mut cameras = self.running.iter_mut();
        cameras.find(|camera| camera.name == name && camera.retired.is_none())
    }

    /// A camera whose end closed: one a reload removed says `stopped` now; one that ended
    /// by itself waits for the run's report.
    fn end(&mut self, camera: Running, clock: &WallClock) {
        let retired = camera.retired;
        let report = camera.finish();
        match retired {
            None => self.finished.push(report),
            Some(Retired::Replaced) => {}
            Some(Retired::Removed) => {
                let report = PipelineReport {
                    stages: Vec::new(),
                    sink: None,
                    cameras: vec![report],
                };
                report
                    .failure_events()
                    .for_each(|failed| self.settings.events.publish(failed));
                let seconds = clock.instant.elapsed().as_secs_f64();
                for mut stopped in report.stopped_events(seconds, rss::peak_bytes()) {
                    if let Event::Stopped(stopped) = &mut stopped {
                        stopped.reason = "removed".to_owned();
                    }
                    self.settings.events.publish(stopped);
                }
            }
        }
    }

    /// Every camera's report and the workers': their threads joined. With one camera, its
    /// stages around the workers', in pipeline order.
    fn finish(mut self, several: bool) -> PipelineReport {
        let mut cameras = std::mem::take(&mut self.finished);
        cameras.extend(self.running.drain(..).map(Running::finish));
        let workers = PipelineReport::join(self.workers).stages;
        if several {
            return PipelineReport {
                stages: workers,
                sink: None,
                cameras,
            };
        }
        let Some(camera) = cameras.pop() else {
            return PipelineReport::join([]);
        };
        let mut stages = camera.stages;
        let smooth = stages.split_off(stages.len().min(2));
        stages.extend(workers);
        stages.extend(smooth);
        PipelineReport {
            stages,
            sink: Some(camera.sink),
            // For its `stopped` event; dropped from the report returned.
            cameras: Vec::new(),
        }
    }
}
