//! `scened bench` on real short runs: the verdict follows the thresholds, whatever the
//! machine's speed, and the benchmark config's 30-second run passes.

use serde_json::Value;

use crate::run::write_config;
use crate::util::*;

/// The demo clip as fast as the pipeline takes it, through blocking queues, for 60 frames,
/// judged by `bench`.
fn short_run(bench: &str) -> String {
    format!(
        "[source]\nkind = \"clip\"\nfps = 0.0\n\
         [infer]\nmodel = \"{}\"\n\
         [edges.resize]\ncapacity = 2\nwhen_full = \"block\"\n\
         [edges.infer]\ncapacity = 2\nwhen_full = \"block\"\n\
         [stop]\nafter_frames = 60\n\
         [bench]\n{bench}",
        model("efficientnet_lite0.fp32.tflite").display()
    )
}

/// Limits no run can miss, and one no run can meet.
const GENEROUS: &str = "min_fps = 0.01\nmax_p99_ms = 600000.0\nmax_deadline_miss_ratio = 1.0\n\
    max_drop_ratio = 1.0\nmax_rss_slope_mb_per_h = 1e12\nmax_p99_drift = 1e12\n\
    rss_sample_seconds = 0.1\n";

fn summary(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

/// A short run measures everything but memory growth, which needs more than the 10 s warm-up:
/// generous limits pass what was measured, and the unmeasured slope fails, saying why (it
/// used to pass as "n/a"). An impossible limit fails too; the error names both.
#[test]
fn thresholds_judge_what_was_measured_and_fail_what_was_not() {
    let dir = tmp_dir("bench-verdict");
    let generous = write_config(&dir, "generous.toml", &short_run(GENEROUS));
    // Without telemetry, stderr holds nothing but the error.
    let args = ["--json", "--no-telemetry", "--workers", "2"];
    let out = scened(&[&["bench", "--config", &generous][..], &args].concat());
    assert_one_line_error(
        &out,
        "bench failed: max_rss_slope_mb_per_h (thresholds from [bench])",
    );
    let s = summary(&out);
    assert_eq!(s["pass"], false);
    assert_eq!(s["frames"], 60);
    // What ran, as configured and as overridden.
    let setup = &s["setup"];
    assert_eq!(setup["model"], "efficientnet_lite0.fp32.tflite", "{setup}");
    assert_eq!(setup["dtype"], "float32", "{setup}");
    assert_eq!(setup["workers"], 2, "{setup}");
    assert_eq!(setup["source"]["kind"], "clip", "{setup}");
    assert_eq!(setup["edges"]["infer"]["when_full"], "block", "{setup}");
    let infer = &s["stages"][2];
    let workers = infer["workers"].as_array().unwrap();
    let numbers: Vec<&Value> = workers.iter().map(|w| &w["worker"]).collect();
    assert_eq!(numbers, [0, 1], "{infer}");
    let worker_frames = workers.iter().map(|w| w["frames_in"].as_u64().unwrap());
    assert_eq!(worker_frames.sum::<u64>(), 60, "{infer}");
    assert!(s["fps"].as_f64().unwrap() > 0.0);
    let stages: Vec<&str> = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| stage["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["capture", "resize", "infer", "smooth"]);
    assert!(s["e2e_p50_ms"].as_f64().unwrap() <= s["e2e_p99_ms"].as_f64().unwrap());
    // Blocking queues drop nothing; a source with no pace has no deadline.
    assert_eq!(s["drop_ratio"], 0.0);
    assert_eq!(s["deadline_miss_ratio"], Value::Null);
    assert!(s["rss_peak_mb"].as_f64().unwrap() >= s["rss_end_mb"].as_f64().unwrap());
    assert!(s["rss_samples"].as_u64().unwrap() >= 2);
    assert_eq!(s["rss_slope_mb_per_h"], Value::Null);
    let checks = s["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    let failed: Vec<&Value> = checks.iter().filter(|c| c["pass"] == false).collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    assert_eq!(failed[0]["name"], "max_rss_slope_mb_per_h");
    assert_eq!(failed[0]["value"], Value::Null);
    let why = failed[0]["note"].as_str().unwrap();
    assert!(
        why.starts_with("not measured: fewer than 2 memory samples"),
        "{why}"
    );

    let impossible = GENEROUS.replace("min_fps = 0.01", "min_fps = 1e9");
    let fail = write_config(&dir, "fail.toml", &short_run(&impossible));
    let out = scened(&["bench", "--config", &fail, "--json", "--no-telemetry"]);
    assert_one_line_error(
        &out,
        "bench failed: min_fps, max_rss_slope_mb_per_h (thresholds from [bench])",
    );

    // Without --json: the pipeline report, then the summary and the verdict with the reason.
    let out = scened(&["bench", "--config", &generous, "--frames", "20"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "stage ",
        "setup: efficientnet_lite0.fp32.tflite (float32), 1 inference worker(s) × 1 tract \
         thread(s), source clip as fast as it goes, queues resize 2 block / infer 2 block / \
         smooth 4 block / sink 16 block",
        "capture-to-label latency: p50 ",
        "throughput ",
        "20 labels",
        "RSS start",
        "FAIL max_rss_slope_mb_per_h   n/a (not measured: fewer than 2 memory samples",
        "ok   max_deadline_miss_ratio  n/a (not judged: the source has no pace",
        "verdict: FAIL",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

/// What CI runs: the benchmark config as shipped, 30 s of the demo clip at 30 fps. nextest
/// runs it alone (.config/nextest.toml), so the other tests do not eat its frames.
#[test]
fn the_benchmark_config_passes_its_30_second_bench() {
    let out = scened(&["bench", "--config", "config/benchmark.toml", "--json"]);
    let s = summary(&out);
    assert!(out.status.success(), "{}\n{s:#}", stderr(&out));
    assert_eq!(s["pass"], true);
    assert!(s["seconds"].as_f64().unwrap() >= 30.0);
    assert!(s["rss_samples"].as_u64().unwrap() >= 25);
    assert!(s["rss_slope_mb_per_h"].is_f64(), "{s:#}");
    assert!(s["p99_drift"].is_f64(), "{s:#}");
}
