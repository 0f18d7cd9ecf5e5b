//! The one thread loop that runs every source and stage: take an item, time `process()`,
//! send the result per the output edge's policy, count everything.
//!
//! A source stops at the end of its stream, on [`Shutdown`], or when its output is gone; a
//! stage stops when its input closes (after finishing what was queued). Either way it drops
//! its output, which closes the edge behind it, so a stop drains the pipeline in order. A
//! panic in `process()` is caught and ends that stage as a failure: its edges close, so the
//! stages around it stop too instead of waiting forever.
//!
//! A stage that stalls (one `process()` call outlasting the stall limit) cannot be stopped
//! from outside its thread; the [`Watchdog`] logs and counts it and aborts the run
//! ([`Shutdown::abort`]): every other stage gives up its waits on the edges and stops, and
//! the join reports the stalled stage without waiting for it. [`report`] holds what a run
//! reports.

mod report;
mod watchdog;

pub use report::{
    LatencyMeter, LatencyReport, PipelineReport, SinkReport, StageReport, StopReason,
};
pub use watchdog::Watchdog;

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ::metrics::{counter, histogram, Counter, Histogram as MetricHistogram};
use tracing::{info, trace, warn};

use crate::contain;
use crate::frame::{Frame, Stamp, Stamped};
use crate::metrics::{
    FRAMES_TOTAL, FRAME_AGE_SECONDS, FRAME_ERRORS_TOTAL, REASON, STAGE, STAGE_DURATION_SECONDS,
    STAGE_FAILURES_TOTAL,
};
use crate::queue::{Aborted, DropReason, EdgeReceiver, EdgeSender, EdgeWatch};
use crate::stage::{Shutdown, Source, Stage, StageError};
use report::record_micros;
use watchdog::Busy;

/// A stage logs at most `ERROR_LOG_BURST` item errors per `ERROR_LOG_INTERVAL`; all are counted.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);
const ERROR_LOG_BURST: u32 = 10;
/// After an abort, how long the join waits for a stage to stop before reporting it stalled:
/// a stage that is not stuck only has to finish its current item.
const ABORT_GRACE: Duration = Duration::from_millis(300);
/// How often a join looks whether its stage has stopped.
const JOIN_POLL: Duration = Duration::from_millis(2);

/// What the runner measures on a stage's items besides the time `process()` takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Probe {
    #[default]
    None,
    /// Frame age when the stage starts on an item: put on the inference stage.
    FrameAge,
}

/// A running source or stage.
pub struct StageHandle {
    name: &'static str,
    probe: Probe,
    input: Option<EdgeWatch>,
    busy: Arc<Busy>,
    shutdown: Shutdown,
    thread: JoinHandle<StageReport>,
}

impl StageHandle {
    /// Waits for the stage to stop. Join the stages upstream first (as
    /// [`PipelineReport::join`] does) so the input edge's counts are final. Panics in
    /// `process()` are in the report; a panic anywhere else in the thread loses the counts
    /// and is reported alone. After an abort, a stage still busy after [`ABORT_GRACE`] is
    /// left running and reported stalled, its counts lost.
    pub fn join(self) -> StageReport {
        let mut aborted_at = None;
        while !self.thread.is_finished() {
            if self.shutdown.is_aborted() {
                let now = Instant::now();
                if now.duration_since(*aborted_at.get_or_insert(now)) >= ABORT_GRACE {
                    let busy = self.busy.busy_for(now).unwrap_or_default();
                    let mut report =
                        StageReport::new(self.name, self.probe, StopReason::Stalled(busy));
                    report.input = self.input.map(|edge| edge.stats());
                    return report;
                }
            }
            thread::sleep(JOIN_POLL);
        }
        let mut report = self.thread.join().unwrap_or_else(|payload| {
            StageReport::new(
                self.name,
                self.probe,
                StopReason::Panicked(contain::message(&*payload)),
            )
        });
        report.input = self.input.map(|edge| edge.stats());
        report
    }
}

/// Runs `source` on its own thread until its stream ends, `shutdown` is triggered or
/// `output`'s consumer is gone.
pub fn spawn_source<S: Source>(
    name: &'static str,
    source: S,
    output: EdgeSender<Frame>,
    shutdown: Shutdown,
) -> io::Result<StageHandle> {
    spawn(
        name,
        SourceWork { source, shutdown },
        None,
        output,
        Probe::None,
    )
}

/// Runs `stage` on its own thread until `input` closes and is drained, `output`'s consumer
/// is gone, or `shutdown` is aborted.
pub fn spawn_stage<S: Stage>(
    name: &'static str,
    stage: S,
    input: EdgeReceiver<S::In>,
    output: EdgeSender<S::Out>,
    probe: Probe,
    shutdown: Shutdown,
) -> io::Result<StageHandle>
where
    S::In: Stamped,
    S::Out: Stamped,
{
    let watch = input.watch();
    let work = StageWork {
        stage,
        input,
        shutdown,
    };
    spawn(name, work, Some(watch), output, probe)
}

/// A source and a stage seen the same way: something that takes an input, then turns it
/// into zero or one output.
trait Work: Send + 'static {
    type In;
    type Out: Stamped + Send + 'static;

    /// The next input, or why there is none.
    fn take(&mut self) -> Result<Self::In, StopReason>;
    /// The stamp to measure frame age from.
    fn stamp_of(input: &Self::In) -> Option<Stamp>;
    /// `Ok(None)`: nothing more will come.
    fn run(&mut self, input: Self::In) -> Result<Option<Self::Out>, StageError>;
    /// Why `run` returned `Ok(None)`.
    fn finished(&self) -> StopReason;
    fn shutdown(&self) -> &Shutdown;
}

struct SourceWork<S> {
    source: S,
    shutdown: Shutdown,
}

impl<S: Source> Work for SourceWork<S> {
    type In = ();
    type Out = Frame;

    fn take(&mut self) -> Result<(), StopReason> {
        if self.shutdown.is_triggered() {
            Err(StopReason::Shutdown)
        } else {
            Ok(())
        }
    }

    fn stamp_of((): &()) -> Option<Stamp> {
        None
    }

    fn run(&mut self, (): ()) -> Result<Option<Frame>, StageError> {
        self.source.next_frame(&self.shutdown)
    }

    fn finished(&self) -> StopReason {
        // A source cut short in a wait by the shutdown request also ends its stream.
        if self.shutdown.is_triggered() {
            StopReason::Shutdown
        } else {
            StopReason::EndOfStream
        }
    }

    fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

struct StageWork<S: Stage> {
    stage: S,
    input: EdgeReceiver<S::In>,
    shutdown: Shutdown,
}

impl<S: Stage> Work for StageWork<S>
where
    S::In: Stamped,
    S::Out: Stamped,
{
    type In = S::In;
    type Out = S::Out;

    fn take(&mut self) -> Result<S::In, StopReason> {
        match self.input.recv_unless(self.shutdown.aborted()) {
            Ok(Some(input)) => Ok(input),
            Ok(None) => Err(StopReason::InputClosed),
            Err(Aborted) => Err(StopReason::Aborted),
        }
    }

    fn stamp_of(input: &S::In) -> Option<Stamp> {
        Some(input.stamp())
    }

    fn run(&mut self, input: S::In) -> Result<Option<S::Out>, StageError> {
        self.stage.process(input).map(Some)
    }

    fn finished(&self) -> StopReason {
        StopReason::InputClosed
    }

    fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

fn spawn<W: Work>(
    name: &'static str,
    work: W,
    input: Option<EdgeWatch>,
    output: EdgeSender<W::Out>,
    probe: Probe,
) -> io::Result<StageHandle> {
    // Handles are registered here, on the caller's thread, where the recorder is installed.
    let meters = Meters::new(name, probe);
    let busy = Arc::new(Busy::new());
    let shutdown = work.shutdown().clone();
    let thread = {
        let busy = Arc::clone(&busy);
        thread::Builder::new()
            .name(format!("scened-{name}"))
            .spawn(move || run_loop(name, work, output, probe, meters, &busy))?
    };
    Ok(StageHandle {
        name,
        probe,
        input,
        busy,
        shutdown,
        thread,
    })
}

/// The stage's metric handles.
struct Meters {
    frames: Counter,
    errors: Counter,
    duration: MetricHistogram,
    probe: MetricHistogram,
    failed: Counter,
    panicked: Counter,
}

impl Meters {
    fn new(name: &'static str, probe: Probe) -> Self {
        Self {
            frames: counter!(FRAMES_TOTAL, STAGE => name),
            errors: counter!(FRAME_ERRORS_TOTAL, STAGE => name),
            duration: histogram!(STAGE_DURATION_SECONDS, STAGE => name),
            probe: match probe {
                Probe::None => MetricHistogram::noop(),
                Probe::FrameAge => histogram!(FRAME_AGE_SECONDS),
            },
            failed: counter!(STAGE_FAILURES_TOTAL, STAGE => name, REASON => "failed"),
            panicked: counter!(STAGE_FAILURES_TOTAL, STAGE => name, REASON => "panicked"),
        }
    }
}

fn run_loop<W: Work>(
    name: &'static str,
    mut work: W,
    output: EdgeSender<W::Out>,
    probe: Probe,
    meters: Meters,
    busy: &Busy,
) -> StageReport {
    info!(stage = name, "stage started");
    let started = Instant::now();
    let mut report = StageReport::new(name, probe, StopReason::EndOfStream);
    let mut error_log = ErrorLog::default();
    report.stop = loop {
        let input = match work.take() {
            Ok(input) => input,
            Err(reason) => break reason,
        };
        let began = Instant::now();
        busy.start(began);
        if let (Probe::FrameAge, Some(stamp)) = (probe, W::stamp_of(&input)) {
            let age = stamp.age_at(began);
            record_micros(&mut report.probe_micros, age);
            meters.probe.record(age);
        }
        // The stage is not used again after a panic, so state it left half-changed is moot.
        let result = contain::catch(|| work.run(input));
        busy.stop();
        let took = began.elapsed();
        let out = match result {
            Ok(Ok(Some(out))) => out,
            Ok(Ok(None)) => break work.finished(),
            Ok(Err(StageError::Item(error))) => {
                report.count_error(took, &meters);
                error_log.note(name, &*error);
                continue;
            }
            Ok(Err(StageError::Fatal(error))) => {
                report.count_error(took, &meters);
                break StopReason::Failed(Chain(&*error).to_string());
            }
            Err(panic) => {
                report.count_error(took, &meters);
                break StopReason::Panicked(panic.0);
            }
        };
        report.frames_in += 1;
        report.frames_out += 1;
        record_micros(&mut report.process_micros, took);
        meters.duration.record(took);
        meters.frames.increment(1);
        trace!(
            stage = name,
            seq = out.stamp().seq,
            micros = took.as_micros() as u64,
            "processed"
        );
        if output.send_unless(out, work.shutdown().aborted()) == Err(DropReason::Disconnected) {
            break if work.shutdown().is_aborted() {
                StopReason::Aborted
            } else {
                StopReason::OutputClosed
            };
        }
    };
    report.elapsed = started.elapsed();
    let stop = &report.stop;
    match stop {
        StopReason::Failed(_) => meters.failed.increment(1),
        StopReason::Panicked(_) => meters.panicked.increment(1),
        _ => {}
    }
    if stop.is_failure() {
        warn!(stage = name, frames_in = report.frames_in, %stop, "stage stopped");
    } else {
        info!(stage = name, frames_in = report.frames_in, %stop, "stage stopped");
    }
    report
}

impl StageReport {
    fn count_error(&mut self, took: Duration, meters: &Meters) {
        self.frames_in += 1;
        self.errors += 1;
        record_micros(&mut self.process_micros, took);
        meters.duration.record(took);
        meters.errors.increment(1);
    }
}

/// Logs item errors in bursts of at most `ERROR_LOG_BURST` per interval, so a source that
/// fails every frame cannot flood the log; each line says how many were left out before it.
#[derive(Default)]
struct ErrorLog {
    interval_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl ErrorLog {
    fn note(&mut self, stage: &'static str, error: &(dyn Error + 'static)) {
        if let Some(suppressed) = self.admit(Instant::now()) {
            warn!(stage, error = %Chain(error), suppressed, "item skipped");
        }
    }

    /// Whether an error at `now` gets logged: `Some(errors left out since the last one)`.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .interval_start
            .is_none_or(|start| now.saturating_duration_since(start) >= ERROR_LOG_INTERVAL)
        {
            self.interval_start = Some(now);
            self.logged = 0;
        }
        if self.logged == ERROR_LOG_BURST {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// An error and its sources, `outer: inner: …`, since library errors leave their source out
/// of their own message.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use proptest::prelude::*;

    use super::*;
    use crate::metrics::testing::record;
    use crate::metrics::{DEADLINE_MISSES_TOTAL, FRAME_LATENCY_SECONDS};
    use crate::queue::tests::policy;
    use crate::queue::{EdgeConfig, WhenFull};
    use crate::source::synthetic::SyntheticConfig;
    use crate::source::Limited;

    /// A stage made of a closure over frames.
    struct FnStage<F>(F);

    impl<F> Stage for FnStage<F>
    where
        F: FnMut(Frame) -> Result<Frame, StageError> + Send + 'static,
    {
        type In = Frame;
        type Out = Frame;

        fn process(&mut self, input: Frame) -> Result<Frame, StageError> {
            (self.0)(input)
        }
    }

    fn edge<T>(
        name: &'static str,
        capacity: usize,
        when_full: WhenFull,
    ) -> (EdgeSender<T>, EdgeReceiver<T>) {
        EdgeConfig {
            capacity,
            when_full,
        }
        .build(name)
        .expect("valid edge")
    }

    /// A tiny synthetic source: `frames` frames as fast as possible, or endless.
    fn source(frames: Option<u64>) -> impl Source {
        let synthetic = SyntheticConfig {
            width: 8,
            height: 8,
            fps: 0.0,
        }
        .build()
        .expect("valid synthetic config");
        Limited::new(synthetic, frames, None)
    }

    fn drain<T: Stamped>(rx: EdgeReceiver<T>) -> Vec<u64> {
        std::iter::from_fn(|| rx.recv())
            .map(|item| item.stamp().seq)
            .collect()
    }

    /// capture → work (`stage`, fed per `policy`) → sink; returns the reports and the seqs
    /// that reached the sink.
    fn run_three<F>(
        source: impl Source,
        policy: WhenFull,
        stage: F,
        shutdown: &Shutdown,
        before_join: impl FnOnce(&StageHandle),
    ) -> (PipelineReport, Vec<u64>)
    where
        F: FnMut(Frame) -> Result<Frame, StageError> + Send + 'static,
    {
        let (to_work, work_in) = edge("work", 2, policy);
        let (to_sink, sink_in) = edge("sink", 4, WhenFull::Block);
        let capture = spawn_source("capture", source, to_work, shutdown.clone()).expect("spawn");
        let work = spawn_stage(
            "work",
            FnStage(stage),
            work_in,
            to_sink,
            Probe::None,
            shutdown.clone(),
        )
        .expect("spawn");
        before_join(&capture);
        let seen = drain(sink_in);
        (PipelineReport::join([capture, work]), seen)
    }

    fn assert_counts_add_up(report: &PipelineReport, reached_sink: usize) {
        for stage in &report.stages {
            assert_eq!(
                stage.frames_in,
                stage.frames_out + stage.errors,
                "{}",
                stage.name
            );
        }
        let produced = report.stages[0].frames_out;
        let dropped: u64 = report
            .stages
            .iter()
            .filter_map(|s| s.input.as_ref())
            .map(|e| e.dropped.total())
            .sum();
        let errors: u64 = report.stages.iter().map(|s| s.errors).sum();
        assert_eq!(produced, reached_sink as u64 + dropped + errors);
    }

    #[test]
    fn block_slows_the_source_and_loses_nothing() {
        let slow = |frame| {
            thread::sleep(Duration::from_millis(1));
            Ok(frame)
        };
        let (report, seen) = run_three(
            source(Some(50)),
            WhenFull::Block,
            slow,
            &Shutdown::new(),
            |_| {},
        );
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_counts_add_up(&report, seen.len());
        assert_eq!(report.stages[0].stop, StopReason::EndOfStream);
        assert_eq!(report.stages[1].stop, StopReason::InputClosed);
        assert!(report.stages[1].process_quantile(0.5) >= Duration::from_millis(1));
    }

    /// A source that, after its first frame, waits for `go` before making the rest.
    struct PauseAfterFirst<S> {
        inner: S,
        go: Option<mpsc::Receiver<()>>,
    }

    impl<S: Source> Source for PauseAfterFirst<S> {
        fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
            let frame = self.inner.next_frame(shutdown)?;
            if frame.as_ref().is_some_and(|f| f.seq == 1) {
                if let Some(go) = self.go.take() {
                    let _ = go.recv();
                }
            }
            Ok(frame)
        }
    }

    /// The work stage takes frame 0 and holds it until the source has finished; the
    /// source makes the other 99 only once the stage holds frame 0. So the edge in front
    /// of the stage starts empty and is full for the rest of the run: the outcome is exact.
    fn run_with_stalled_stage(policy: WhenFull) -> (PipelineReport, Vec<u64>) {
        let (holding, go) = mpsc::channel::<()>();
        let (open_gate, gate) = mpsc::channel::<()>();
        let mut gate = Some(gate);
        let stalled = move |frame| {
            if let Some(gate) = gate.take() {
                let _ = holding.send(());
                let _ = gate.recv();
            }
            Ok(frame)
        };
        let source = PauseAfterFirst {
            inner: source(Some(100)),
            go: Some(go),
        };
        run_three(source, policy, stalled, &Shutdown::new(), |capture| {
            while !capture.thread.is_finished() {
                thread::sleep(Duration::from_millis(1));
            }
            drop(open_gate);
        })
    }

    #[test]
    fn drop_policies_keep_what_they_declare_and_count_the_rest() {
        // Frame 0 is in the stage and the edge holds two: of the other 99, `drop_newest`
        // keeps 1 and 2, `drop_oldest` keeps 98 and 99, and 97 are dropped either way.
        for (policy, kept, queue_full, evicted) in [
            (WhenFull::DropNewest, [0, 1, 2], 97, 0),
            (WhenFull::DropOldest, [0, 98, 99], 0, 97),
        ] {
            let (report, seen) = run_with_stalled_stage(policy);
            assert_eq!(seen, kept, "{policy:?}");
            let edge = report.stages[1].input.as_ref().expect("stage input");
            assert_eq!(
                (edge.dropped.queue_full, edge.dropped.evicted),
                (queue_full, evicted)
            );
            assert_counts_add_up(&report, seen.len());
        }
    }

    #[test]
    fn item_errors_are_counted_and_skipped() {
        let every_third = |frame: Frame| {
            if frame.seq.is_multiple_of(3) {
                Err(StageError::item(format!("frame {} is bad", frame.seq)))
            } else {
                Ok(frame)
            }
        };
        let (report, seen) = run_three(
            source(Some(30)),
            WhenFull::Block,
            every_third,
            &Shutdown::new(),
            |_| {},
        );
        assert_eq!(report.stages[1].errors, 10);
        assert!(seen.iter().all(|seq| seq % 3 != 0));
        assert_eq!(seen.len(), 20);
        assert_counts_add_up(&report, seen.len());
        assert!(report.is_clean());
    }

    #[test]
    fn a_fatal_error_stops_the_stage_and_the_source_behind_it() {
        let fatal_at_5 = |frame: Frame| {
            if frame.seq == 5 {
                Err(StageError::fatal("model file vanished"))
            } else {
                Ok(frame)
            }
        };
        let (report, seen) = run_three(
            source(None),
            WhenFull::Block,
            fatal_at_5,
            &Shutdown::new(),
            |_| {},
        );
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!(
            report.stages[1].stop,
            StopReason::Failed("model file vanished".into())
        );
        assert_eq!(report.stages[0].stop, StopReason::OutputClosed);
        assert!(!report.is_clean());
        assert_counts_add_up(&report, seen.len());
    }

    /// An endless source behind a `Block` edge is the worst case: the panic must close the
    /// edges so nothing waits forever.
    #[test]
    fn a_panicking_stage_is_reported_and_nothing_deadlocks() {
        let panic_at_7 = |frame: Frame| {
            assert!(frame.seq != 7, "bad frame {}", frame.seq);
            Ok(frame)
        };
        let (recorded, (report, seen)) = record(|| {
            run_three(
                source(None),
                WhenFull::Block,
                panic_at_7,
                &Shutdown::new(),
                |_| {},
            )
        });
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        let panicked = [(STAGE, "work"), (REASON, "panicked")];
        assert_eq!(recorded.counter(STAGE_FAILURES_TOTAL, &panicked), Some(1));
        assert_eq!(
            report.stages[1].stop,
            StopReason::Panicked("bad frame 7".into())
        );
        assert_eq!(report.stages[1].errors, 1);
        assert_eq!(report.stages[0].stop, StopReason::OutputClosed);
        assert_counts_add_up(&report, seen.len());
    }

    /// The stage hangs on frame 3 behind an endless source and blocking edges: without the
    /// abort, the source would wait for room and the sink for items forever.
    #[test]
    fn a_stalled_stage_is_reported_and_the_others_stop_without_it() {
        let shutdown = Shutdown::new();
        let (release, stuck) = mpsc::channel::<()>();
        let stall_at_3 = move |frame: Frame| {
            if frame.seq == 3 {
                let _ = stuck.recv();
            }
            Ok(frame)
        };
        let stall_after = Duration::from_millis(50);
        let (recorded, (report, seen)) = record(|| {
            let (to_work, work_in) = edge("work", 2, WhenFull::Block);
            let (to_sink, sink_in) = edge("sink", 2, WhenFull::Block);
            let capture =
                spawn_source("capture", source(None), to_work, shutdown.clone()).expect("spawn");
            let work = FnStage(stall_at_3);
            let work = spawn_stage(
                "work",
                work,
                work_in,
                to_sink,
                Probe::None,
                shutdown.clone(),
            )
            .expect("spawn");
            let handles = [capture, work];
            let watchdog = Watchdog::spawn(&handles, shutdown.clone(), stall_after).expect("spawn");
            let mut seen = Vec::new();
            while let Ok(Some(item)) = sink_in.recv_unless(shutdown.aborted()) {
                seen.push(item.seq);
            }
            let report = PipelineReport::join(handles);
            watchdog.stop();
            (report, seen)
        });
        // The join gave up on the stuck thread; let it finish now.
        drop(release);
        assert_eq!(seen, [0, 1, 2]);
        assert!(
            matches!(report.stages[1].stop, StopReason::Stalled(busy) if busy >= stall_after),
            "{report}"
        );
        let capture = &report.stages[0].stop;
        assert!(
            matches!(capture, StopReason::Aborted | StopReason::Shutdown),
            "{capture}"
        );
        assert!(!report.is_clean());
        let stalled = [(STAGE, "work"), (REASON, "stalled")];
        assert_eq!(recorded.counter(STAGE_FAILURES_TOTAL, &stalled), Some(1));
        assert!(report.to_string().contains("stalled: one item for "));
    }

    #[test]
    fn shutdown_stops_the_source_and_the_rest_drains() {
        let shutdown = Shutdown::new();
        let stopper = shutdown.clone();
        let slow = |frame| {
            thread::sleep(Duration::from_millis(1));
            Ok(frame)
        };
        let (report, seen) = run_three(source(None), WhenFull::Block, slow, &shutdown, move |_| {
            thread::sleep(Duration::from_millis(30));
            stopper.trigger();
        });
        assert_eq!(report.stages[0].stop, StopReason::Shutdown);
        assert_eq!(report.stages[1].stop, StopReason::InputClosed);
        // Everything the source made reached the sink: draining lost nothing.
        assert_eq!(seen, (0..report.stages[0].frames_out).collect::<Vec<_>>());
        assert!(!seen.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any policy and capacity on both edges, item errors in any pattern, a sink of any
        /// pace: every frame the source made is delivered, dropped for a counted reason or
        /// errored, `in = out + dropped + errored`.
        #[test]
        fn every_frame_is_accounted_for_whatever_the_policies(
            policies in (policy(), policy()),
            capacities in (1usize..4, 1usize..4),
            frames in 1u64..120,
            failing in prop::collection::vec(any::<bool>(), 7),
            sink_pause_us in 0u64..300,
        ) {
            let (to_work, work_in) = edge("work", capacities.0, policies.0);
            let (to_sink, sink_in) = edge("sink", capacities.1, policies.1);
            let sink_edge = sink_in.watch();
            let shutdown = Shutdown::new();
            let capture = spawn_source("capture", source(Some(frames)), to_work, shutdown.clone())
                .expect("spawn");
            let fail_some = move |frame: Frame| {
                if failing[frame.seq as usize % failing.len()] {
                    Err(StageError::item("bad frame"))
                } else {
                    Ok(frame)
                }
            };
            let work = spawn_stage("work", FnStage(fail_some), work_in, to_sink, Probe::None, shutdown)
                .expect("spawn");
            let mut delivered = Vec::new();
            while let Some(item) = sink_in.recv() {
                delivered.push(item.seq);
                thread::sleep(Duration::from_micros(sink_pause_us));
            }
            let report = PipelineReport::join([capture, work]);
            let sink = sink_edge.stats();
            let work_edge = report.stages[1].input.as_ref().expect("work input");
            let dropped = work_edge.dropped.total() + sink.dropped.total();
            let errored: u64 = report.stages.iter().map(|s| s.errors).sum();
            prop_assert_eq!(report.stages[0].frames_in, frames);
            prop_assert_eq!(frames, delivered.len() as u64 + dropped + errored);
            prop_assert!(delivered.windows(2).all(|w| w[0] < w[1]), "order kept");
            for (policy, edge) in [(policies.0, work_edge), (policies.1, &sink)] {
                prop_assert_eq!(edge.sent, edge.received + edge.dropped.total());
                if policy == WhenFull::Block {
                    prop_assert_eq!(edge.dropped.total(), 0);
                }
            }
        }
    }

    #[test]
    fn error_logging_is_limited_to_bursts_and_says_what_it_left_out() {
        let mut log = ErrorLog::default();
        let start = Instant::now();
        let admitted: Vec<_> = (0..25).map(|_| log.admit(start)).collect();
        assert_eq!(admitted.iter().flatten().count(), ERROR_LOG_BURST as usize);
        assert!(admitted[10..].iter().all(Option::is_none));
        assert_eq!(log.admit(start + ERROR_LOG_INTERVAL), Some(15));
        assert_eq!(log.admit(start + ERROR_LOG_INTERVAL), Some(0));
    }

    #[test]
    fn an_error_chain_shows_every_source() {
        let io = std::io::Error::other("disk on fire");
        let outer = crate::source::SourceError::Io {
            path: "/clips/a.mjpeg".into(),
            source: io,
        };
        let wrapped = StageError::item(outer);
        assert_eq!(
            Chain(&wrapped).to_string(),
            "cannot read /clips/a.mjpeg: disk on fire"
        );
    }

    #[test]
    fn metrics_and_probes_are_recorded() {
        let (recorded, (report, seen)) = record(|| {
            let (to_infer, infer_in) = edge("infer", 2, WhenFull::Block);
            let (to_sink, sink_in) = edge("sink", 2, WhenFull::Block);
            let capture = spawn_source("capture", source(Some(20)), to_infer, Shutdown::new())
                .expect("spawn");
            let odd_fails = |frame: Frame| {
                if frame.seq % 2 == 1 {
                    Err(StageError::item("odd"))
                } else {
                    Ok(frame)
                }
            };
            let infer = spawn_stage(
                "infer",
                FnStage(odd_fails),
                infer_in,
                to_sink,
                Probe::FrameAge,
                Shutdown::new(),
            )
            .expect("spawn");
            let (to_end, end_in) = edge("end", 2, WhenFull::Block);
            let pass = spawn_stage(
                "smooth",
                FnStage(Ok),
                sink_in,
                to_end,
                Probe::None,
                Shutdown::new(),
            )
            .expect("spawn");
            // The sink measures latency as the pipeline's sink does: every label, once.
            let end = end_in.watch();
            let mut latency = LatencyMeter::new(Some(Duration::ZERO));
            let mut seen = Vec::new();
            while let Some(item) = end_in.recv() {
                latency.record(item.stamp(), Instant::now());
                seen.push(item.seq);
            }
            let mut report = PipelineReport::join([capture, infer, pass]);
            report.sink = Some(SinkReport {
                edge: end.stats(),
                latency: latency.finish(),
            });
            (report, seen)
        });
        assert_eq!(seen.len(), 10);
        let stage = |name| [(STAGE, name)];
        assert_eq!(recorded.counter(FRAMES_TOTAL, &stage("capture")), Some(20));
        assert_eq!(recorded.counter(FRAMES_TOTAL, &stage("infer")), Some(10));
        assert_eq!(
            recorded.counter(FRAME_ERRORS_TOTAL, &stage("infer")),
            Some(10)
        );
        assert_eq!(
            recorded.histogram_len(STAGE_DURATION_SECONDS, &stage("infer")),
            Some(20)
        );
        assert_eq!(recorded.histogram_len(FRAME_AGE_SECONDS, &[]), Some(20));
        assert_eq!(recorded.histogram_len(FRAME_LATENCY_SECONDS, &[]), Some(10));
        assert_eq!(recorded.counter(DEADLINE_MISSES_TOTAL, &[]), Some(10));
        assert_eq!(report.stages[1].probe_micros.len(), 20);
        let sink = report.sink.as_ref().expect("a sink");
        assert_eq!(sink.latency.deadline_misses, 10);

        let text = report.to_string();
        for needle in [
            "capture",
            "infer",
            "smooth",
            "frame age at infer",
            "capture-to-label latency: p50 ",
            "10 over the 0.00 ms deadline",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }
}
