//! What `scened run` and `scened bench` do around a pipeline, in order: check the whole config,
//! serve telemetry, build the pipeline reporting its live state there, start the MQTT output,
//! then run it with the caller's sink. Signals and printing stay with the caller.

use std::io;
use std::ops::ControlFlow;

use crate::config::Config;
use crate::error::Invalid;
use crate::events::Events;
use crate::frame::LabelEvent;
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
    mqtt: Option<Mqtt>,
}

/// What a run did.
pub struct DaemonReport {
    pub pipeline: PipelineReport,
    /// What became of the events sent to MQTT, when it is on.
    pub mqtt: Option<MqttReport>,
}

impl Daemon {
    pub fn start(config: &Config) -> Result<Self, StartError> {
        config.check()?;
        // An unset password variable or an unreadable CA file fails before anything starts.
        let camera = config.telemetry.camera_name();
        let mqtt = config.output.mqtt.as_ref();
        let mqtt = mqtt.map(|mqtt| mqtt.build(&camera)).transpose()?;
        // First of all: a second daemon publishing as the same camera says so, rather than
        // fail on the port the first one holds.
        if let Some(client) = &mqtt {
            client.claim()?;
        }
        let events = Events::new();
        // Before the model loads: a port in use fails fast, and /healthz answers during the load.
        let mut telemetry = config.telemetry.start(&events)?;
        let mut pipeline = Pipeline::build(config)?.publish_to(events);
        if let Some(telemetry) = &mut telemetry {
            let (model, dtype) = pipeline.model();
            let run = RunInfo {
                model,
                dtype,
                names: pipeline.names(),
                edges: pipeline.edges(),
                workers: pipeline.worker_watches(),
            };
            telemetry.follow(run, pipeline.results())?;
            pipeline = pipeline.show_to(telemetry.preview());
        }
        // Connects in the background: a broker that is away is no reason not to run.
        let live = || Live {
            status: telemetry.as_ref().map(Telemetry::status),
            pictures: telemetry.as_ref().map(Telemetry::pictures),
            url: telemetry.as_ref().map(Telemetry::live_view_url),
        };
        let mqtt = mqtt
            .map(|client| client.start(pipeline.events(), live()))
            .transpose()?;
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
        let mqtt = self.mqtt.map(Mqtt::finish);
        Ok(DaemonReport { pipeline, mqtt })
    }
}
