//! What `scened run` and `scened bench` do around a pipeline, in order: check the whole config,
//! serve telemetry, build the pipeline reporting its live state there, start the MQTT output,
//! then run it with the caller's sink. Signals and printing stay with the caller.

use std::io;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use crate::config::{name_key, Config};
use crate::contain::lock;
use crate::error::Invalid;
use crate::events::Events;
use crate::frame::LabelEvent;
use crate::metrics;
use crate::mqtt::{Live, Mqtt, MqttClient, MqttConfig, MqttError, MqttReport};
use crate::pipeline::{BuildError, CameraPart, Pipeline};
use crate::runner::PipelineReport;
use crate::stage::Shutdown;
use crate::telemetry::{RunInfo, Telemetry, TelemetryError};

/// A config that cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

/// A built pipeline and what serves it: telemetry and MQTT, if enabled.
pub struct Daemon {
    pipeline: Pipeline,
    outputs: Arc<Mutex<Outputs>>,
}

/// What serves the cameras, shared with a reload, which adds and removes cameras there.
pub(crate) struct Outputs {
    pub(crate) telemetry: Option<Telemetry>,
    /// One client per camera, by camera, when MQTT is on.
    mqtt: Vec<(String, Mqtt)>,
    mqtt_config: Option<MqttConfig>,
    several: bool,
    events: Events,
}

/// What a run did.
pub struct DaemonReport {
    pub pipeline: PipelineReport,
    /// What became of the events sent to MQTT, per camera, when it is on.
    pub mqtt: Vec<MqttReport>,
}

impl Daemon {
    pub fn start(config: &Config) -> Result<Self, StartError> {
        config.check()?;
        let cameras: Vec<String> = config
            .cameras()
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        let several = !config.cameras.is_empty();
        // First of all: a second daemon publishing as the same camera says so, rather than
        // fail on the port the first one holds.
        let mqtt = claimed(config.output.mqtt.as_ref(), &cameras, several)?;
        let events = Events::new();
        // Before the model loads: a port in use fails fast, and /healthz answers during the load.
        let telemetry = config.telemetry.start(&events, &cameras, several)?;
        let mut pipeline = Pipeline::build(config)?.publish_to(events.clone());
        let mut outputs = Outputs {
            telemetry,
            mqtt: Vec::with_capacity(cameras.len()),
            mqtt_config: config.output.mqtt.clone(),
            several,
            events,
        };
        let model = pipeline.model();
        for (camera, name) in cameras.iter().enumerate() {
            if let Some(telemetry) = &mut outputs.telemetry {
                let run = RunInfo {
                    model: model.0.clone(),
                    dtype: model.1.clone(),
                    names: pipeline.names_of(camera),
                    edges: pipeline.edges_of(camera),
                    workers: pipeline.worker_watches(),
                };
                telemetry.follow(name, run, pipeline.results_of(camera))?;
                pipeline = pipeline.show_camera_to(camera, telemetry.preview(name));
            }
        }
        // Connects in the background: a broker that is away is no reason not to run.
        for (name, client) in cameras.iter().zip(mqtt) {
            outputs.publish(name, client)?;
        }
        Ok(Self {
            pipeline,
            outputs: Arc::new(Mutex::new(outputs)),
        })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The run's event stream: subscribe before [`run`](Self::run).
    pub fn events(&self) -> &Events {
        self.pipeline.events()
    }

    /// The HTTP side, when on: what it serves changes only by a reload.
    pub fn telemetry(&self) -> Option<std::net::SocketAddr> {
        let outputs = lock(&self.outputs);
        outputs.telemetry.as_ref().map(Telemetry::local_addr)
    }

    /// Lets the HTTP side's `POST /reload` run `reload`, when it is on.
    pub fn on_reload(&self, reload: impl Fn() -> (bool, String) + Send + Sync + 'static) {
        if let Some(telemetry) = &lock(&self.outputs).telemetry {
            telemetry.on_reload(reload);
        }
    }

    pub(crate) fn outputs(&self) -> Arc<Mutex<Outputs>> {
        Arc::clone(&self.outputs)
    }

    /// Runs the pipeline (see [`Pipeline::run`]), then lets MQTT publish what is left and
    /// `offline`; telemetry serves until it returns.
    pub fn run(
        self,
        shutdown: &Shutdown,
        sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<DaemonReport> {
        let pipeline = self.pipeline.run(shutdown, sink)?;
        let mut outputs = lock(&self.outputs);
        let mqtt = outputs
            .mqtt
            .drain(..)
            .map(|(_, mqtt)| mqtt.finish())
            .collect();
        outputs.telemetry = None;
        Ok(DaemonReport { pipeline, mqtt })
    }
}

/// `cameras`' MQTT clients under `mqtt` (none when it is off): all made first, so an unset
/// password variable or an unreadable CA file fails before any broker is asked, then each
/// camera's name claimed (`several`: each from `[cameras]`). Nothing is started, so a failure
/// leaves nothing to undo.
pub(crate) fn claimed(
    mqtt: Option<&MqttConfig>,
    cameras: &[String],
    several: bool,
) -> Result<Vec<MqttClient>, MqttError> {
    let clients = made(mqtt, cameras)?;
    claim(&clients, cameras, several)?;
    Ok(clients)
}

/// `cameras`' MQTT clients under `mqtt`, none when it is off; nothing connects yet.
fn made(mqtt: Option<&MqttConfig>, cameras: &[String]) -> Result<Vec<MqttClient>, MqttError> {
    let Some(mqtt) = mqtt else {
        return Ok(Vec::new());
    };
    cameras.iter().map(|camera| mqtt.build(camera)).collect()
}

/// Claims each camera's name for its client: an error naming the first taken elsewhere.
fn claim(clients: &[MqttClient], cameras: &[String], several: bool) -> Result<(), MqttError> {
    let mut claims = clients.iter().zip(cameras);
    claims.try_for_each(|(client, name)| client.claim(&name_key(name, several)))
}

impl Outputs {
    /// Starts publishing camera `name`'s events with `client`.
    fn publish(&mut self, name: &str, client: MqttClient) -> Result<(), MqttError> {
        let telemetry = self.telemetry.as_ref();
        let live = Live {
            status: telemetry.map(|t| t.status(name)),
            pictures: telemetry.map(|t| t.pictures(name)),
            url: telemetry.map(Telemetry::live_view_url),
            only: self.several.then(|| name.to_owned()),
        };
        // Its metrics say its camera, with several.
        let scope = self.several.then_some(name);
        let mqtt = metrics::for_camera(scope, || client.start(&self.events, live))?;
        self.mqtt.push((name.to_owned(), mqtt));
        Ok(())
    }

    /// Follows a camera a reload starts: `/status` and the live view show it, and, when it is
    /// new (`added`), MQTT publishes as it with `client` (made and claimed by [`claimed`]).
    pub(crate) fn follow(
        &mut self,
        part: &mut CameraPart,
        run: RunInfo,
        added: bool,
        client: Option<MqttClient>,
    ) -> Result<(), StartError> {
        let name = part.name().to_owned();
        if let Some(telemetry) = &mut self.telemetry {
            if added {
                telemetry.add_camera(&name)?;
            }
            telemetry.follow(&name, run, part.results())?;
            part.show_to(telemetry.preview(&name));
        }
        match client {
            Some(client) => Ok(self.publish(&name, client)?),
            None => Ok(()),
        }
    }

    /// Publishes as `cameras` by `mqtt` from now on, when it differs from the config running:
    /// every client made and checked first (a bad one changes nothing), then the old ones say
    /// `offline` and the new ones connect. A camera claimed by another daemon under the new
    /// settings puts the old clients back and fails. Whether anything changed.
    pub(crate) fn reconnect_mqtt(
        &mut self,
        mqtt: Option<MqttConfig>,
        cameras: &[String],
    ) -> Result<bool, StartError> {
        if mqtt == self.mqtt_config {
            return Ok(false);
        }
        let clients = made(mqtt.as_ref(), cameras)?;
        for (_, old) in self.mqtt.drain(..) {
            old.finish();
        }
        // Claimed only now: the old clients held the cameras' topics under this process.
        if let Err(error) = claim(&clients, cameras, self.several) {
            let old = made(self.mqtt_config.as_ref(), cameras)?;
            for (camera, client) in cameras.iter().zip(old) {
                self.publish(camera, client)?;
            }
            return Err(error.into());
        }
        self.mqtt_config = mqtt;
        for (camera, client) in cameras.iter().zip(clients) {
            self.publish(camera, client)?;
        }
        Ok(true)
    }

    /// Stops serving camera `name`: its MQTT client says `offline`.
    pub(crate) fn forget(&mut self, name: &str) {
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.remove_camera(name);
        }
        if let Some(at) = self.mqtt.iter().position(|(camera, _)| camera == name) {
            let (_, mqtt) = self.mqtt.remove(at);
            mqtt.finish();
        }
    }
}
