//! `scened run` and `scened validate`: a config becomes a built pipeline; running it prints
//! labels as JSON lines on stdout and the final report on stderr.
//!
//! SIGINT and SIGTERM stop the source; the frames in flight drain, every thread is joined and
//! the report printed before exiting 0. A second signal exits at once.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use scened_pipeline::pipeline::{LabelEvent, Pipeline, PipelineConfig};
use scened_pipeline::rss;
use scened_pipeline::runner::PipelineReport;
use scened_pipeline::stage::Shutdown;
use scened_pipeline::telemetry::Telemetry;
use serde::Serialize;
use tracing::info;

use crate::cli::RunArgs;
use crate::config;

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    // Installed first, so a signal during the model load also ends in a clean stop.
    let shutdown = Shutdown::new();
    stop_on_signals(shutdown.clone())?;
    let mut config = config::for_args(&args.pipeline)?;
    config.output.every_frame |= args.every_frame;
    let (pipeline, _telemetry) = start(&config, args.pipeline.config.as_deref())?;

    let mut out = io::stdout().lock();
    let mut write_error = None;
    let report = pipeline
        .run(&shutdown, |event| {
            match writeln!(out, "{}", json_line(event)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(error) => {
                    write_error = Some(error);
                    ControlFlow::Break(())
                }
            }
        })
        .context("cannot start the pipeline's threads")?;
    eprint!("{report}");
    eprintln!("peak RSS {:.1} MiB", rss::mib(rss::peak_bytes()));
    if let Some(error) = write_error {
        return Err(error).context("cannot write to stdout");
    }
    no_failed_stage(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// A run whose stage failed is an error naming the stage.
pub fn no_failed_stage(report: &PipelineReport) -> anyhow::Result<()> {
    match report.stages.iter().find(|stage| stage.stop.is_failure()) {
        Some(failed) => anyhow::bail!("stage {} {}", failed.name, failed.stop),
        None => Ok(()),
    }
}

pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(path)?;
    in_file(config.telemetry.check(), Some(path))?;
    build(&config, Some(path))?;
    println!("{}: ok", path.display());
    Ok(ExitCode::SUCCESS)
}

/// What `run` and `bench` do before a frame moves: start telemetry, if enabled, then build
/// the pipeline reporting its live status to it. Keep the `Telemetry` for the run: dropping it
/// stops serving.
pub fn start(
    config: &PipelineConfig,
    file: Option<&Path>,
) -> anyhow::Result<(Pipeline, Option<Telemetry>)> {
    // Before the model loads: a port in use fails fast, and /healthz answers during the load.
    let telemetry = in_file(config.telemetry.start(), file)?;
    let mut pipeline = build(config, file)?;
    info!(model = %pipeline.engine().path().display(), "pipeline built");
    if let Some(telemetry) = &telemetry {
        eprintln!(
            "serving /metrics /healthz /readyz /status on http://{}",
            telemetry.local_addr()
        );
        pipeline = pipeline.report_to(telemetry.status());
    }
    Ok((pipeline, telemetry))
}

/// Builds the pipeline; errors name the config file they came from, if any.
fn build(config: &PipelineConfig, file: Option<&Path>) -> anyhow::Result<Pipeline> {
    in_file(config.build(), file)
}

/// An error of a config's setting, prefixed with the config file if there is one.
fn in_file<T, E>(result: Result<T, E>, file: Option<&Path>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match file {
        Some(file) => result.with_context(|| file.display().to_string()),
        None => Ok(result?),
    }
}

pub fn stop_on_signals(shutdown: Shutdown) -> anyhow::Result<()> {
    let signalled = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if signalled.swap(true, Ordering::SeqCst) {
            eprintln!("error: signalled again, exiting without draining");
            std::process::exit(130);
        }
        info!("signal received: stopping the source and draining");
        shutdown.trigger();
    })
    .context("cannot install the SIGINT/SIGTERM handler")
}

/// One line of output, e.g. `{"frame":812,"ts":"2026-01-01T12:00:00.123Z",
/// "label":"espresso","score":0.91,"latency_ms":14.2}` (on one line).
#[derive(Serialize)]
struct Line<'a> {
    frame: u64,
    /// Capture time, RFC 3339, UTC.
    ts: String,
    label: &'a str,
    score: f64,
    latency_ms: f64,
}

fn json_line(event: &LabelEvent) -> String {
    let line = Line {
        frame: event.frame,
        ts: humantime::format_rfc3339_millis(event.captured).to_string(),
        label: &event.label,
        // f32 printed as f64 shows noise digits; four decimals are all a probability needs.
        score: (f64::from(event.score) * 1e4).round() / 1e4,
        latency_ms: (event.latency.as_secs_f64() * 1e4).round() / 10.0,
    };
    serde_json::to_string(&line).expect("a struct of numbers and strings serializes")
}
