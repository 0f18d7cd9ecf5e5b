//! `scened bench`: the live pipeline with every label timed and none printed, resident memory
//! sampled alongside, metrics served as `scened run` serves them, then the summary and its
//! verdict on stdout; a failed verdict exits 1.

use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use scened_pipeline::bench::{BenchSummary, LatencyLog, LatencySample, RssSampler};
use scened_pipeline::stage::Shutdown;

use crate::app::{self, Phase};
use crate::cli::BenchArgs;
use crate::config;

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    let phase = Phase::default();
    app::stop_on_signals(shutdown.clone(), phase.clone())?;
    let mut config = config::for_args(&args.pipeline)?;
    // Every label reaches the sink, which times it.
    config.output.every_frame = true;
    // Telemetry as `scened run` serves it, so a dashboard can watch a soak.
    let (pipeline, _telemetry) = app::start(&config, args.pipeline.config.as_deref())?;
    let every = config.bench.check()?;
    phase.set(Phase::RUNNING);

    let sampler = RssSampler::start(every).context("cannot start the memory sampler")?;
    let started = Instant::now();
    let mut latencies = LatencyLog::new();
    let report = pipeline
        .run(&shutdown, |event| {
            latencies.push(LatencySample {
                seconds: started.elapsed().as_secs_f64(),
                latency: event.latency,
            });
            ControlFlow::Continue(())
        })
        .context("cannot start the pipeline's threads")?;
    phase.set(Phase::DONE);
    let seconds = started.elapsed().as_secs_f64();
    let rss = sampler.finish();
    app::no_failed_stage(&report)?;

    let summary = BenchSummary::new(&report, latencies.samples(), &rss, seconds, &config.bench);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{report}{summary}");
    }
    anyhow::ensure!(
        summary.pass,
        "bench failed: {} (thresholds from [bench])",
        summary.failed().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
