//! What a run did, for the final report: each stage's counts, timings and why it stopped
//! ([`StageReport`]), and the labels' capture-to-label latency, measured once where each label
//! leaves the pipeline ([`LatencyMeter`]) — the one value the report, the histogram, the
//! deadline count, the output lines, `/status` and `scened bench` all read. How the report is
//! printed is [`table`]'s.

mod table;

use std::fmt;
use std::time::{Duration, Instant};

use ::metrics::{counter, histogram, Counter, Histogram as MetricHistogram};
use hdrhistogram::Histogram;

use super::{Probe, StageHandle};
use crate::events::{self, Event, StageFailed, Stopped};
use crate::frame::Stamp;
use crate::metrics::{DEADLINE_MISSES_TOTAL, FRAME_LATENCY_SECONDS};
use crate::queue::{DropCounts, EdgeStats};

/// Report histograms hold 1 µs to 10 min at 3 significant figures.
const HISTOGRAM_MAX_MICROS: u64 = 600_000_000;

/// Why a stage's thread ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The source reached the end of its stream.
    EndOfStream,
    /// The source saw the shutdown request.
    Shutdown,
    /// The input edge closed and everything queued on it was processed.
    InputClosed,
    /// The next stage is gone, so there was no one to send to.
    OutputClosed,
    /// `process()` returned a fatal error.
    Failed(String),
    /// `process()` panicked.
    Panicked(String),
    /// Still in one `process()` call (for this long) when the join gave up on it.
    Stalled(Duration),
    /// Stopped because the run was aborted after another stage stalled.
    Aborted,
}

impl StopReason {
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Panicked(_) | Self::Stalled(_))
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EndOfStream => f.write_str("end of stream"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::InputClosed => f.write_str("input closed"),
            Self::OutputClosed => f.write_str("output closed"),
            Self::Failed(error) => write!(f, "failed: {error}"),
            Self::Panicked(message) => write!(f, "panicked: {message}"),
            Self::Stalled(busy) => write!(f, "stalled: one item for {:.1} s", busy.as_secs_f64()),
            Self::Aborted => f.write_str("aborted"),
        }
    }
}

/// What one stage did, for the final report. `frames_in = frames_out + errors`.
#[derive(Clone, Debug)]
pub struct StageReport {
    pub name: &'static str,
    /// The camera whose stage this is, when the run has several.
    pub camera: Option<String>,
    /// Which worker this row is, in a stage's [`workers`](Self::workers).
    pub worker: Option<usize>,
    /// A stage run as several workers: one report each, this one their sum (the slowest's
    /// elapsed time, the first failure's stop). Empty for a stage run once.
    pub workers: Vec<StageReport>,
    /// Items taken: received from the input edge, or read from the source.
    pub frames_in: u64,
    /// Items processed and handed to the output edge (whose policy may still drop them).
    pub frames_out: u64,
    /// Items that failed or panicked.
    pub errors: u64,
    /// The input edge when the stage was joined: what was dropped before reaching this
    /// stage. `None` for a source.
    pub input: Option<EdgeStats>,
    pub elapsed: Duration,
    /// Time per `process()` call, in microseconds.
    pub process_micros: Histogram<u64>,
    pub probe: Probe,
    /// Frame age per the probe, in microseconds; empty for `Probe::None`.
    pub probe_micros: Histogram<u64>,
    pub stop: StopReason,
}

impl StageReport {
    pub(super) fn new(
        name: &'static str,
        worker: Option<usize>,
        probe: Probe,
        stop: StopReason,
    ) -> Self {
        Self {
            name,
            camera: None,
            worker,
            workers: Vec::new(),
            frames_in: 0,
            frames_out: 0,
            errors: 0,
            input: None,
            elapsed: Duration::ZERO,
            process_micros: micros_histogram(),
            probe,
            probe_micros: micros_histogram(),
            stop,
        }
    }

    /// Items out per second over the stage's run time.
    pub fn fps(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.frames_out as f64 / seconds
        } else {
            0.0
        }
    }

    /// `quantile` (0 to 1) of the `process()` time.
    pub fn process_quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.process_micros.value_at_quantile(quantile))
    }

    /// `quantile` (0 to 1) of the probe's measure.
    pub fn probe_quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.probe_micros.value_at_quantile(quantile))
    }

    /// The stage's row over its workers' (all of one stage, in worker order, not empty).
    fn of_workers(workers: Vec<StageReport>) -> Self {
        let first = &workers[0];
        let stop = workers
            .iter()
            .map(|w| &w.stop)
            .find(|stop| stop.is_failure())
            .unwrap_or(&first.stop)
            .clone();
        let mut stage = Self::new(first.name, None, first.probe, stop);
        for worker in &workers {
            stage.frames_in += worker.frames_in;
            stage.frames_out += worker.frames_out;
            stage.errors += worker.errors;
            stage.elapsed = stage.elapsed.max(worker.elapsed);
            // Same bounds on both sides: adding cannot fail.
            let _ = stage.process_micros.add(&worker.process_micros);
            let _ = stage.probe_micros.add(&worker.probe_micros);
        }
        // Every worker's is the same edge; the last one joined has the final counts.
        stage.input = workers.last().and_then(|w| w.input.clone());
        stage.workers = workers
            .into_iter()
            .map(|worker| Self {
                input: None,
                ..worker
            })
            .collect();
        stage
    }

    /// The stage's name, and the worker's for a worker's row: `infer worker 1`.
    pub fn title(&self) -> String {
        let stage = match self.worker {
            Some(worker) => format!("{} worker {worker}", self.name),
            None => self.name.to_owned(),
        };
        match &self.camera {
            Some(camera) => format!("{stage} of camera {camera}"),
            None => stage,
        }
    }
}

pub(super) fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

pub(super) fn record_micros(histogram: &mut Histogram<u64>, duration: Duration) {
    histogram.saturating_record(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
}

/// Capture-to-label latency of every label that left the pipeline.
#[derive(Clone, Debug)]
pub struct LatencyReport {
    /// In microseconds.
    pub micros: Histogram<u64>,
    /// The source's frame period: a later label is a deadline miss. `None` without a pace.
    pub deadline: Option<Duration>,
    pub deadline_misses: u64,
}

impl LatencyReport {
    /// Labels measured.
    pub fn labels(&self) -> u64 {
        self.micros.len()
    }

    /// `quantile` (0 to 1) of the latency.
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.micros.value_at_quantile(quantile))
    }
}

/// Measures each label's latency as it leaves the pipeline, into the report and the metrics.
pub struct LatencyMeter {
    report: LatencyReport,
    histogram: MetricHistogram,
    deadline_misses: Counter,
}

impl LatencyMeter {
    /// Register on the thread where the recorder is installed.
    pub fn new(deadline: Option<Duration>) -> Self {
        Self {
            report: LatencyReport {
                micros: micros_histogram(),
                deadline,
                deadline_misses: 0,
            },
            histogram: histogram!(FRAME_LATENCY_SECONDS),
            deadline_misses: match deadline {
                Some(_) => counter!(DEADLINE_MISSES_TOTAL),
                None => Counter::noop(),
            },
        }
    }

    /// The latency of the label of the frame stamped `stamp`, leaving at `now`; recorded.
    pub fn record(&mut self, stamp: Stamp, now: Instant) -> Duration {
        let latency = stamp.age_at(now);
        record_micros(&mut self.report.micros, latency);
        self.histogram.record(latency);
        if self
            .report
            .deadline
            .is_some_and(|deadline| latency > deadline)
        {
            self.report.deadline_misses += 1;
            self.deadline_misses.increment(1);
        }
        latency
    }

    pub fn finish(self) -> LatencyReport {
        self.report
    }
}

/// Every stage's report, in pipeline order, and what left the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineReport {
    /// Every stage; with several cameras, only the inference workers they share.
    pub stages: Vec<StageReport>,
    /// Where the labels left, when whoever consumed the last stage's output was not a stage.
    pub sink: Option<SinkReport>,
    /// With several cameras, each one's own stages and end.
    pub cameras: Vec<CameraReport>,
}

/// One of several cameras' part of a run.
#[derive(Clone, Debug)]
pub struct CameraReport {
    pub name: String,
    /// Its own stages: capture, resize, smooth.
    pub stages: Vec<StageReport>,
    /// Its edge into the shared inference workers.
    pub infer: EdgeStats,
    pub sink: SinkReport,
    /// How long it ran, when a reload started it after the run: its `stopped` says its own.
    pub seconds: Option<f64>,
}

impl CameraReport {
    /// Drops on its edges, the one into inference included.
    pub fn dropped(&self) -> DropCounts {
        let inputs = self.stages.iter().filter_map(|stage| stage.input.as_ref());
        let edges = inputs.chain([&self.infer, &self.sink.edge]);
        edges.fold(DropCounts::default(), |sum, edge| sum + edge.dropped)
    }

    /// Frames it labelled.
    pub fn labels(&self) -> u64 {
        self.sink.latency.labels()
    }
}

/// The pipeline's end: the edge into the sink and the latency of what came out of it.
#[derive(Clone, Debug)]
pub struct SinkReport {
    pub edge: EdgeStats,
    pub latency: LatencyReport,
}

impl PipelineReport {
    /// Joins every stage, in order; a stage's workers (consecutive handles) become one row
    /// with theirs under it.
    pub fn join(handles: impl IntoIterator<Item = StageHandle>) -> Self {
        let mut stages: Vec<StageReport> = Vec::new();
        let mut workers: Vec<StageReport> = Vec::new();
        for handle in handles {
            let report = handle.join();
            // A stage's workers come one after the other, from worker 0.
            if report.worker.unwrap_or(0) == 0 && !workers.is_empty() {
                stages.push(StageReport::of_workers(std::mem::take(&mut workers)));
            }
            match report.worker {
                Some(_) => workers.push(report),
                None => stages.push(report),
            }
        }
        if !workers.is_empty() {
            stages.push(StageReport::of_workers(workers));
        }
        Self {
            stages,
            sink: None,
            cameras: Vec::new(),
        }
    }

    /// The first stage — or worker of one — that failed, panicked or stalled, if any.
    pub fn failure(&self) -> Option<&StageReport> {
        self.all_stages().find_map(|stage| {
            let failed = |s: &&StageReport| s.stop.is_failure();
            stage
                .workers
                .iter()
                .find(failed)
                .or(Some(stage).filter(failed))
        })
    }

    /// Whether no stage failed, panicked or stalled.
    pub fn is_clean(&self) -> bool {
        self.failure().is_none()
    }

    /// Every edge's drops, summed.
    pub fn dropped(&self) -> DropCounts {
        let inputs = self.stages.iter().filter_map(|stage| stage.input.as_ref());
        let edges = inputs.chain(self.sink.as_ref().map(|sink| &sink.edge));
        let shared = edges.fold(DropCounts::default(), |sum, edge| sum + edge.dropped);
        self.cameras
            .iter()
            .map(CameraReport::dropped)
            .fold(shared, |sum, d| sum + d)
    }

    /// Labels that came out of the pipeline, printed or not.
    pub fn labels(&self) -> u64 {
        let shared = self.sink.as_ref().map_or(0, |sink| sink.latency.labels());
        shared + self.cameras.iter().map(CameraReport::labels).sum::<u64>()
    }

    /// Capture-to-label latency over every camera's labels; the deadline the cameras'
    /// (the first one's, with several of different paces). `None` without a sink.
    pub fn latency(&self) -> Option<LatencyReport> {
        let sinks = self.sink.iter().chain(self.cameras.iter().map(|c| &c.sink));
        sinks
            .map(|sink| sink.latency.clone())
            .reduce(|mut all, one| {
                // Same bounds on both sides: adding cannot fail.
                let _ = all.micros.add(&one.micros);
                all.deadline = all.deadline.or(one.deadline);
                all.deadline_misses += one.deadline_misses;
                all
            })
    }

    /// Frames the sources made, every camera's.
    pub fn captured(&self) -> u64 {
        let cameras = self.cameras.iter().filter_map(|c| c.stages.first());
        let first = match self.cameras.is_empty() {
            true => self.stages.first(),
            false => None,
        };
        first.into_iter().chain(cameras).map(|s| s.frames_out).sum()
    }

    /// Every stage, the cameras' own included.
    fn all_stages(&self) -> impl Iterator<Item = &StageReport> {
        let cameras = self.cameras.iter().flat_map(|camera| &camera.stages);
        self.stages.iter().chain(cameras)
    }
}

/// The report as the event stream says it.
impl PipelineReport {
    /// One `stage_failed` event per stage the report says failed, in pipeline order.
    pub fn failure_events(&self) -> impl Iterator<Item = Event> + '_ {
        self.all_stages().filter_map(|stage| {
            let (reason, error) = match &stage.stop {
                StopReason::Failed(error) => ("failed", error.clone()),
                StopReason::Panicked(message) => ("panicked", message.clone()),
                StopReason::Stalled(_) => ("stalled", stage.stop.to_string()),
                _ => return None,
            };
            Some(Event::StageFailed(StageFailed {
                ts: events::now(),
                stage: stage.name.to_owned(),
                reason: reason.to_owned(),
                error,
                camera: stage.camera.clone(),
            }))
        })
    }

    /// The `stopped` event: the summary of a run that took `seconds`, with the process's
    /// peak memory.
    pub fn stopped_event(&self, seconds: f64, peak_rss_bytes: u64) -> Event {
        let capture = self.stages.first().map(|stage| &stage.stop);
        let errors = self.stages.iter().map(|stage| stage.errors).sum();
        let counts = (self.labels(), self.dropped().total(), errors);
        self.stopped(capture, counts, seconds, peak_rss_bytes, None)
    }

    /// The `stopped` events: [`stopped_event`](Self::stopped_event) with one camera, one per
    /// camera (its own figures) with several.
    pub fn stopped_events(&self, seconds: f64, peak_rss_bytes: u64) -> Vec<Event> {
        if self.cameras.is_empty() {
            return vec![self.stopped_event(seconds, peak_rss_bytes)];
        }
        self.cameras
            .iter()
            .map(|camera| {
                let capture = camera.stages.first().map(|stage| &stage.stop);
                let errors = camera.stages.iter().map(|stage| stage.errors).sum();
                let counts = (camera.labels(), camera.dropped().total(), errors);
                let name = Some(camera.name.clone());
                let seconds = camera.seconds.unwrap_or(seconds);
                self.stopped(capture, counts, seconds, peak_rss_bytes, name)
            })
            .collect()
    }

    /// A `stopped` event: `(frames, drops, errors)` over `seconds`, the run's end as its
    /// `capture` stopped.
    fn stopped(
        &self,
        capture: Option<&StopReason>,
        (frames, drops, errors): (u64, u64, u64),
        seconds: f64,
        peak_rss_bytes: u64,
        camera: Option<String>,
    ) -> Event {
        let reason = if !self.is_clean() {
            "stage_failed"
        } else if capture == Some(&StopReason::EndOfStream) {
            "end_of_stream"
        } else {
            "shutdown"
        };
        Event::Stopped(Stopped {
            ts: events::now(),
            reason: reason.to_owned(),
            frames,
            fps: if seconds > 0.0 {
                events::round(frames as f64 / seconds, 2)
            } else {
                0.0
            },
            drops,
            errors,
            seconds: events::round(seconds, 3),
            peak_rss_mib: events::round(crate::rss::mib(peak_rss_bytes), 1),
            camera,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::testing::record;

    #[test]
    fn the_latency_meter_records_each_label_once_in_report_and_metrics() {
        let (recorded, report) = record(|| {
            let mut meter = LatencyMeter::new(Some(Duration::from_millis(10)));
            let captured_at = Instant::now();
            for (seq, ms) in [(0, 4), (1, 12), (2, 30)] {
                let stamp = Stamp { seq, captured_at };
                let latency = meter.record(stamp, captured_at + Duration::from_millis(ms));
                assert_eq!(latency, Duration::from_millis(ms));
            }
            meter.finish()
        });
        assert_eq!(report.labels(), 3);
        assert_eq!(report.deadline_misses, 2);
        // The median is the 12 ms label, to the histogram's three significant figures.
        let median = report.quantile(0.5).as_micros();
        assert!(median.abs_diff(12_000) < 12, "{median}");
        assert_eq!(recorded.histogram_len(FRAME_LATENCY_SECONDS, &[]), Some(3));
        assert_eq!(recorded.counter(DEADLINE_MISSES_TOTAL, &[]), Some(2));
        // Without a pace nothing is late, and no miss counter is registered.
        let (recorded, report) = record(|| {
            let mut meter = LatencyMeter::new(None);
            let now = Instant::now();
            meter.record(
                Stamp {
                    seq: 0,
                    captured_at: now,
                },
                now + Duration::from_secs(5),
            );
            meter.finish()
        });
        assert_eq!(report.deadline_misses, 0);
        assert_eq!(recorded.counter(DEADLINE_MISSES_TOTAL, &[]), None);
    }
}
