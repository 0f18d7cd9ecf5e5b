//! scened's one integration-test binary: the real models through tract, the real CLI.

mod util;

// Emulates x86-64 CPUs with less than the build's.
#[cfg(target_arch = "x86_64")]
mod any_cpu;
mod bench;
mod cameras;
mod classify;
mod engine;
mod eval;
mod extremes;
mod faults;
mod http;
mod int8_ops;
mod labels;
mod live_view;
mod memory;
mod mqtt;
mod network;
mod reload;
mod run;
mod setup;
mod telemetry;
