//! `scened bench`: the live pipeline with every label timed and none printed, resident memory
//! sampled alongside, metrics served as `scened run` serves them, then the summary and its
//! verdict on stdout; a failed verdict exits 1. `--cameras N` runs N copies of the source
//! through the one model, and the summary gains each camera's figures; `--capacity` searches
//! for the most cameras that pass, a child process per step.

use std::ops::ControlFlow;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use scened_pipeline::bench::capacity::CapacitySearch;
use scened_pipeline::bench::{BenchSetup, BenchSummary, LatencyLog, LatencySample, RssSampler};
use serde::Serialize;
use serde_json::Value;

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

/// One run of `--capacity`'s search.
#[derive(Debug, Serialize)]
struct Step {
    cameras: usize,
    pass: bool,
    /// The thresholds it missed.
    failed: Vec<String>,
    /// The slowest camera's labels per second.
    slowest_fps: f64,
    e2e_p99_ms: f64,
    rss_peak_mb: f64,
    limited_by: Option<String>,
}

/// `--capacity`'s answer.
#[derive(Debug, Serialize)]
struct Capacity {
    /// The most cameras whose run passed; 0 if one camera did not.
    cameras: usize,
    /// What held back the run of one camera more, when one failed.
    limited_by: Option<String>,
    steps: Vec<Step>,
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
        let verdict = if step.pass { "pass" } else { "FAIL" };
        eprintln!(
            "{verdict}: slowest camera {:.1} fps, p99 {:.1} ms, RSS peak {:.1} MB{}{}",
            step.slowest_fps,
            step.e2e_p99_ms,
            step.rss_peak_mb,
            if step.failed.is_empty() {
                String::new()
            } else {
                format!("; missed {}", step.failed.join(", "))
            },
            step.limited_by
                .as_ref()
                .map_or_else(String::new, |limit| format!("; limited by {limit}")),
        );
        search.record(cameras, step.pass);
        steps.push(step);
    }
    let over = search.failed();
    let limited_by = steps
        .iter()
        .find(|step| Some(step.cameras) == over)
        .and_then(|step| step.limited_by.clone());
    let answer = Capacity {
        cameras: search.capacity(),
        limited_by,
        steps,
    };
    if json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        let limit = answer.limited_by.as_deref().unwrap_or("nothing measured");
        match over {
            Some(over) => println!(
                "capacity: {} camera(s); {over} did not pass, limited by {limit}",
                answer.cameras
            ),
            None => println!(
                "capacity: {} camera(s), the most tried, all passing",
                answer.cameras
            ),
        }
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
    let summary: Value = match serde_json::from_slice(&output.stdout) {
        Ok(summary) => summary,
        Err(_) => anyhow::bail!(
            "scened bench --cameras {cameras} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    };
    let number = |value: &Value| value.as_f64().unwrap_or(0.0);
    let checks = summary["checks"].as_array().cloned().unwrap_or_default();
    let failed = checks
        .iter()
        .filter(|check| check["pass"] == false)
        .filter_map(|check| check["name"].as_str().map(str::to_owned))
        .collect();
    let fps = summary["cameras"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| number(&c["fps"]));
    Ok(Step {
        cameras,
        pass: summary["pass"] == true,
        failed,
        slowest_fps: fps.reduce(f64::min).unwrap_or(0.0),
        e2e_p99_ms: number(&summary["e2e_p99_ms"]),
        rss_peak_mb: number(&summary["rss_peak_mb"]),
        limited_by: summary["limited_by"].as_str().map(str::to_owned),
    })
}
