//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use scened_pipeline::infer::stage::Workers;
use scened_pipeline::source::flag::SourceFlag;

/// scened: label camera scenes in real time with a TFLite classifier run by tract.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Label frames live: capture → resize → infer → smooth, one JSON line per label change.
    Run(RunArgs),
    /// Run the live pipeline flat out or at the source's pace, print throughput, latency,
    /// drops and memory, and judge them by the config's [bench] thresholds (exit 1 on fail).
    Bench(BenchArgs),
    /// Top-1/top-3, inference and end-to-end time, peak memory and the study's score per model,
    /// on a folder with one subfolder of images per class.
    Eval(EvalArgs),
    /// Check a config file without running it: every key, the model, the source.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask the daemon running this config to reload it, as SIGHUP does, through its HTTP
    /// side (with telemetry.token_env's token); exit 1 if the reload failed.
    Reload {
        #[arg(long)]
        config: PathBuf,
    },
    /// List cameras and the modes each offers.
    Cameras,
    /// Classify still images; prints one JSON object per image.
    Classify(ClassifyArgs),
    /// Inspect model files.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Print every frame's label, not only changes.
    #[arg(long)]
    pub every_frame: bool,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run N copies of the configured [source] as cameras cam0… through the one model
    /// (1 to 64); the summary gains each camera's figures.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_CAMERAS))]
    pub cameras: Option<u16>,
    /// Find the most copies of [source] (as --cameras N) whose run passes the [bench]
    /// thresholds: a short search, a run per step, each printed; then that number and what
    /// limited the next one.
    #[arg(long, conflicts_with = "cameras")]
    pub capacity: bool,
}

/// The most cameras `--cameras` runs and `--capacity` tries.
pub const MAX_CAMERAS: i64 = 64;

/// What `run` and `bench` take to set up the pipeline.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Config file (see config/scened.toml); without one, the built-in defaults, which play
    /// the demo clip with models/efficientnet_lite0.int8.tflite.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where frames come from: camera[:INDEX|:ID] (`scened cameras` lists both), clip[:PATH]
    /// (no path: the demo clip), images:DIR, synthetic, or a network camera:
    /// rtsp://[USER[:PASSWORD]@]HOST[:PORT]/PATH (H.264) or http[s]://…/PATH (MJPEG).
    #[arg(long)]
    pub source: Option<SourceFlag>,
    /// The source's frame rate; 0 reads a clip, images or the pattern as fast as possible.
    #[arg(long)]
    pub fps: Option<f64>,
    /// The .tflite model, overriding the config's.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Inference workers (1 to 64, or auto: the cores minus one), overriding the config's
    /// [infer] workers.
    #[arg(long, value_name = "N")]
    pub workers: Option<Workers>,
    /// Threads each inference is split between, overriding the config's [infer] threads.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Serve metrics and status on this address (port 0: any free port), overriding the config.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve no metrics or status (instrumentation becomes a no-op).
    #[arg(long, conflicts_with = "listen")]
    pub no_telemetry: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Folder with one subfolder of images per class, named after a model label (or one of
    /// its comma-separated synonyms) unless --map says otherwise.
    #[arg(long)]
    pub data: PathBuf,
    /// A .tflite classifier; repeat for several, each evaluated in a process of its own.
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// TOML file mapping folder names to model labels: `folder = "label"`,
    /// `folder = ["label", …]` (any counts as correct) or `folder = []` (left out).
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Threads tract may use per inference.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// One JSON object per model, one per line, instead of the table.
    #[arg(long)]
    pub json: bool,
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
    /// Run an int8 model through the whole-graph float lowering (the reference path) instead
    /// of the int8 kernels, to compare the two.
    #[arg(long)]
    pub lowered: bool,
}
