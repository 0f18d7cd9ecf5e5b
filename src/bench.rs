//! `scened bench`: the live pipeline with every label timed and none printed, resident memory
//! sampled alongside, metrics served as `scened run` serves them, then the summary and its
//! verdict on stdout; a failed verdict exits 1.

use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use scened_pipeline::bench::{BenchSetup, BenchSummary, LatencyLog, LatencySample, RssSampler};

use crate::app::{self, Started};
use crate::cli::BenchArgs;

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    // Every label reaches the sink, which times it.
    let started = Started::start(&args.pipeline, |config| config.output.every_frame = true)?;
    let bench = started.config.bench;
    let every = bench.check()?;
    let setup = BenchSetup::new(&started.config, started.pipeline());
    let sampler = RssSampler::start(every).context("cannot start the memory sampler")?;
    let began = Instant::now();
    let mut latencies = LatencyLog::new();
    let report = started
        .run(|event| {
            latencies.push(LatencySample {
                seconds: began.elapsed().as_secs_f64(),
                latency: event.latency,
            });
            ControlFlow::Continue(())
        })?
        .report
        .pipeline;
    let seconds = began.elapsed().as_secs_f64();
    let rss = sampler.finish();
    app::no_failed_stage(&report)?;

    let summary = BenchSummary::new(setup, &report, latencies.samples(), &rss, seconds, &bench);
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
