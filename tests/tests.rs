//! scened's one integration-test binary: the real models through tract, the real CLI.

mod util;

mod classify;
mod engine;
mod faults;
mod run;
mod telemetry;
