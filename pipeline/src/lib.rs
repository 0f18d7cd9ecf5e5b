//! scened's pipeline library.
//!
//! ```text
//! source ──▶ resize ──▶ infer ──▶ smooth ──▶ label events
//! (camera,    (fit +     (tract     (ema /
//!  clip,       encode)    engine)    window /
//!  images,                           hysteresis)
//!  synthetic)
//! ```
//!
//! - [`infer`]: loads a `.tflite` classifier once ([`infer::Engine`]), refuses what tract would
//!   run wrongly, and runs per-thread sessions.
//! - [`resize`]: turns a frame into the model's input tensor.
//! - [`npy`]: writes tensors as `.npy` for comparing with a reference runtime.

pub mod contain;
pub mod decode;
pub mod infer;
pub mod npy;
pub mod resize;
