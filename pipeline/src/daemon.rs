//! What `scened run` and `scened bench` do around a pipeline, in order: check the whole config,
//! serve telemetry, build the pipeline reporting its live state there, start the MQTT output,
//! then run it with the caller's sink. Signals and printing stay with the caller.

use std::io;
use std::ops::ControlFlow;

use crate::config::Config;
use crate::error::Invalid;
use crate::events::Events;
use crate::frame::LabelEvent;
use crate::metrics;
use crate::mqtt::{Live, Mqtt, MqttError, MqttReport};
use crate::pipeline::{BuildError, Pipeline};
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
    telemetry: Option<Telemetry>,
    /// One client per camera, when MQTT is on.
    mqtt: Vec<Mqtt>,
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
        // An unset password variable or an unreadable CA file fails before anything starts.
        let mqtt = match &config.output.mqtt {
            Some(mqtt) => cameras.iter().map(|camera| mqtt.build(camera)).collect(),
            None => Ok(Vec::new()),
        };
        let mqtt = mqtt?;
        // First of all: a second daemon publishing as the same camera says so, rather than
        // fail on the port the first one holds.
        for client in &mqtt {
            client.claim()?;
        }
        let events = Events::new();
        // Before the model loads: a port in use fails fast, and /healthz answers during the load.
        let mut telemetry = config.telemetry.start(&events, &cameras, several)?;
        let mut pipeline = Pipeline::build(config)?.publish_to(events);
        if let Some(telemetry) = &mut telemetry {
            let (model, dtype) = pipeline.model();
            for camera in 0..cameras.len() {
                let run = RunInfo {
                    model: model.clone(),
                    dtype: dtype.clone(),
                    names: pipeline.names_of(camera),
                    edges: pipeline.edges_of(camera),
                    workers: pipeline.worker_watches(),
                };
                telemetry.follow(camera, run, pipeline.results_of(camera))?;
                pipeline = pipeline.show_camera_to(camera, telemetry.preview(camera));
            }
        }
        // Connects in the background: a broker that is away is no reason not to run.
        let live = |camera: usize| Live {
            status: telemetry.as_ref().map(|t| t.status(camera)),
            pictures: telemetry.as_ref().map(|t| t.pictures(camera)),
            url: telemetry.as_ref().map(Telemetry::live_view_url),
            only: several.then(|| cameras[camera].clone()),
        };
        let mqtt = mqtt
            .into_iter()
            .enumerate()
            .map(|(camera, client)| {
                // Its metrics say its camera, with several.
                let scope = several.then_some(cameras[camera].as_str());
                metrics::for_camera(scope, || client.start(pipeline.events(), live(camera)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pipeline,
            telemetry,
            mqtt,
        })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The run's event stream: subscribe before [`run`](Self::run).
    pub fn events(&self) -> &Events {
        self.pipeline.events()
    }

    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// Runs the pipeline (see [`Pipeline::run`]), then lets MQTT publish what is left and
    /// `offline`; telemetry serves until it returns.
    pub fn run(
        self,
        shutdown: &Shutdown,
        sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<DaemonReport> {
        let pipeline = self.pipeline.run(shutdown, sink)?;
        let mqtt = self.mqtt.into_iter().map(Mqtt::finish).collect();
        Ok(DaemonReport { pipeline, mqtt })
    }
}
