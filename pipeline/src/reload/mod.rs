//! Reloading a running daemon's config (SIGHUP, `scened reload`): only what changed restarts,
//! and a bad config changes nothing.
//!
//! [`Reloader::reload`] reads the file again and checks all of it; a new model is loaded,
//! given its sessions and run once on a black frame; each new or reopened camera is built
//! (its source opened) and followed by the outputs — all before anything running is touched.
//! Only then are the changes sent to the running pipeline ([`Change`]), which applies them
//! between two frames: the workers take the new model with the next frame, a camera's resize
//! and smoothing are swapped in place, a camera added starts, a removed one drains and says
//! `stopped`. A camera reopens (its smoothing cold) only when its source or its label set
//! changed; a new `[output.mqtt]` reconnects the MQTT clients, nothing else. What cannot
//! change while running ([`Plan::refused`]) keeps its old value, by name.

mod ask;

pub use ask::{ask, on_hangup};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crossbeam_channel::Sender;
use tracing::{error, info};

use crate::config::{Camera, Config};
use crate::contain::lock;
use crate::daemon::{self, Daemon, Outputs};
use crate::events::{self, Event, Events, ReloadFailed, Reloaded};
use crate::infer::stage::InferStage;
use crate::infer::Engine;
use crate::labels::Names;
use crate::metrics;
use crate::pipeline::{CameraPart, Change, Restage};
use crate::runner::WorkerWatches;
use crate::telemetry::{ConfigLoaded, RunInfo};

/// What a new config changes against the one running.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `[infer]` changed: a new engine.
    pub model: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Cameras whose source changed.
    pub reopened: Vec<String>,
    /// Cameras whose resize settings changed.
    pub resized: Vec<String>,
    /// Cameras whose smoothing or labels settings changed.
    pub smoothed: Vec<String>,
    /// Keys that cannot change while running; the new config keeps their old values.
    pub refused: Vec<String>,
}

impl Plan {
    /// What `new` changes against `old`; the keys it may not change are set back to `old`'s.
    pub fn between(old: &Config, new: &mut Config) -> Self {
        let mut plan = Self::default();
        if old.telemetry != new.telemetry {
            let listen = old.telemetry.listen != new.telemetry.listen;
            plan.refuse(if listen {
                "telemetry.listen"
            } else {
                "telemetry"
            });
            new.telemetry = old.telemetry.clone();
        }
        if old.output.every_frame != new.output.every_frame {
            plan.refuse("output.every_frame");
            new.output.every_frame = old.output.every_frame;
        }
        if old.edges != new.edges {
            plan.refuse("edges");
            new.edges = old.edges;
        }
        if old.stop != new.stop {
            plan.refuse("stop");
            new.stop = old.stop;
        }
        if old.infer.workers.resolve() != new.infer.workers.resolve() {
            plan.refuse("infer.workers");
        }
        new.infer.workers = old.infer.workers;
        if old.cameras.is_empty() != new.cameras.is_empty() {
            plan.refuse("cameras");
            new.source = old.source.clone();
            new.cameras = old.cameras.clone();
        }
        plan.model = old.infer != new.infer;
        let (olds, news) = (by_name(old), by_name(new));
        for (name, camera) in &news {
            let Some(was) = olds.get(name) else {
                plan.added.push(name.clone());
                continue;
            };
            if was.source != camera.source {
                plan.reopened.push(name.clone());
                continue;
            }
            if was.resize != camera.resize {
                plan.resized.push(name.clone());
            }
            if was.smooth != camera.smooth || was.labels != camera.labels {
                plan.smoothed.push(name.clone());
            }
        }
        let gone = olds.keys().filter(|name| !news.contains_key(*name));
        plan.removed.extend(gone.cloned());
        plan
    }

    fn refuse(&mut self, key: &str) {
        self.refused.push(key.to_owned());
    }
}

/// A config's cameras by name.
fn by_name(config: &Config) -> BTreeMap<String, Camera<'_>> {
    let cameras = config.cameras().into_iter();
    cameras
        .map(|camera| (camera.name.to_string(), camera))
        .collect()
}

/// Reads the config again; the error names the file and the field.
pub type Load = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Reloads a running daemon's config: made before the daemon runs, used from any thread.
pub struct Reloader {
    load: Load,
    /// The file, as events name it.
    file: String,
    running: Mutex<Running>,
    outputs: Arc<Mutex<Outputs>>,
    changes: Sender<Change>,
    events: Events,
    workers: WorkerWatches,
}

/// The config running and what was built from it.
struct Running {
    config: Config,
    engine: Arc<Engine>,
    /// Each camera's label names: a camera whose set changes reopens.
    names: BTreeMap<String, Arc<Names>>,
    reloads: u64,
    failed: u64,
}

/// What a reload builds before it touches anything.
struct Built {
    engine: Option<(Arc<Engine>, Vec<InferStage>)>,
    /// Cameras to start (`true`: new, not reopened).
    parts: Vec<(CameraPart, bool)>,
    /// Camera → its new resize and smoothing.
    stages: Vec<Change>,
    resize: Vec<(String, crate::resize::ResizeStage)>,
    names: BTreeMap<String, Arc<Names>>,
}

impl Reloader {
    /// For `daemon`, started from `config` (read from `file` by `load`).
    pub fn new(daemon: &Daemon, config: Config, file: String, load: Load) -> Self {
        let pipeline = daemon.pipeline();
        let names = pipeline.camera_names().into_iter().enumerate();
        let names = names.map(|(at, name)| (name, pipeline.names_of(at)));
        let reloader = Self {
            load,
            file,
            running: Mutex::new(Running {
                config,
                engine: pipeline.shared_engine(),
                names: names.collect(),
                reloads: 0,
                failed: 0,
            }),
            outputs: daemon.outputs(),
            changes: pipeline.changes(),
            events: pipeline.events().clone(),
            workers: pipeline.worker_watches(),
        };
        reloader.say_loaded(&lock(&reloader.running));
        reloader
    }

    /// Reloads the config: applies what changed, or, if anything in it is bad, nothing. Either
    /// way it is said: an event, a log line, `scened_config_reloads_total`, `/status`.
    pub fn reload(&self) -> Event {
        let mut running = lock(&self.running);
        let outcome = self.try_reload(&mut running);
        metrics::record_reload(outcome.is_ok());
        let event = match outcome {
            Ok(reloaded) => {
                running.reloads += 1;
                info!(file = %self.file, model = %reloaded.model, "config reloaded");
                Event::Reloaded(reloaded)
            }
            Err(why) => {
                running.failed += 1;
                error!("reload of {} changed nothing: {why}", self.file);
                Event::ReloadFailed(ReloadFailed {
                    ts: events::now(),
                    file: self.file.clone(),
                    error: why,
                })
            }
        };
        self.say_loaded(&running);
        self.events.publish(event.clone());
        event
    }

    fn say_loaded(&self, running: &Running) {
        let outputs = lock(&self.outputs);
        if let Some(telemetry) = &outputs.telemetry {
            telemetry.config_loaded(ConfigLoaded {
                loaded_at: events::timestamp(SystemTime::now()),
                reloads: running.reloads,
                failed_reloads: running.failed,
            });
        }
    }

    fn try_reload(&self, running: &mut Running) -> Result<Reloaded, String> {
        let mut config = (self.load)()?;
        config.check().map_err(|error| error.to_string())?;
        let plan = Plan::between(&running.config, &mut config);
        let built = build(&plan, &config, running)?;
        let engine = built.engine.as_ref().map(|(engine, _)| engine);
        let engine = Arc::clone(engine.unwrap_or(&running.engine));
        let model = engine.model();
        let Built {
            engine: new_engine,
            mut parts,
            stages,
            resize,
            names,
        } = built;
        // Touching nothing yet: the cameras added get their MQTT clients under the new
        // settings, each name claimed.
        let added = parts.iter().filter(|(_, added)| *added);
        let added: Vec<String> = added.map(|(part, _)| part.name().to_owned()).collect();
        let several = !config.cameras.is_empty();
        let claimed = daemon::claimed(config.output.mqtt.as_ref(), &added, several);
        let mut clients = claimed.map_err(|e| e.to_string())?.into_iter();
        let mut outputs = lock(&self.outputs);
        // The cameras kept move to new MQTT settings; a failure there puts the old back.
        let kept = running
            .names
            .keys()
            .filter(|name| !plan.removed.contains(name));
        let kept: Vec<String> = kept.cloned().collect();
        let mqtt = outputs.reconnect_mqtt(config.output.mqtt.clone(), &kept);
        let mqtt = mqtt.map_err(|e| e.to_string())?;
        // Reopened: its source, or its label set under the new model, changed.
        let reopened = parts.iter().filter(|(_, added)| !added);
        let reopened: Vec<String> = reopened.map(|(part, _)| part.name().to_owned()).collect();
        for (part, added) in &mut parts {
            let run = RunInfo {
                model: model.0.clone(),
                dtype: model.1.clone(),
                names: part.names(),
                edges: part.edges(),
                workers: self.workers.clone(),
            };
            let client = if *added { clients.next() } else { None };
            outputs
                .follow(part, run, *added, client)
                .map_err(|e| e.to_string())?;
        }
        let model_changed = new_engine.is_some();
        if let Some((_, infer)) = new_engine {
            let _ = self.changes.send(Change::Model {
                infer,
                model: model.clone(),
                resize,
            });
            if let Some(telemetry) = &outputs.telemetry {
                telemetry.model_runs(&model.0, &model.1);
            }
        }
        for change in stages {
            let _ = self.changes.send(change);
        }
        for (part, _) in parts {
            let _ = self.changes.send(Change::Add(Box::new(part)));
        }
        for name in &plan.removed {
            let _ = self.changes.send(Change::Remove(name.clone()));
            outputs.forget(name);
        }
        let mut changed: Vec<String> = plan.resized.clone();
        changed.extend(plan.smoothed.iter().cloned());
        changed.retain(|name| !reopened.contains(name));
        changed.sort();
        changed.dedup();
        running.config = config;
        running.engine = engine;
        running.names = names;
        Ok(Reloaded {
            ts: events::now(),
            file: self.file.clone(),
            model: model.0,
            dtype: model.1,
            model_changed,
            cameras_added: plan.added,
            cameras_removed: plan.removed,
            cameras_reopened: reopened,
            cameras_changed: changed,
            reconnected: mqtt.then(|| "output.mqtt".to_owned()).into_iter().collect(),
            refused: plan.refused,
        })
    }
}

/// Builds what `plan` needs from `config`: the model run once, each camera's new parts.
fn build(plan: &Plan, config: &Config, running: &Running) -> Result<Built, String> {
    let new_engine = match plan.model {
        true => {
            let engine = config.infer.build().map_err(|e| format!("infer: {e}"))?;
            let engine = Arc::new(engine);
            let workers = config.infer.workers.resolve();
            let mut infer = (0..workers)
                .map(|_| InferStage::new(&engine))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("infer: {e}"))?;
            if let Some(first) = infer.first_mut() {
                first
                    .warm_up(&engine)
                    .map_err(|e| format!("infer: the model's first frame: {e}"))?;
            }
            Some((engine, infer))
        }
        false => None,
    };
    let engine = new_engine
        .as_ref()
        .map_or(&running.engine, |(engine, _)| engine);
    let mut built = Built {
        engine: None,
        parts: Vec::new(),
        stages: Vec::new(),
        resize: Vec::new(),
        names: BTreeMap::new(),
    };
    let named = |name: &str, error: String| match config.cameras.is_empty() {
        true => error,
        false => format!("cameras.{name}: {error}"),
    };
    for camera in config.cameras() {
        let name = camera.name.to_string();
        let labels = camera.labels.build(engine);
        let labels = labels.map_err(|e| named(&name, e.to_string()))?;
        let names = labels.names();
        let added = plan.added.contains(&name);
        let relabelled = running.names.get(&name).is_some_and(|was| **was != *names);
        if added || relabelled || plan.reopened.contains(&name) {
            let part = CameraPart::build(&camera, config, engine).map_err(|e| e.to_string())?;
            built.parts.push((part, added));
        } else {
            let resize = || camera.resize.build(engine).map_err(|e| camera.locate(e));
            let resize = resize().map_err(|e| e.to_string())?;
            let smooth = match plan.smoothed.contains(&name) {
                true => Some(
                    camera
                        .smooth
                        .build()
                        .map_err(|e| camera.locate(e).to_string())?,
                ),
                false => None,
            };
            let smooth = smooth.map(|smooth| smooth.with_labels(labels));
            if plan.model {
                built.resize.push((name.clone(), resize));
                if smooth.is_some() {
                    built.stages.push(Change::Stages(Box::new(Restage {
                        camera: name.clone(),
                        resize: None,
                        smooth,
                    })));
                }
            } else if smooth.is_some() || plan.resized.contains(&name) {
                let resize = plan.resized.contains(&name).then_some(resize);
                built.stages.push(Change::Stages(Box::new(Restage {
                    camera: name.clone(),
                    resize,
                    smooth,
                })));
            }
        }
        built.names.insert(name, names);
    }
    built.engine = new_engine;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).expect("a valid config")
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let old = config("[source]\nkind = \"synthetic\"\n");
        let mut new = old.clone();
        assert_eq!(Plan::between(&old, &mut new), Plan::default());
    }

    #[test]
    fn a_model_swap_and_a_new_camera_are_planned_and_a_new_listen_is_refused_and_kept() {
        let old = config(
            "[telemetry]\nlisten = \"127.0.0.1:9898\"\n\
             [cameras.a.source]\nkind = \"synthetic\"\n\
             [cameras.b.source]\nkind = \"synthetic\"\n",
        );
        let mut new = config(
            "[infer]\nmodel = \"models/efficientnet_lite2.int8.tflite\"\n\
             [telemetry]\nlisten = \"127.0.0.1:9999\"\n\
             [cameras.a.source]\nkind = \"synthetic\"\nfps = 5.0\n\
             [cameras.a.smooth]\nkind = \"ema\"\nalpha = 0.5\n\
             [cameras.c.source]\nkind = \"synthetic\"\n",
        );
        let plan = Plan::between(&old, &mut new);
        assert!(plan.model);
        assert_eq!(plan.added, ["c"]);
        assert_eq!(plan.removed, ["b"]);
        assert_eq!(plan.reopened, ["a"]);
        assert_eq!(plan.refused, ["telemetry.listen"]);
        assert_eq!(new.telemetry, old.telemetry, "the old value is kept");
    }

    #[test]
    fn resize_and_smoothing_changes_keep_the_camera_open_and_workers_are_refused() {
        let old = config("[source]\nkind = \"synthetic\"\n");
        let mut new = config(
            "[source]\nkind = \"synthetic\"\n[resize]\nfit = \"stretch\"\n\
             [smooth]\nkind = \"ema\"\nalpha = 0.5\n[infer]\nworkers = 3\n",
        );
        let plan = Plan::between(&old, &mut new);
        let camera = old.cameras()[0].name.to_string();
        assert!(!plan.model, "a refused worker count is no model change");
        assert_eq!(
            (plan.resized, plan.smoothed),
            (vec![camera.clone()], vec![camera])
        );
        assert!(plan.reopened.is_empty());
        assert_eq!(plan.refused, ["infer.workers"]);
        assert_eq!(new.infer.workers, old.infer.workers);
    }

    #[test]
    fn switching_between_source_and_cameras_is_refused() {
        let old = config("[source]\nkind = \"synthetic\"\n");
        let mut new = config("[cameras.a.source]\nkind = \"synthetic\"\n");
        let plan = Plan::between(&old, &mut new);
        assert_eq!(plan.refused, ["cameras"]);
        assert!(plan.added.is_empty() && plan.removed.is_empty());
        assert_eq!(new.cameras, old.cameras);
    }
}
