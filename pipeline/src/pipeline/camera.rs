//! One camera's part of the pipeline: built ([`CameraPart`]), then running ([`Running`]) —
//! its capture, resize and smoothing threads, its lane through the shared inference workers
//! and its end on the pipeline's thread ([`Out`]) — and finished into its report.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::BuildError;
use crate::bus::Bus;
use crate::config::{Camera, Config};
use crate::error::Invalid;
use crate::events::{Event, Events, Label};
use crate::frame::{Frame, LabelEvent, Labelled, ModelInput, Scores, Smoothed};
use crate::infer::Engine;
use crate::labels::Names;
use crate::metrics;
use crate::queue::{EdgeReceiver, EdgeSender, EdgeWatch};
use crate::resize::ResizeStage;
use crate::runner::{
    spawn_source, spawn_stage, CameraReport, Lane, LatencyMeter, PipelineReport, Probe, SinkReport,
    StageHandle, Watchdog,
};
use crate::smooth::Smoother;
use crate::source::Limited;
use crate::stage::{Replace, Shutdown, Source, Swap, Tap, Tapped};

struct Edges {
    resize: (EdgeSender<Frame>, EdgeReceiver<Frame>),
    infer: (EdgeSender<ModelInput>, EdgeReceiver<ModelInput>),
    smooth: (EdgeSender<Scores>, EdgeReceiver<Scores>),
    sink: (EdgeSender<Smoothed>, EdgeReceiver<Smoothed>),
}

/// One camera's part, built, before its threads start: everything but inference.
pub struct CameraPart {
    pub(super) name: String,
    /// `[cameras]`' several: its metrics and events say its name.
    several: bool,
    source: Limited<Box<dyn Source>>,
    resize: ResizeStage,
    smooth: Smoother,
    pub(super) names: Arc<Names>,
    edges: Edges,
    /// A frame later than this (the source's frame period) counts as a deadline miss.
    deadline: Option<Duration>,
    /// Offered resize's input: the live view.
    pub(super) tap: Option<Arc<dyn Tap<Frame>>>,
    pub(super) results: Bus<Labelled>,
    /// What the `started` event names.
    source_name: String,
}

impl CameraPart {
    /// `camera`'s stages and edges, its metrics labelled with its name when there are
    /// several; after the model is loaded and with its source last, so a camera does not
    /// stream into its buffers during the load.
    pub fn build(
        camera: &Camera<'_>,
        config: &Config,
        engine: &Engine,
    ) -> Result<Self, BuildError> {
        let scope = camera.several.then_some(&*camera.name);
        let locate = |error: Invalid| camera.locate(error);
        let (run_for, _) = config.stop.check()?;
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
                several: camera.several,
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
        .map_err(|error| match camera.several {
            true => BuildError::Camera {
                camera: camera.name.to_string(),
                error: Box::new(error),
            },
            false => error,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the label indices of its results name.
    pub fn names(&self) -> Arc<Names> {
        Arc::clone(&self.names)
    }

    /// Its result for every frame as it comes out: subscribe before it starts.
    pub fn results(&self) -> &Bus<Labelled> {
        &self.results
    }

    /// Offers `tap` each frame before resize takes it: how the live view sees the camera.
    pub fn show_to(&mut self, tap: Arc<dyn Tap<Frame>>) {
        self.tap = Some(tap);
    }

    /// Its edges' counters, in pipeline order: `resize`, `infer`, `smooth`, `sink`.
    pub fn edges(&self) -> Vec<EdgeWatch> {
        let edges = &self.edges;
        vec![
            edges.resize.0.watch(),
            edges.infer.0.watch(),
            edges.smooth.0.watch(),
            edges.sink.0.watch(),
        ]
    }

    /// The name its metrics say, with several cameras.
    fn scope(&self) -> Option<&str> {
        self.several.then_some(self.name.as_str())
    }

    /// Says where its source says it was lost and back.
    pub(super) fn publish_to(&mut self, events: &Events) {
        let said = camera_events(events, self.several, &self.name);
        self.source.publish_to(&said);
    }

    /// The `started` event for it, running `model`.
    pub(super) fn started(&self, run: &RunSettings) -> Event {
        let (model, dtype) = &run.model;
        let source = self.source_name.clone();
        Event::started(model, dtype, source, &self.name, run.parallel)
    }

    /// Starts its capture, resize and smoothing, each on its own thread under its own stop (a
    /// child of `shutdown`), and gives its lane into the shared workers. On an error, the
    /// handles of what did start.
    pub(super) fn start(
        self,
        shutdown: &Shutdown,
        run: &RunSettings,
    ) -> Result<(Running, Lane<ModelInput, Scores>), NotStarted> {
        let scope = self.scope().map(str::to_owned);
        let stop = shutdown.child();
        let Self {
            name,
            source,
            resize,
            smooth,
            names,
            edges,
            deadline,
            tap,
            results,
            several,
            ..
        } = self;
        let (resize, replace_resize) = Swap::new(resize);
        let (smooth, replace_smooth) = Swap::new(smooth);
        let (to_sink, sink_in) = edges.sink;
        let infer = edges.infer.1.watch();
        let lane = (edges.infer.1, edges.smooth.0);
        let mut handles = Vec::with_capacity(3);
        let started = metrics::for_camera(scope.as_deref(), || -> io::Result<Out> {
            metrics::record_run(&run.model.0, &run.model.1, deadline);
            let (to_resize, resize_in) = edges.resize;
            handles.push(spawn_source("capture", source, to_resize, stop.clone())?);
            let (resize, to_infer) = (Tapped::new(resize, tap), edges.infer.0);
            let stop_all = shutdown.clone();
            let resize = spawn_stage("resize", resize, resize_in, to_infer, Probe::None, stop_all);
            handles.push(resize?);
            let (smooth_in, stop_all) = (edges.smooth.1, shutdown.clone());
            let smooth = spawn_stage("smooth", smooth, smooth_in, to_sink, Probe::None, stop_all);
            handles.push(smooth?);
            Ok(Out {
                names,
                every_frame: run.every_frame,
                events: camera_events(&run.events, several, &name),
                results,
                latencies: LatencyMeter::new(deadline),
                input: sink_in,
            })
        });
        let out = match started {
            Ok(out) => out,
            Err(error) => return Err((error, handles)),
        };
        let running = Running {
            name,
            scope,
            stop,
            handles,
            resize: replace_resize,
            smooth: replace_smooth,
            infer,
            deadline,
            out,
            watchdog: None,
            retired: None,
            added: None,
        };
        Ok((running, lane))
    }
}

/// Why threads did not start, and the handles of those that did.
pub(super) type NotStarted = (io::Error, Vec<StageHandle>);

/// What every camera of a run shares: the model running, how it runs, what reaches the events.
pub(super) struct RunSettings {
    /// The model file's name and its weights' type.
    pub(super) model: (String, String),
    /// Workers, and threads each.
    pub(super) parallel: (usize, usize),
    pub(super) every_frame: bool,
    pub(super) events: Events,
}

/// A camera running: its threads, where its stages' replacements go, and its end.
pub(super) struct Running {
    pub(super) name: String,
    /// The name its metrics say, with several cameras.
    scope: Option<String>,
    /// Its own stop: its source's, under the run's.
    stop: Shutdown,
    /// Capture, resize, smooth.
    handles: Vec<StageHandle>,
    resize: Replace<ResizeStage>,
    smooth: Replace<Smoother>,
    /// Its edge into the shared workers.
    infer: EdgeWatch,
    deadline: Option<Duration>,
    pub(super) out: Out,
    /// Watches its stages for a stall.
    watchdog: Option<Watchdog>,
    /// Stopped by a reload.
    pub(super) retired: Option<Retired>,
    /// When a reload started it, after the run.
    pub(super) added: Option<Instant>,
}

/// Why a reload stopped a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retired {
    /// Gone from the config: it says `stopped`.
    Removed,
    /// A camera of its name took over (its source or label set changed).
    Replaced,
}

impl Running {
    /// Watches its stages for a stall; its stall counts say its name, with several cameras.
    pub(super) fn watch(&mut self, shutdown: &Shutdown, stall_after: Duration) -> io::Result<()> {
        let watchdog = metrics::for_camera(self.scope.as_deref(), || {
            Watchdog::spawn(&self.handles, shutdown.clone(), stall_after)
        })?;
        self.watchdog = Some(watchdog);
        Ok(())
    }

    /// Takes `resize` and `smooth` from its next frame on, the old ones finishing what was
    /// made for them.
    pub(super) fn replace(&self, resize: Option<ResizeStage>, smooth: Option<Smoother>) {
        // A stage that has ended takes nothing more: nothing to replace.
        if let Some(resize) = resize {
            let _ = self.resize.send(resize);
        }
        if let Some(smooth) = smooth {
            let _ = self.smooth.send(smooth);
        }
    }

    /// Says the model its frames now run on, instead of `was`.
    pub(super) fn record_model(&self, was: &(String, String), model: &(String, String)) {
        metrics::for_camera(self.scope.as_deref(), || {
            metrics::record_model_retired(&was.0, &was.1);
            metrics::record_run(&model.0, &model.1, self.deadline);
        });
    }

    /// Stops its source; what is in flight drains, and its end closes.
    pub(super) fn retire(&mut self, why: Retired) {
        self.retired = Some(why);
        self.stop.trigger();
    }

    /// Its report, once its end has closed (or the run is over): every thread joined.
    pub(super) fn finish(self) -> CameraReport {
        let Out {
            results,
            latencies,
            input,
            ..
        } = self.out;
        results.close();
        // Its smoothing, if still sending (a run stopped by its sink), finds the edge gone.
        let sink = input.watch();
        drop(input);
        let mut stages = PipelineReport::join(self.handles).stages;
        if let Some(watchdog) = self.watchdog {
            watchdog.stop();
        }
        for stage in &mut stages {
            stage.camera.clone_from(&self.scope);
        }
        CameraReport {
            name: self.name,
            stages,
            infer: self.infer.stats(),
            sink: SinkReport {
                edge: sink.stats(),
                latency: latencies.finish(),
            },
            seconds: self.added.map(|at| at.elapsed().as_secs_f64()),
        }
    }
}

/// The handle a camera publishes events through: the stream itself with one camera; with
/// several, one that says the camera's name in each event.
pub(super) fn camera_events(events: &Events, several: bool, name: &str) -> Events {
    if !several {
        return events.clone();
    }
    let name = name.to_owned();
    events.stamping(move |event| event.set_camera(&name))
}

/// A camera's end of the pipeline, on the caller's thread: each smoothed frame timed once and
/// published.
pub(super) struct Out {
    names: Arc<Names>,
    every_frame: bool,
    events: Events,
    results: Bus<Labelled>,
    latencies: LatencyMeter,
    pub(super) input: EdgeReceiver<Smoothed>,
}

impl Out {
    /// Publishes a frame's result, and its label event when it makes one.
    pub(super) fn publish(&mut self, smoothed: Smoothed, clock: &WallClock) -> Option<LabelEvent> {
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
pub(super) struct WallClock {
    pub(super) instant: Instant,
    system: SystemTime,
}

impl WallClock {
    pub(super) fn now() -> Self {
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
