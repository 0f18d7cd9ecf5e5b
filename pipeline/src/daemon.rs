//! What `scened run` and `scened bench` do around a pipeline, in order: check the whole config,
//! serve telemetry, build the pipeline reporting its live state there, then run it with the
//! caller's sink. Signals and printing stay with the caller.

use std::io;
use std::ops::ControlFlow;

use crate::config::{Config, Invalid};
use crate::events::Events;
use crate::pipeline::{BuildError, LabelEvent, Pipeline};
use crate::runner::PipelineReport;
use crate::stage::Shutdown;
use crate::telemetry::{Telemetry, TelemetryError};

/// A config that cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// A built pipeline and the telemetry serving it, if enabled.
pub struct Daemon {
    pipeline: Pipeline,
    telemetry: Option<Telemetry>,
}

impl Daemon {
    pub fn start(config: &Config) -> Result<Self, StartError> {
        config.check()?;
        let events = Events::new();
        // Before the model loads: a port in use fails fast, and /healthz answers during the load.
        let telemetry = config.telemetry.start()?;
        let mut pipeline = Pipeline::build(config)?.publish_to(events);
        if let Some(telemetry) = &telemetry {
            pipeline = pipeline.report_to(telemetry.status());
        }
        Ok(Self {
            pipeline,
            telemetry,
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

    /// Runs the pipeline (see [`Pipeline::run`]); telemetry serves until it returns.
    pub fn run(
        self,
        shutdown: &Shutdown,
        sink: impl FnMut(&LabelEvent) -> ControlFlow<()>,
    ) -> io::Result<PipelineReport> {
        self.pipeline.run(shutdown, sink)
    }
}
