//! Still images through the same resize and engine the pipeline uses: one [`Classifier`]
//! (the engine, one session, the preprocessor) for `scened classify`, `scened models bench`
//! and `scened eval`. Only the model's run is timed, as the study's app timed the interpreter.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::Serialize;
use tract_tflite::prelude::Tensor;

use crate::decode::{self, ImageError};
use crate::infer::{self, Engine, EngineOptions, InferError, Inference, ModelError, Session};
use crate::resize::{Fit, Preprocessor, ResizeError};
use crate::source::DEFAULT_MAX_PIXELS;

/// A model that could not be loaded, or an image that could not be classified; each names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: {error}", path.display())]
    Session { path: PathBuf, error: InferError },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{}: {error}", path.display())]
    Resize { path: PathBuf, error: ResizeError },
    #[error("{}: {error}", path.display())]
    Infer { path: PathBuf, error: InferError },
}

/// A model loaded once, with the session and scratch buffers to classify image after image.
pub struct Classifier {
    engine: Engine,
    session: Session,
    pre: Preprocessor,
}

/// One image's answer.
pub struct Classified {
    /// The exact tensor given to the model.
    pub input: Tensor,
    pub inference: Inference,
    /// Fitting and encoding the decoded image.
    pub prepare_time: Duration,
    /// The model's run alone.
    pub infer_time: Duration,
}

impl Classifier {
    /// Loads `model` as the pipeline would; images of another aspect ratio are fitted by `fit`.
    pub fn load(model: &Path, options: &EngineOptions, fit: Fit) -> Result<Self, ClassifyError> {
        let engine = Engine::load(model, options)?;
        let session = engine.session().map_err(|error| ClassifyError::Session {
            path: model.to_owned(),
            error,
        })?;
        let pre = Preprocessor::new(engine.input().clone(), fit);
        Ok(Self {
            engine,
            session,
            pre,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The model's input tensor for `image`.
    pub fn input(&mut self, image: &RgbImage) -> Result<Tensor, ResizeError> {
        self.pre.process(image)
    }

    /// Runs the model on `input`; the answer and how long the run alone took.
    pub fn infer(&mut self, input: Tensor) -> Result<(Inference, Duration), InferError> {
        let started = Instant::now();
        let inference = self.session.run(input)?;
        Ok((inference, started.elapsed()))
    }

    /// Runs `input` once node by node: where the time goes inside tract.
    pub fn profile(&mut self, input: Tensor) -> Result<Vec<(String, String, f64)>, InferError> {
        self.session.profile(input)
    }

    /// Decodes, fits and classifies the image at `path`.
    pub fn classify_file(&mut self, path: &Path) -> Result<Classified, ClassifyError> {
        let image = decode::load_rgb(path, DEFAULT_MAX_PIXELS)?;
        let started = Instant::now();
        let input = self.input(&image).map_err(|error| ClassifyError::Resize {
            path: path.to_owned(),
            error,
        })?;
        let prepare_time = started.elapsed();
        let (inference, infer_time) =
            self.infer(input.clone())
                .map_err(|error| ClassifyError::Infer {
                    path: path.to_owned(),
                    error,
                })?;
        Ok(Classified {
            input,
            inference,
            prepare_time,
            infer_time,
        })
    }
}

/// One image's JSON line of `scened classify`: its most probable classes, best first, and the
/// model's time.
#[derive(Serialize)]
pub struct Line<'a> {
    image: &'a Path,
    top: Vec<Ranked>,
    infer_ms: f64,
}

#[derive(Serialize)]
struct Ranked {
    index: usize,
    label: String,
    score: f32,
}

impl<'a> Line<'a> {
    /// The line of `image`, classified by `engine` as `classified`, with its `top` classes.
    pub fn new(engine: &Engine, image: &'a Path, classified: &Classified, top: usize) -> Self {
        let top = infer::top_k(&classified.inference.probs, top)
            .into_iter()
            .map(|(index, score)| Ranked {
                index,
                label: engine.label(index),
                score,
            })
            .collect();
        Self {
            image,
            top,
            infer_ms: classified.infer_time.as_secs_f64() * 1e3,
        }
    }
}
