//! `scened bench`: the live pipeline with every label timed and none printed, resident memory
//! sampled alongside, metrics served as `scened run` serves them, then the summary and its
//! verdict on stdout; a failed verdict exits 1. `--cameras N` runs N copies of the source
//! through the one model, and the summary gains each camera's figures; `--capacity` searches
//! for the most cameras that pass, a child process per step.

use std::ops::ControlFlow;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use scened_pipeline::bench::capacity::{Capacity, CapacitySearch, Step};
use scened_pipeline::bench::{BenchSetup, BenchSummary, LatencyLog, LatencySample, RssSampler};

use crate::app::{self, Started};
use crate::cli::{BenchArgs, MAX_CAMERAS};

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.capacity {
        return capacity(args.json);
    }
    let started = Started::start(&args.pipeline, |config| {
        // Every label reaches the sink, which times it.
        config.output.every_frame = true;
        if let Some(count) = args.cameras {
            anyhow::ensure!(
                config.cameras.is_empty(),
                "--cameras runs copies of [source]; this config has [cameras] already"
            );
            config.cameras = config.copies_of_source(count.into());
        }
        Ok(())
    })?;
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

/// `scened bench --capacity`: this command's other flags as `--cameras N` for each N the
/// search tries, each in a child process (a run installs the process's metrics recorder, once).
fn capacity(json: bool) -> anyhow::Result<ExitCode> {
    let flags: Vec<String> = std::env::args()
        .skip(2)
        .filter(|arg| arg != "--capacity" && arg != "--json")
        .collect();
    let mut search = CapacitySearch::new(MAX_CAMERAS as usize);
    let mut steps: Vec<Step> = Vec::new();
    while let Some(cameras) = search.next() {
        eprint!("capacity: {cameras} camera(s)… ");
        let step = step(&flags, cameras)?;
        eprintln!("{step}");
        search.record(cameras, step.pass);
        steps.push(step);
    }
    let answer = Capacity::new(&search, steps);
    if json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        println!("{answer}");
    }
    Ok(if answer.cameras > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `scened bench FLAGS --cameras N --json` in a child process, summed up.
fn step(flags: &[String], cameras: usize) -> anyhow::Result<Step> {
    let exe = std::env::current_exe().context("cannot find the scened executable")?;
    let output = Command::new(exe)
        .arg("bench")
        .args(flags)
        .args(["--cameras", &cameras.to_string(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("cannot start scened bench")?;
    // A failed verdict still prints its summary; anything else is the child's error.
    match serde_json::from_slice(&output.stdout) {
        Ok(summary) => Ok(Step::from_summary(cameras, &summary)),
        Err(_) => anyhow::bail!(
            "scened bench --cameras {cameras} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}
