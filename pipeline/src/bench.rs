//! `scened bench`: a pipeline run's throughput, latency, drops and memory, judged against the
//! thresholds of the config's `[bench]` table.
//!
//! Per-stage and end-to-end percentiles come from the run's [`PipelineReport`] (the runner's
//! hdrhistograms). What the report cannot tell — how latency and memory move during the run —
//! comes from the labels' latencies as the sink sees them and from resident memory sampled on
//! a thread of its own.

use std::fmt;
use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use crate::queue::DropCounts;
use crate::rss;
use crate::runner::{PipelineReport, Probe};
use crate::stats;

/// Pass/fail thresholds, and how often memory is sampled. The defaults pass a healthy run of
/// any config on a modest machine; `config/benchmark.toml` sets its own.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BenchConfig {
    /// Labels per second out of the pipeline, at least.
    pub min_fps: f64,
    /// Capture-to-label latency, 99th percentile, at most (milliseconds).
    pub max_p99_ms: f64,
    /// Share of labels later than the source's frame period, at most (0 to 1). Not checked
    /// when the source has no pace.
    pub max_deadline_miss_ratio: f64,
    /// Share of the source's frames dropped on the way, at most (0 to 1).
    pub max_drop_ratio: f64,
    /// Growth of resident memory, at most (MB per hour, MB = 2^20 bytes; a least-squares fit
    /// over the samples after the warm-up: the first tenth of the run, at least 10 s).
    pub max_rss_slope_mb_per_h: f64,
    /// The latency p99 of the last tenth of the run over that of the first tenth, at most.
    pub max_p99_drift: f64,
    /// Seconds between two samples of resident memory, more than 0.
    pub rss_sample_seconds: f64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            min_fps: 5.0,
            max_p99_ms: 1000.0,
            max_deadline_miss_ratio: 0.5,
            max_drop_ratio: 0.5,
            max_rss_slope_mb_per_h: 50.0,
            max_p99_drift: 3.0,
            rss_sample_seconds: 1.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bench.{field} must be {expected}, got {value}")]
pub struct BenchConfigError {
    field: &'static str,
    expected: &'static str,
    value: f64,
}

impl BenchConfig {
    /// Checks every value; returns the memory sampling interval.
    pub fn check(&self) -> Result<Duration, BenchConfigError> {
        let invalid = |field, expected, value| {
            Err(BenchConfigError {
                field,
                expected,
                value,
            })
        };
        for (field, value) in self.thresholds() {
            if value.is_nan() || value < 0.0 {
                return invalid(field, "a number, 0 or more", value);
            }
        }
        match Duration::try_from_secs_f64(self.rss_sample_seconds) {
            Ok(every) if !every.is_zero() => Ok(every),
            _ => invalid("rss_sample_seconds", "more than 0", self.rss_sample_seconds),
        }
    }

    fn thresholds(&self) -> [(&'static str, f64); 6] {
        [
            ("min_fps", self.min_fps),
            ("max_p99_ms", self.max_p99_ms),
            ("max_deadline_miss_ratio", self.max_deadline_miss_ratio),
            ("max_drop_ratio", self.max_drop_ratio),
            ("max_rss_slope_mb_per_h", self.max_rss_slope_mb_per_h),
            ("max_p99_drift", self.max_p99_drift),
        ]
    }
}

/// Resident memory at some point of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RssSample {
    /// Since the sampler started.
    pub seconds: f64,
    pub bytes: u64,
}

/// Samples resident memory on its own thread until [`RssSampler::finish`], so a stalled
/// pipeline still gets sampled.
pub struct RssSampler {
    stop: Sender<()>,
    thread: JoinHandle<Vec<RssSample>>,
}

impl RssSampler {
    /// Takes a sample now, then one every `every`.
    pub fn start(every: Duration) -> io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let started = Instant::now();
        let thread = thread::Builder::new()
            .name("scened-rss".into())
            .spawn(move || {
                let mut samples = Vec::new();
                let sample = |samples: &mut Vec<RssSample>| {
                    if let Some(bytes) = rss::current_bytes() {
                        let seconds = started.elapsed().as_secs_f64();
                        samples.push(RssSample { seconds, bytes });
                    }
                };
                loop {
                    sample(&mut samples);
                    if stopped.recv_timeout(every) != Err(RecvTimeoutError::Timeout) {
                        sample(&mut samples);
                        break samples;
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Takes a last sample and returns them all, oldest first.
    pub fn finish(self) -> Vec<RssSample> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// A label's latency as the sink saw it, `seconds` after the run started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySample {
    pub seconds: f64,
    pub latency: Duration,
}

/// Labels a [`LatencyLog`] holds at most (192 KiB).
const LATENCY_LOG_CAPACITY: usize = 8192;

/// Label latencies over a run in bounded memory, so a soak's own bookkeeping does not show
/// up as memory growth: every label while there is room, then every other one of those and
/// of the labels after, and so on. What is kept stays spread evenly over the run.
#[derive(Debug, Default)]
pub struct LatencyLog {
    samples: Vec<LatencySample>,
    /// Every `stride`-th label is kept.
    stride: u64,
    seen: u64,
}

impl LatencyLog {
    pub fn new() -> Self {
        Self {
            samples: Vec::with_capacity(LATENCY_LOG_CAPACITY),
            stride: 1,
            seen: 0,
        }
    }

    pub fn push(&mut self, sample: LatencySample) {
        if self.seen.is_multiple_of(self.stride) {
            if self.samples.len() == LATENCY_LOG_CAPACITY {
                let mut index = 0;
                self.samples.retain(|_| {
                    index += 1;
                    index % 2 == 1
                });
                self.stride *= 2;
            }
            if self.seen.is_multiple_of(self.stride) {
                self.samples.push(sample);
            }
        }
        self.seen += 1;
    }

    /// The kept labels, oldest first.
    pub fn samples(&self) -> &[LatencySample] {
        &self.samples
    }
}

/// Dropped items by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Drops {
    pub queue_full: u64,
    pub evicted: u64,
    pub consumer_gone: u64,
}

impl From<DropCounts> for Drops {
    fn from(d: DropCounts) -> Self {
        Self {
            queue_full: d.queue_full,
            evicted: d.evicted,
            consumer_gone: d.disconnected,
        }
    }
}

impl Drops {
    fn total(&self) -> u64 {
        self.queue_full + self.evicted + self.consumer_gone
    }
}

/// One stage's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub name: &'static str,
    pub frames_in: u64,
    pub frames_out: u64,
    pub errors: u64,
    pub fps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Dropped on the edge in front of the stage; `None` for the source.
    pub dropped_before: Option<Drops>,
}

/// One threshold against what the run measured; `value` is `None` when the run cannot tell
/// (no pace, too short), and then the check passes.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub limit: f64,
    pub value: Option<f64>,
    pub pass: bool,
}

/// Everything `scened bench` reports, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSummary {
    pub pass: bool,
    pub seconds: f64,
    /// Labels out of the last stage.
    pub frames: u64,
    pub fps: f64,
    pub stages: Vec<StageSummary>,
    /// Capture to label, from the last stage's histogram.
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub drops: Drops,
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
    pub checks: Vec<Check>,
}

impl BenchSummary {
    /// Sums up a finished run of `seconds` and judges it by `config`.
    pub fn new(
        report: &PipelineReport,
        latencies: &[LatencySample],
        rss_samples: &[RssSample],
        seconds: f64,
        config: &BenchConfig,
    ) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let stages: Vec<StageSummary> = report
            .stages
            .iter()
            .map(|s| StageSummary {
                name: s.name,
                frames_in: s.frames_in,
                frames_out: s.frames_out,
                errors: s.errors,
                fps: s.fps(),
                p50_ms: ms(s.process_quantile(0.5)),
                p99_ms: ms(s.process_quantile(0.99)),
                dropped_before: s.input.as_ref().map(|e| e.dropped.into()),
            })
            .collect();
        let last = report
            .stages
            .iter()
            .rfind(|s| matches!(s.probe, Probe::Latency { .. }));
        let edges = report
            .stages
            .iter()
            .filter_map(|s| s.input.as_ref())
            .chain(report.sink.as_ref());
        let drops = edges.fold(
            Drops {
                queue_full: 0,
                evicted: 0,
                consumer_gone: 0,
            },
            |sum, edge| Drops {
                queue_full: sum.queue_full + edge.dropped.queue_full,
                evicted: sum.evicted + edge.dropped.evicted,
                consumer_gone: sum.consumer_gone + edge.dropped.disconnected,
            },
        );
        let made = report.stages.first().map_or(0, |s| s.frames_out);
        let frames = last.map_or(0, |s| s.frames_out);
        let deadline_miss_ratio = last.and_then(|s| match s.probe {
            Probe::Latency { deadline: Some(_) } if s.frames_out > 0 => {
                Some(s.deadline_misses as f64 / s.frames_out as f64)
            }
            _ => None,
        });
        let (first, last_tenth) = p99_by_tenths(latencies);
        let mb = |bytes| rss::mib(bytes);
        let mut summary = Self {
            pass: true,
            seconds,
            frames,
            fps: if seconds > 0.0 {
                frames as f64 / seconds
            } else {
                0.0
            },
            stages,
            e2e_p50_ms: last.map_or(0.0, |s| ms(s.probe_quantile(0.5))),
            e2e_p99_ms: last.map_or(0.0, |s| ms(s.probe_quantile(0.99))),
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
            checks: Vec::new(),
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
        };
        let at_most = |name, limit: f64, value: Option<f64>| Check {
            name,
            limit,
            value,
            pass: value.is_none_or(|v| v <= limit),
        };
        self.checks = vec![
            at_least("min_fps", config.min_fps, self.fps),
            at_most("max_p99_ms", config.max_p99_ms, Some(self.e2e_p99_ms)),
            at_most(
                "max_deadline_miss_ratio",
                config.max_deadline_miss_ratio,
                self.deadline_miss_ratio,
            ),
            at_most(
                "max_drop_ratio",
                config.max_drop_ratio,
                Some(self.drop_ratio),
            ),
            at_most(
                "max_rss_slope_mb_per_h",
                config.max_rss_slope_mb_per_h,
                self.rss_slope_mb_per_h,
            ),
            at_most("max_p99_drift", config.max_p99_drift, self.p99_drift),
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

/// The least part of a run [`rss_slope_mb_per_h`] counts as warm-up: the first frames size
/// tract's and the decoder's buffers, and on a loaded machine they can take seconds.
const WARM_UP_AT_LEAST_SECONDS: f64 = 10.0;

/// Least-squares growth of resident memory in MB per hour, over the samples after the
/// warm-up: the first tenth of a run of `seconds`, at least 10 s (start-up allocates; that is
/// not a leak). `None` with fewer than two such samples.
pub fn rss_slope_mb_per_h(samples: &[RssSample], seconds: f64) -> Option<f64> {
    let warm_up = (seconds / 10.0).max(WARM_UP_AT_LEAST_SECONDS);
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.seconds >= warm_up)
        .map(|s| (s.seconds / 3600.0, rss::mib(s.bytes)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    stats::slope(&points)
}

/// The latency p99 over the first and over the last tenth of the time the latencies span;
/// `None` for a tenth with fewer than two labels.
pub fn p99_by_tenths(latencies: &[LatencySample]) -> (Option<Duration>, Option<Duration>) {
    let (Some(first), Some(last)) = (latencies.first(), latencies.last()) else {
        return (None, None);
    };
    let tenth = (last.seconds - first.seconds) / 10.0;
    let p99 = |keep: &dyn Fn(f64) -> bool| {
        let mut secs: Vec<f64> = latencies
            .iter()
            .filter(|l| keep(l.seconds))
            .map(|l| l.latency.as_secs_f64())
            .collect();
        if secs.len() < 2 {
            return None;
        }
        secs.sort_by(f64::total_cmp);
        stats::quantile(&secs, 0.99).map(Duration::from_secs_f64)
    };
    (
        p99(&|t| t <= first.seconds + tenth),
        p99(&|t| t >= last.seconds - tenth),
    )
}

impl fmt::Display for BenchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}{unit}"))
        };
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
        let d = self.drops;
        writeln!(
            f,
            "dropped {} of the frames made ({:.2} %): queue full {}, evicted {}, consumer gone {}; deadline misses {}",
            d.total(),
            self.drop_ratio * 100.0,
            d.queue_full,
            d.evicted,
            d.consumer_gone,
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
        for check in &self.checks {
            let op = if check.name.starts_with("min_") {
                "≥"
            } else {
                "≤"
            };
            writeln!(
                f,
                "  {} {:<24} {} {op} {}",
                if check.pass { "ok  " } else { "FAIL" },
                check.name,
                opt(check.value, ""),
                check.limit
            )?;
        }
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        writeln!(f, "verdict: {verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(mb: f64) -> u64 {
        (mb * f64::from(1 << 20)) as u64
    }

    #[test]
    fn rss_slope_is_a_least_squares_fit_after_the_warm_up() {
        // A 100 s run: start-up jumps from 50 to 80 MB in the first tenth, then memory grows
        // by 0.01 MB a second (36 MB/h) with ±0.5 MB of alternating noise.
        let mut samples: Vec<RssSample> = (0..10)
            .map(|s| RssSample {
                seconds: f64::from(s),
                bytes: mb(50.0 + 3.0 * f64::from(s)),
            })
            .collect();
        samples.extend((10..=100).map(|s| RssSample {
            seconds: f64::from(s),
            bytes: mb(80.0 + 0.01 * f64::from(s) + if s % 2 == 0 { 0.5 } else { -0.5 }),
        }));
        let slope = rss_slope_mb_per_h(&samples, 100.0).unwrap();
        // Noise alternating over 91 points leaves the fit off by under 1 %.
        assert!((slope - 36.0).abs() < 0.4, "{slope}");
        // Flat after the warm-up: no growth, whatever the start-up did.
        let flat: Vec<RssSample> = samples
            .iter()
            .map(|s| RssSample {
                bytes: if s.seconds >= 10.0 { mb(80.0) } else { s.bytes },
                ..*s
            })
            .collect();
        assert_eq!(rss_slope_mb_per_h(&flat, 100.0), Some(0.0));
        assert_eq!(rss_slope_mb_per_h(&samples[..1], 100.0), None);
        // A 30 s run whose start-up took 8 s (a loaded machine): still warm-up, not growth.
        let short: Vec<RssSample> = flat[..=30]
            .iter()
            .map(|s| RssSample {
                bytes: if s.seconds < 8.0 {
                    mb(50.0 + 4.0 * s.seconds)
                } else {
                    mb(82.0)
                },
                ..*s
            })
            .collect();
        assert_eq!(rss_slope_mb_per_h(&short, 30.0), Some(0.0));
    }

    #[test]
    fn the_latency_log_stays_bounded_and_spread_over_the_run() {
        let mut log = LatencyLog::new();
        let labels = 100_000u32;
        for i in 0..labels {
            log.push(LatencySample {
                seconds: f64::from(i) / 30.0,
                latency: Duration::from_micros(u64::from(i)),
            });
        }
        let kept = log.samples();
        assert!(kept.len() <= LATENCY_LOG_CAPACITY);
        assert!(kept.len() > LATENCY_LOG_CAPACITY / 2, "{}", kept.len());
        assert_eq!(
            log.samples.capacity(),
            LATENCY_LOG_CAPACITY,
            "never reallocated"
        );
        // Evenly spaced from the first label to (nearly) the last.
        let step = kept[1].latency - kept[0].latency;
        assert_eq!(kept[0].latency, Duration::ZERO);
        assert!(kept.windows(2).all(|w| w[1].latency - w[0].latency == step));
        let last = kept.last().unwrap().latency.as_micros() as u32;
        assert!(labels - last <= step.as_micros() as u32, "{last}");
    }

    #[test]
    fn p99_drift_compares_the_first_and_last_tenth_of_the_time() {
        // 1000 labels over 100 s at 10 ms; the last tenth at 30 ms; two 90 ms outliers in the
        // first tenth (of its 100 labels: the p99, by nearest rank, is the second highest).
        let run = |outliers: &[u32]| -> Vec<LatencySample> {
            (0..1000)
                .map(|i| {
                    let seconds = f64::from(i) * 0.1;
                    let ms = if outliers.contains(&i) {
                        90
                    } else if seconds > 90.0 {
                        30
                    } else {
                        10
                    };
                    LatencySample {
                        seconds,
                        latency: Duration::from_millis(ms),
                    }
                })
                .collect()
        };
        let (first, last) = p99_by_tenths(&run(&[5, 6]));
        assert_eq!(first, Some(Duration::from_millis(90)));
        assert_eq!(last, Some(Duration::from_millis(30)));
        // One outlier in a hundred is the maximum, not the p99.
        let (first, _) = p99_by_tenths(&run(&[5]));
        assert_eq!(first, Some(Duration::from_millis(10)));
        // An outlier outside both tenths changes neither.
        let (first, last) = p99_by_tenths(&run(&[500, 501, 502]));
        assert_eq!(
            (first, last),
            (
                Some(Duration::from_millis(10)),
                Some(Duration::from_millis(30))
            )
        );
        assert_eq!(p99_by_tenths(&[]), (None, None));
        assert_eq!(p99_by_tenths(&run(&[])[..1]), (None, None));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        assert_eq!(
            BenchConfig::default().check().unwrap(),
            Duration::from_secs(1)
        );
        let err = BenchConfig {
            max_p99_ms: f64::NAN,
            ..BenchConfig::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bench.max_p99_ms must be a number, 0 or more, got NaN"
        );
        let err = BenchConfig {
            rss_sample_seconds: 0.0,
            ..BenchConfig::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bench.rss_sample_seconds must be more than 0, got 0"
        );
    }

    #[test]
    fn the_sampler_samples_at_start_and_at_finish() {
        let sampler = RssSampler::start(Duration::from_millis(5)).unwrap();
        thread::sleep(Duration::from_millis(60));
        let samples = sampler.finish();
        if cfg!(target_os = "linux") {
            // How many come between depends on the scheduler; the first and last do not.
            assert!(samples.len() >= 2, "{samples:?}");
            assert!(samples.last().unwrap().seconds >= 0.06, "{samples:?}");
            assert!(samples.windows(2).all(|w| w[0].seconds < w[1].seconds));
            assert!(samples.iter().all(|s| s.bytes > 0));
        }
    }
}
