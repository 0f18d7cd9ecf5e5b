//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// scened: label camera scenes in real time with a TFLite classifier run by tract.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify still images; prints one JSON object per image.
    Classify(ClassifyArgs),
    /// Inspect model files.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// The .tflite model (its .toml sidecar, if present, gives normalization and labels).
    #[arg(long)]
    pub model: PathBuf,
    /// Labels file, one per line, overriding the sidecar's.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Write `<stem>.input.npy` and `<stem>.output.npy` per image into this directory.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Threads tract may use per inference.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How images of another aspect ratio are fitted: center-crop, stretch or letterbox.
    #[arg(long, value_enum, default_value_t = FitArg::CenterCrop)]
    pub fit: FitArg,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FitArg {
    CenterCrop,
    Stretch,
    Letterbox,
}

impl From<FitArg> for scened_pipeline::resize::Fit {
    fn from(f: FitArg) -> Self {
        match f {
            FitArg::CenterCrop => Self::CenterCrop,
            FitArg::Stretch => Self::Stretch,
            FitArg::Letterbox => Self::Letterbox,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Report a model's inputs, outputs and ops, and whether tract can run it correctly.
    Check {
        #[arg(required = true)]
        models: Vec<PathBuf>,
    },
    /// Time inference alone (no capture, no resize) and print one JSON line per model.
    Bench(ModelsBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct ModelsBenchArgs {
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Threads tract may use per inference.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed runs per model, after the warm-up.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Untimed runs first, so caches and allocations settle.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Photo to feed (resized to each model's input); a mid-grey frame if absent.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Also time one run node by node and print where the time goes, by op, on stderr.
    #[arg(long)]
    pub profile: bool,
}
