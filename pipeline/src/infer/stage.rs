//! The inference stage: the engine loaded once at build time, one session on the stage's
//! thread, model input tensor → class probabilities per frame.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Engine, EngineOptions, InferError, ModelError, Session};
use crate::frame::{ModelInput, Scores};
use crate::stage::{Stage, StageError};

/// The model run when the config names none, relative to the current directory (scened runs
/// from the repository root).
/// The int8 model: scened runs it on int8 kernels, faster and in less memory than the float one
/// (`docs/inference.md`).
pub const DEFAULT_MODEL: &str = "models/efficientnet_lite0.int8.tflite";
/// One thread per inference leaves the other cores to capture and resize.
pub const DEFAULT_THREADS: usize = 1;

/// The inference stage's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferConfig {
    /// The `.tflite` classifier; its `.toml` sidecar, if present, gives normalization and labels.
    /// Without one, [`DEFAULT_MODEL`].
    pub model: Option<PathBuf>,
    /// Threads tract's matrix kernels may use per inference; 0 or 1 runs on the stage's thread.
    pub threads: usize,
    /// Labels file, one per line, overriding the sidecar's.
    pub labels: Option<PathBuf>,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            model: None,
            threads: DEFAULT_THREADS,
            labels: None,
        }
    }
}

impl InferConfig {
    /// The model file this config runs.
    pub fn model(&self) -> &Path {
        self.model.as_deref().unwrap_or(Path::new(DEFAULT_MODEL))
    }

    /// Loads, checks and plans the model: the slow, fallible part, done once before any frame.
    pub fn build(&self) -> Result<Engine, ModelError> {
        Engine::load(
            self.model(),
            &EngineOptions {
                threads: self.threads,
                labels: self.labels.clone(),
                ..Default::default()
            },
        )
    }
}

/// Model input → class probabilities, with a session of its own.
pub struct InferStage {
    session: Session,
}

impl InferStage {
    /// Spawns the session this stage uses for every frame.
    pub fn new(engine: &Engine) -> Result<Self, InferError> {
        Ok(Self {
            session: engine.session()?,
        })
    }
}

impl Stage for InferStage {
    type In = ModelInput;
    type Out = Scores;

    fn process(&mut self, input: ModelInput) -> Result<Scores, StageError> {
        let inference = self.session.run(input.tensor).map_err(StageError::item)?;
        Ok(Scores {
            stamp: input.stamp,
            probs: inference.probs,
        })
    }
}
