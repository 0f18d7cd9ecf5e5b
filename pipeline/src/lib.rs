//! scened's pipeline library.
//!
//! Each box is a thread run by [`runner`]; each arrow is a bounded [`queue`] edge with a
//! declared [`queue::WhenFull`] policy, named after the stage it feeds. [`pipeline`] wires them
//! from one [`config`].
//!
//! ```text
//!  source ──Frame──▶ resize ──ModelInput──▶ infer ──Scores──▶ smooth ──Smoothed──▶ sink
//!         "resize"           "infer"              "smooth"            "sink"
//! ```
//!
//! Every item carries the [`frame::Stamp`] of the frame it came from, so the runner can
//! measure frame age when inference starts, and the sink each label's capture-to-label
//! latency as it leaves. A stage is a plain `process(input) -> Result<output>` call
//! ([`stage::Stage`]): the runner owns receiving, timing, counting, dropping, panics and
//! shutdown.
//!
//! The modules, by role:
//!
//! | role | modules |
//! |---|---|
//! | the stages, in data-flow order | [`source`] (camera, clip, images, synthetic), [`resize`], [`infer`] (the tract engine and its stage), [`smooth`] (with [`labels`]: groups, `unknown`) |
//! | the framework | [`frame`], [`stage`], [`queue`], [`runner`], [`pipeline`], [`config`], [`daemon`] |
//! | observability | [`events`] (the event stream), [`mqtt`] (it, to a broker), [`metrics`] (every name, once), [`telemetry`] (HTTP), [`rss`] |
//! | tools on top | [`classify`] (still images), [`eval`] (the study's table), [`bench`] (verdicts), [`npy`] |
//! | shared helpers | [`decode`] and [`jpeg`] (still images, JPEG framing), [`contain`] (panics), [`stats`] |

pub mod bench;
pub mod classify;
pub mod config;
pub mod contain;
pub mod daemon;
pub mod decode;
pub mod eval;
pub mod events;
pub mod frame;
pub mod infer;
pub mod jpeg;
pub mod labels;
pub mod metrics;
pub mod mqtt;
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
