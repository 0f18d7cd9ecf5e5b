//! scened's pipeline library.
//!
//! Each box is a thread run by [`runner`]; each arrow is a bounded [`queue`] edge with a
//! declared [`queue::WhenFull`] policy, named after the stage it feeds. [`pipeline`] wires them
//! from one config.
//!
//! ```text
//!  source ──Frame──▶ resize ──ModelInput──▶ infer ──Scores──▶ smooth ──Smoothed──▶ sink
//!         "resize"           "infer"              "smooth"            "sink"
//! ```
//!
//! Sources: camera, clip, images, synthetic. Each edge is named (under its arrow) after the
//! stage it feeds; the sink is whoever called [`pipeline::Pipeline::run`].
//!
//! Every item carries the [`frame::Stamp`] of the frame it came from, so the runner can
//! measure frame age when inference starts and end-to-end latency when a label comes out.
//! A stage is a plain `process(input) -> Result<output>` call ([`stage::Stage`]): the runner
//! owns receiving, timing, counting, dropping, panics and shutdown.
//!
//! - [`infer`]: loads a `.tflite` classifier once ([`infer::Engine`]), refuses what tract would
//!   run wrongly, and runs per-thread sessions; [`infer::stage`] is the pipeline stage.
//! - [`resize`]: turns a frame into the model's input tensor.
//! - [`source`]: camera, clip, images and synthetic frames; [`decode`] reads still images.
//! - [`smooth`]: per-frame scores → a steady label.
//! - [`metrics`]: every metric name, once; [`telemetry`] serves them over HTTP with the
//!   pipeline's live status.
//! - [`npy`]: writes tensors as `.npy` for comparing with a reference runtime.
//! - [`eval`]: top-1/top-3 on a labelled folder and the study's score; [`bench`]: a run's
//!   throughput, latency, drops and memory against thresholds; [`rss`], [`stats`]: what both
//!   measure with.

pub mod bench;
pub mod contain;
pub mod decode;
pub mod eval;
pub mod frame;
pub mod infer;
pub mod metrics;
pub mod npy;
pub mod pipeline;
pub mod queue;
pub mod resize;
pub mod rss;
pub mod runner;
pub mod smooth;
pub mod source;
pub mod stage;
pub mod stats;
pub mod telemetry;
