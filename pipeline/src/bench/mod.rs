//! `scened bench`: a pipeline run's throughput, latency, drops and memory, judged against the
//! thresholds of the config's `[bench]` table.
//!
//! Per-stage percentiles and capture-to-label latency come from the run's [`PipelineReport`]
//! (the runner's hdrhistograms). What the report cannot tell — how latency and memory move
//! during the run — comes from the [`samples`] taken alongside.

pub mod capacity;
pub mod samples;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, EdgesConfig};
use crate::pipeline::Pipeline;
use crate::queue::{DropCounts, EdgeConfig};
use crate::rss;
use crate::runner::{CameraReport, LatencyReport, PipelineReport, StageReport};
use crate::source::remote::{decode_cost, DecodeCost};
use crate::source::SourceConfig;
use crate::verdict::BenchConfig;
use samples::{p99_by_tenths, rss_slope_mb_per_h};
pub use samples::{LatencyLog, LatencySample, RssSample, RssSampler};

/// What a bench ran: the settings behind its numbers.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSetup {
    /// The model file's name.
    pub model: String,
    /// Its weights' type.
    pub dtype: String,
    /// Inference workers.
    pub workers: usize,
    /// Threads tract's kernels use per inference (0 or 1: the worker's own).
    pub threads: usize,
    pub source: SourceConfig,
    pub edges: EdgesConfig,
}

impl BenchSetup {
    /// The settings `pipeline` was built with from `config`.
    pub fn new(config: &Config, pipeline: &Pipeline) -> Self {
        let engine = pipeline.engine();
        Self {
            model: engine
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            dtype: engine.inspection().precision().name(),
            workers: pipeline.workers(),
            threads: config.infer.threads,
            source: config.source.clone(),
            edges: config.edges,
        }
    }
}

impl fmt::Display for BenchSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Spelled as in the config file.
        let name = |value: serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        let source = serde_json::to_value(&self.source).unwrap_or_default();
        let edge = |e: EdgeConfig| {
            let policy = serde_json::to_value(e.when_full).unwrap_or_default();
            format!("{} {}", e.capacity, name(policy))
        };
        let pace = self.source.frame_period().map_or_else(
            || "as fast as it goes".to_owned(),
            |period| format!("at {:.1} fps", 1.0 / period.as_secs_f64()),
        );
        writeln!(
            f,
            "setup: {} ({}), {} inference worker(s) × {} tract thread(s), source {} {pace}, \
             queues resize {} / infer {} / smooth {} / sink {}",
            self.model,
            self.dtype,
            self.workers,
            self.threads.max(1),
            name(source["kind"].clone()),
            edge(self.edges.resize),
            edge(self.edges.infer),
            edge(self.edges.smooth),
            edge(self.edges.sink),
        )
    }
}

/// One stage's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub name: &'static str,
    /// Which worker, on a worker's line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
    pub frames_in: u64,
    pub frames_out: u64,
    pub errors: u64,
    pub fps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Dropped on the edge in front of the stage; `None` for the source.
    pub dropped_before: Option<DropCounts>,
    /// A stage run as several workers: a line each, in worker order; empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<StageSummary>,
}

impl StageSummary {
    fn new(stage: &StageReport) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            name: stage.name,
            worker: stage.worker,
            frames_in: stage.frames_in,
            frames_out: stage.frames_out,
            errors: stage.errors,
            fps: stage.fps(),
            p50_ms: ms(stage.process_quantile(0.5)),
            p99_ms: ms(stage.process_quantile(0.99)),
            dropped_before: stage.input.as_ref().map(|e| e.dropped),
            workers: stage.workers.iter().map(Self::new).collect(),
        }
    }
}

/// One threshold against what the run measured. A value the run could not measure (memory
/// on an OS that does not report it, a run too short for a slope or a drift) fails the check,
/// saying why: a verdict must not pass what it did not see. The one threshold that does not
/// apply, the deadline of a source without a pace, passes, saying so.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub limit: f64,
    pub value: Option<f64>,
    pub pass: bool,
    /// Why there is no value.
    pub note: Option<&'static str>,
}

/// Everything `scened bench` reports, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSummary {
    pub pass: bool,
    pub setup: BenchSetup,
    pub seconds: f64,
    /// Labels out of the pipeline.
    pub frames: u64,
    pub fps: f64,
    pub stages: Vec<StageSummary>,
    /// Capture to label, from the report's histogram.
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub drops: DropCounts,
    /// Dropped over the frames the source made.
    pub drop_ratio: f64,
    /// Late labels over labels; `None` when the source has no pace.
    pub deadline_miss_ratio: Option<f64>,
    pub rss_start_mb: Option<f64>,
    pub rss_peak_mb: f64,
    pub rss_end_mb: Option<f64>,
    pub rss_slope_mb_per_h: Option<f64>,
    pub rss_samples: usize,
    pub p99_first_tenth_ms: Option<f64>,
    pub p99_last_tenth_ms: Option<f64>,
    /// `p99_last_tenth_ms / p99_first_tenth_ms`.
    pub p99_drift: Option<f64>,
    /// A network camera's decode stage (H.264 or JPEG, to RGB), inside the capture stage's
    /// time; `None` for other sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode: Option<DecodeCost>,
    pub checks: Vec<Check>,
    /// With several cameras, each one's figures; the ones above are over them all, and
    /// `min_fps` is judged on the slowest camera.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<CameraSummary>,
    /// What held the run back, when something did: inference busy nearly all the run, else
    /// the queue that dropped the most frames.
    pub limited_by: Option<String>,
}

/// The inference workers' busy share of the run at which they, not a queue, are the limit.
const INFERENCE_SATURATED: f64 = 0.9;

/// What held `report`'s run back: inference when its workers were busy at least
/// [`INFERENCE_SATURATED`] of the run, else the queue (by the stage it feeds) that dropped
/// the most frames, if any did.
fn limited_by(report: &PipelineReport) -> Option<String> {
    let infer = report.stages.iter().find(|stage| stage.name == "infer")?;
    let workers = infer.workers.len().max(1) as f64;
    let run = infer.elapsed.as_secs_f64() * workers;
    let busy = infer.process_micros.mean() * infer.process_micros.len() as f64 / 1e6;
    if run > 0.0 && busy / run >= INFERENCE_SATURATED {
        return Some(format!(
            "inference (its workers busy {:.0} % of the run)",
            100.0 * busy / run
        ));
    }
    let cameras = report.cameras.iter();
    let camera_edges = cameras.flat_map(|camera| {
        let inputs = camera
            .stages
            .iter()
            .filter_map(|stage| stage.input.as_ref());
        inputs.chain([&camera.infer, &camera.sink.edge])
    });
    let inputs = report
        .stages
        .iter()
        .filter_map(|stage| stage.input.as_ref());
    let edges = inputs.chain(report.sink.as_ref().map(|sink| &sink.edge));
    let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
    for edge in edges.chain(camera_edges) {
        *dropped.entry(edge.name).or_default() += edge.dropped.total();
    }
    let (queue, most) = dropped.into_iter().max_by_key(|&(_, count)| count)?;
    (most > 0).then(|| format!("the {queue} queue ({most} frames dropped)"))
}

/// One camera's figures in a bench of several.
#[derive(Debug, Clone, Serialize)]
pub struct CameraSummary {
    pub name: String,
    /// Labels out of its end of the pipeline.
    pub frames: u64,
    pub fps: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    /// Its frames dropped on its queues, for any reason.
    pub drops: u64,
    /// Its late labels over its labels; `None` when its source has no pace.
    pub deadline_miss_ratio: Option<f64>,
}

impl CameraSummary {
    fn new(camera: &CameraReport, seconds: f64) -> Self {
        let latency = &camera.sink.latency;
        Self {
            name: camera.name.clone(),
            frames: camera.labels(),
            fps: per_second(camera.labels(), seconds),
            e2e_p50_ms: millis(latency.quantile(0.5)),
            e2e_p99_ms: millis(latency.quantile(0.99)),
            drops: camera.dropped().total(),
            deadline_miss_ratio: miss_ratio(latency),
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Late labels over labels, when there is a deadline and a label.
fn miss_ratio(latency: &LatencyReport) -> Option<f64> {
    let labels = latency.labels();
    (latency.deadline.is_some() && labels > 0)
        .then(|| latency.deadline_misses as f64 / labels as f64)
}

impl BenchSummary {
    /// Sums up a finished run of `seconds` with `setup` and judges it by `config`.
    pub fn new(
        setup: BenchSetup,
        report: &PipelineReport,
        latencies: &[LatencySample],
        rss_samples: &[RssSample],
        seconds: f64,
        config: &BenchConfig,
    ) -> Self {
        let ms = millis;
        let stages = report.stages.iter().map(StageSummary::new).collect();
        let latency = report.latency();
        let latency = latency.as_ref();
        let drops = report.dropped();
        let made = report.captured();
        let frames = report.labels();
        let deadline_miss_ratio = latency.and_then(miss_ratio);
        let cameras = report.cameras.iter();
        let cameras = cameras.map(|camera| CameraSummary::new(camera, seconds));
        let (first, last_tenth) = p99_by_tenths(latencies);
        let mb = |bytes| rss::mib(bytes);
        let mut summary = Self {
            pass: true,
            setup,
            seconds,
            frames,
            fps: per_second(frames, seconds),
            stages,
            e2e_p50_ms: latency.map_or(0.0, |l| ms(l.quantile(0.5))),
            e2e_p99_ms: latency.map_or(0.0, |l| ms(l.quantile(0.99))),
            drops,
            drop_ratio: if made > 0 {
                drops.total() as f64 / made as f64
            } else {
                0.0
            },
            deadline_miss_ratio,
            rss_start_mb: rss_samples.first().map(|s| mb(s.bytes)),
            // The kernel's high-water mark misses pages given back with madvise, which a
            // sample may have seen.
            rss_peak_mb: mb(rss_samples
                .iter()
                .map(|s| s.bytes)
                .fold(rss::peak_bytes(), u64::max)),
            rss_end_mb: rss_samples.last().map(|s| mb(s.bytes)),
            rss_slope_mb_per_h: rss_slope_mb_per_h(rss_samples, seconds),
            rss_samples: rss_samples.len(),
            p99_first_tenth_ms: first.map(ms),
            p99_last_tenth_ms: last_tenth.map(ms),
            p99_drift: first
                .zip(last_tenth)
                .filter(|(first, _)| !first.is_zero())
                .map(|(first, last)| last.as_secs_f64() / first.as_secs_f64()),
            decode: decode_cost(),
            checks: Vec::new(),
            cameras: cameras.collect(),
            limited_by: limited_by(report),
        };
        summary.judge(config);
        summary
    }

    fn judge(&mut self, config: &BenchConfig) {
        let at_least = |name, limit: f64, value: f64| Check {
            name,
            limit,
            value: Some(value),
            pass: value >= limit,
            note: None,
        };
        let at_most = |name, limit: f64, value: Result<f64, &'static str>| Check {
            name,
            limit,
            value: value.ok(),
            pass: value.is_ok_and(|v| v <= limit),
            note: value.err(),
        };
        let deadline = match self.deadline_miss_ratio {
            Some(ratio) => at_most(
                "max_deadline_miss_ratio",
                config.max_deadline_miss_ratio,
                Ok(ratio),
            ),
            None => Check {
                name: "max_deadline_miss_ratio",
                limit: config.max_deadline_miss_ratio,
                value: None,
                pass: true,
                note: Some("not judged: the source has no pace, so no deadline"),
            },
        };
        let rss_slope = self.rss_slope_mb_per_h.ok_or(if self.rss_samples == 0 {
            "not measured: this OS does not report resident memory"
        } else {
            "not measured: fewer than 2 memory samples after the warm-up (the first tenth of \
             the run, at least 10 s); run longer"
        });
        let drift = self
            .p99_drift
            .ok_or("not measured: fewer than 2 labels in the first or the last tenth of the run");
        let slowest = self.cameras.iter().map(|c| c.fps).reduce(f64::min);
        self.checks = vec![
            at_least("min_fps", config.min_fps, slowest.unwrap_or(self.fps)),
            at_most("max_p99_ms", config.max_p99_ms, Ok(self.e2e_p99_ms)),
            deadline,
            at_most("max_drop_ratio", config.max_drop_ratio, Ok(self.drop_ratio)),
            at_most(
                "max_rss_slope_mb_per_h",
                config.max_rss_slope_mb_per_h,
                rss_slope,
            ),
            at_most("max_p99_drift", config.max_p99_drift, drift),
        ];
        self.pass = self.checks.iter().all(|c| c.pass);
    }

    /// The names of the thresholds the run did not meet.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name)
            .collect()
    }
}

impl fmt::Display for BenchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}{unit}"))
        };
        write!(f, "{}", self.setup)?;
        writeln!(
            f,
            "throughput {:.1} fps: {} labels in {:.1} s",
            self.fps, self.frames, self.seconds
        )?;
        writeln!(
            f,
            "capture→label p50 {:.2} ms, p99 {:.2} ms; p99 first tenth {}, last tenth {} (drift ×{})",
            self.e2e_p50_ms,
            self.e2e_p99_ms,
            opt(self.p99_first_tenth_ms, " ms"),
            opt(self.p99_last_tenth_ms, " ms"),
            opt(self.p99_drift, ""),
        )?;
        if let Some(decode) = self.decode {
            writeln!(
                f,
                "decode (in capture): {} frames, mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms",
                decode.frames, decode.mean_ms, decode.p50_ms, decode.p99_ms
            )?;
        }
        let d = self.drops;
        writeln!(
            f,
            "dropped {} of the frames made ({:.2} %): queue full {}, evicted {}, consumer gone {}; deadline misses {}",
            d.total(),
            self.drop_ratio * 100.0,
            d.queue_full,
            d.evicted,
            d.disconnected,
            self.deadline_miss_ratio
                .map_or_else(|| "n/a (no pace)".to_owned(), |r| format!("{:.2} %", r * 100.0)),
        )?;
        writeln!(
            f,
            "RSS start {}, peak {:.1} MB, end {}; slope {} over {} samples (MB = 2^20 bytes)",
            opt(self.rss_start_mb, " MB"),
            self.rss_peak_mb,
            opt(self.rss_end_mb, " MB"),
            opt(self.rss_slope_mb_per_h, " MB/h"),
            self.rss_samples
        )?;
        for camera in &self.cameras {
            writeln!(
                f,
                "camera {}: {:.1} fps ({} labels), p50 {:.2} ms, p99 {:.2} ms, dropped {}, deadline misses {}",
                camera.name,
                camera.fps,
                camera.frames,
                camera.e2e_p50_ms,
                camera.e2e_p99_ms,
                camera.drops,
                opt(camera.deadline_miss_ratio.map(|r| r * 100.0), " %"),
            )?;
        }
        for check in &self.checks {
            let op = if check.name.starts_with("min_") {
                "≥"
            } else {
                "≤"
            };
            let value = match (check.value, check.note) {
                (Some(value), _) => format!("{value:.2}"),
                (None, Some(note)) => format!("n/a ({note})"),
                (None, None) => "n/a".to_owned(),
            };
            writeln!(
                f,
                "  {} {:<24} {value} {op} {}",
                if check.pass { "ok  " } else { "FAIL" },
                check.name,
                check.limit
            )?;
        }
        if let Some(limit) = &self.limited_by {
            writeln!(f, "limited by {limit}")?;
        }
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        writeln!(f, "verdict: {verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minute of labels at 10 a second; memory sampled as `rss` gives.
    fn judged(rss: &[RssSample]) -> BenchSummary {
        let latencies: Vec<LatencySample> = (0..600)
            .map(|i| LatencySample {
                seconds: f64::from(i) / 10.0,
                latency: Duration::from_millis(20),
            })
            .collect();
        let report = PipelineReport {
            stages: Vec::new(),
            sink: None,
            cameras: Vec::new(),
        };
        let config = BenchConfig {
            min_fps: 0.0,
            ..BenchConfig::default()
        };
        let setup = BenchSetup {
            model: "m.tflite".into(),
            dtype: "float32".into(),
            workers: 1,
            threads: 1,
            source: SourceConfig::default(),
            edges: EdgesConfig::default(),
        };
        BenchSummary::new(setup, &report, &latencies, rss, 60.0, &config)
    }

    fn check<'a>(summary: &'a BenchSummary, name: &str) -> &'a Check {
        summary.checks.iter().find(|c| c.name == name).unwrap()
    }

    /// Memory that was not measured fails its threshold, saying why; measured and flat, it
    /// passes. A source without a pace has no deadline to judge, and says so.
    #[test]
    fn a_threshold_without_a_value_fails_with_the_reason() {
        let flat = |seconds: std::ops::Range<u32>| -> Vec<RssSample> {
            seconds
                .map(|s| RssSample {
                    seconds: f64::from(s),
                    bytes: 80 << 20,
                })
                .collect()
        };
        let measured = judged(&flat(0..61));
        assert!(measured.pass, "{measured}");
        assert_eq!(check(&measured, "max_rss_slope_mb_per_h").value, Some(0.0));
        let deadline = check(&measured, "max_deadline_miss_ratio");
        assert!(deadline.pass && deadline.note.unwrap().starts_with("not judged"));

        // An OS that does not report resident memory: no samples at all.
        let unmeasured = judged(&[]);
        assert!(!unmeasured.pass);
        assert_eq!(unmeasured.failed(), ["max_rss_slope_mb_per_h"]);
        let text = unmeasured.to_string();
        assert!(
            text.contains(
                "FAIL max_rss_slope_mb_per_h   n/a (not measured: this OS does not report \
                 resident memory) ≤ 50"
            ),
            "{text}"
        );
        // Samples only during the warm-up: too short to tell growth from start-up.
        let short = judged(&flat(0..5));
        assert_eq!(short.failed(), ["max_rss_slope_mb_per_h"]);
        let note = check(&short, "max_rss_slope_mb_per_h").note.unwrap();
        assert!(note.ends_with("run longer"), "{note}");
        assert!(short.to_string().ends_with("verdict: FAIL\n"));
    }
}
