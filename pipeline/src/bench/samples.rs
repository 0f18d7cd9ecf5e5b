//! What `scened bench` records while a run goes: resident memory, sampled on a thread of its
//! own so a stalled pipeline still gets sampled, and the labels' latencies in bounded memory —
//! and the trends read from them (memory growth per hour, p99 drift).

use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::rss;
use crate::stats;

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
