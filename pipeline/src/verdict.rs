//! `[bench]`: the thresholds a bench run is judged by. A floor of its own, so that the config
//! that composes it and the bench that judges by it do not import each other.

use std::time::Duration;

use serde::Deserialize;

use crate::error::Invalid;

/// The defaults pass a healthy run of any config on a modest machine; `config/benchmark.toml`
/// and `config/soak.toml` set their own.
pub const DEFAULT_MIN_FPS: f64 = 5.0;
pub const DEFAULT_MAX_P99_MS: f64 = 1000.0;
pub const DEFAULT_MAX_DEADLINE_MISS_RATIO: f64 = 0.5;
pub const DEFAULT_MAX_DROP_RATIO: f64 = 0.5;
pub const DEFAULT_MAX_RSS_SLOPE_MB_PER_H: f64 = 50.0;
pub const DEFAULT_MAX_P99_DRIFT: f64 = 3.0;
pub const DEFAULT_RSS_SAMPLE_SECONDS: f64 = 1.0;

/// Pass/fail thresholds, and how often memory is sampled.
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
            min_fps: DEFAULT_MIN_FPS,
            max_p99_ms: DEFAULT_MAX_P99_MS,
            max_deadline_miss_ratio: DEFAULT_MAX_DEADLINE_MISS_RATIO,
            max_drop_ratio: DEFAULT_MAX_DROP_RATIO,
            max_rss_slope_mb_per_h: DEFAULT_MAX_RSS_SLOPE_MB_PER_H,
            max_p99_drift: DEFAULT_MAX_P99_DRIFT,
            rss_sample_seconds: DEFAULT_RSS_SAMPLE_SECONDS,
        }
    }
}

impl BenchConfig {
    /// Checks every value; returns the memory sampling interval.
    pub fn check(&self) -> Result<Duration, Invalid> {
        for (field, value) in self.thresholds() {
            let ok = value >= 0.0; // NaN fails too.
            Invalid::check(ok, &format!("bench.{field}"), "a number, 0 or more", value)?;
        }
        Invalid::positive_seconds("bench.rss_sample_seconds", self.rss_sample_seconds)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
