//! The inference stage: the engine loaded once at build time, one session per worker thread,
//! model input tensor → class probabilities per frame.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{Engine, EngineOptions, InferError, ModelError, Session};
use crate::error::Invalid;
use crate::frame::{ModelInput, Scores};
use crate::stage::{Stage, StageError};

/// The model run when the config names none, relative to the current directory (scened runs
/// from the repository root).
/// The int8 model: scened runs it on int8 kernels, faster and in less memory than the float one
/// (`docs/inference.md`).
pub const DEFAULT_MODEL: &str = "models/efficientnet_lite0.int8.tflite";
/// One thread per inference leaves the other cores to capture and resize; a second one lowers
/// latency when a core is free (docs/inference.md, "Threads and workers").
pub const DEFAULT_THREADS: usize = 1;
/// One worker: the frame-level parallelism is opt-in (`workers = "auto"` takes every core).
pub const DEFAULT_WORKERS: Workers = Workers::Count(1);
/// Each worker holds a session (the model's activations, a few MB): more than this is a typo.
pub const MAX_WORKERS: usize = 64;
/// Most threads tract may use per inference.
pub const MAX_THREADS: usize = 64;

/// The inference stage's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferConfig {
    /// The `.tflite` classifier; its `.toml` sidecar, if present, gives normalization and labels.
    /// Without one, [`DEFAULT_MODEL`].
    pub model: Option<PathBuf>,
    /// Threads each inference is split between (the int8 kernels' pool, or tract's for a float
    /// model); 0 or 1 runs on the stage's thread.
    pub threads: usize,
    /// Labels file, one per line, overriding the sidecar's.
    pub labels: Option<PathBuf>,
    /// Inference threads, each with its own session of the one loaded model, taking frames
    /// from the same queue; their labels leave in frame order.
    pub workers: Workers,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            model: None,
            threads: DEFAULT_THREADS,
            labels: None,
            workers: DEFAULT_WORKERS,
        }
    }
}

/// How many inference workers: a number, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Count(usize),
    /// The available cores minus one for the other stages, at least 1.
    Auto,
}

impl Workers {
    /// The number of workers on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Self::Count(count) => count,
            Self::Auto => std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .saturating_sub(1)
                .max(1),
        }
    }
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(count) => write!(f, "{count}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// `--workers`: a number or `auto`; the range is checked with the config.
impl FromStr for Workers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            _ => text
                .parse()
                .map(Self::Count)
                .map_err(|_| format!("expected a number of workers or \"auto\", got {text:?}")),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WorkersVisitor;

        impl Visitor<'_> for WorkersVisitor {
            type Value = Workers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of workers or \"auto\"")
            }

            fn visit_u64<E: de::Error>(self, count: u64) -> Result<Workers, E> {
                usize::try_from(count)
                    .map(Workers::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(count), &self))
            }

            fn visit_i64<E: de::Error>(self, count: i64) -> Result<Workers, E> {
                u64::try_from(count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(count), &self))
                    .and_then(|count| self.visit_u64(count))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Workers, E> {
                match text {
                    "auto" => Ok(Workers::Auto),
                    _ => Err(E::invalid_value(de::Unexpected::Str(text), &self)),
                }
            }
        }

        deserializer.deserialize_any(WorkersVisitor)
    }
}

impl InferConfig {
    /// Checks the settings that need no file; gives the number of workers.
    pub fn check(&self) -> Result<usize, Invalid> {
        let ok = matches!(
            self.workers,
            Workers::Auto | Workers::Count(1..=MAX_WORKERS)
        );
        Invalid::check(ok, "infer.workers", "1 to 64 or \"auto\"", self.workers)?;
        // Each thread is started with the model: a count past the cores only costs.
        let threads = self.threads;
        Invalid::check(threads <= MAX_THREADS, "infer.threads", "0 to 64", threads)?;
        Ok(self.workers.resolve())
    }

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
    /// The input tensor's shape and type the model takes.
    input: ([usize; 4], tract_tflite::prelude::DatumType),
}

impl InferStage {
    /// Spawns the session this stage uses for every frame.
    pub fn new(engine: &Engine) -> Result<Self, InferError> {
        let spec = engine.input();
        let shape = [1, spec.height as usize, spec.width as usize, 3];
        Ok(Self {
            session: engine.session()?,
            input: (shape, spec.datum),
        })
    }

    /// Runs the model once on a black frame: a model swapped in by a reload proves it runs
    /// before it takes a camera's frames.
    pub fn warm_up(&mut self, engine: &Engine) -> Result<(), InferError> {
        let spec = engine.input();
        let black = vec![0; spec.height as usize * spec.width as usize * 3];
        self.session.run(spec.tensor(&black)).map(drop)
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

    /// A frame resized for another model (the one a reload replaced) is not this one's.
    fn accepts(&self, input: &ModelInput) -> bool {
        let (shape, datum) = &self.input;
        input.tensor.shape() == shape && input.tensor.datum_type() == *datum
    }
}
