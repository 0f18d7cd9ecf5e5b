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
//!
//! A stage may run as several workers ([`spawn_workers`]): each is a loop like any other,
//! with its own report row, metrics (a `worker` label), panics and stall watch; they share
//! the input edge — or several cameras' edges, served in turn — and their results leave in
//! input order ([`workers`] says how).

mod handle;
mod log;
mod report;
mod watchdog;
mod work;
mod workers;

pub use handle::{StageHandle, StageWatch, WorkerWatches};
pub use report::{
    CameraReport, LatencyMeter, LatencyReport, PipelineReport, SinkReport, StageReport, StopReason,
};
pub use watchdog::Watchdog;

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ::metrics::{counter, histogram, Counter, Histogram as MetricHistogram, Label};
use tracing::{info, trace, warn};

use crate::contain;
use crate::error::Chain;
use crate::frame::{Frame, Stamped};
use crate::metrics::{
    FRAMES_TOTAL, FRAME_AGE_SECONDS, FRAME_ERRORS_TOTAL, REASON, STAGE, STAGE_DURATION_SECONDS,
    STAGE_FAILURES_TOTAL, WORKER,
};
use crate::queue::{DropReason, EdgeReceiver, EdgeSender, EdgeWatch};
use crate::stage::{Shutdown, Source, Stage, StageError};
use log::ErrorLog;
use report::record_micros;
use watchdog::Activity;
use work::{Outlet, SourceWork, StageWork, Work};

/// A lane through shared workers: an input edge (a camera's, say) and the output edge its
/// results go to.
pub type Lane<I, O> = (EdgeReceiver<I>, EdgeSender<O>);

/// What the runner measures on a stage's items besides the time `process()` takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Probe {
    #[default]
    None,
    /// Frame age when the stage starts on an item: put on the inference stage.
    FrameAge,
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
        None,
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
    spawn(name, None, work, Some(watch), output, probe)
}

/// Runs one worker per stage in `stages`, each on its own thread, all taking items from the
/// `lanes`' input edges (one lane: a stage between two edges; several: one camera's edges
/// each), in turn, so every lane gets its share however busy another is; each lane's results
/// leave on its output in the order its items were taken. The workers stop as
/// [`spawn_stage`]'s stage does, each on its own: a worker that fails or panics ends, the
/// others go on; they all stop once every lane's input is closed and drained, or every lane's
/// output is gone. Each handle is pushed onto `handles` as its thread starts. More lanes may
/// be added through what it returns while they run.
pub fn spawn_workers<S: Stage>(
    name: &'static str,
    stages: Vec<S>,
    lanes: Vec<Lane<S::In, S::Out>>,
    probe: Probe,
    shutdown: &Shutdown,
    handles: &mut Vec<StageHandle>,
) -> io::Result<Lanes<S::In, S::Out>>
where
    S::In: Stamped,
    S::Out: Stamped,
{
    let (dispatch, resequencers) = workers::lanes(lanes, stages.len());
    let (dispatch, resequencers) = (Arc::new(dispatch), Arc::new(resequencers));
    for (worker, stage) in stages.into_iter().enumerate() {
        let work = StageWork {
            stage,
            input: Arc::clone(&dispatch),
            shutdown: shutdown.clone(),
        };
        let watch = dispatch.watch();
        let output = Arc::clone(&resequencers);
        handles.push(spawn(name, Some(worker), work, watch, output, probe)?);
    }
    Ok(Lanes {
        dispatch,
        resequencers,
    })
}

/// The lanes of running workers ([`spawn_workers`]): a camera added while they run gets one.
pub struct Lanes<I, O> {
    dispatch: Arc<workers::Dispatch<I>>,
    resequencers: Arc<workers::Resequencers<O>>,
}

impl<I, O: Send + 'static> Lanes<I, O> {
    /// Serves `lane` too, in turn with the others, from the workers' next take.
    pub fn add(&self, lane: Lane<I, O>) {
        workers::add(&self.dispatch, &self.resequencers, lane);
    }
}

fn spawn<W, O>(
    name: &'static str,
    worker: Option<usize>,
    work: W,
    input: Option<EdgeWatch>,
    output: O,
    probe: Probe,
) -> io::Result<StageHandle>
where
    W: Work,
    O: Outlet<W::Out, Ticket = W::Ticket>,
{
    // Handles are registered here, on the caller's thread, where the recorder is installed.
    let meters = Meters::new(name, worker, probe);
    let activity = Arc::new(Activity::new());
    let shutdown = work.shutdown().clone();
    let thread = {
        let activity = Arc::clone(&activity);
        let thread_name = match worker {
            Some(worker) => format!("scened-{name}-{worker}"),
            None => format!("scened-{name}"),
        };
        thread::Builder::new()
            .name(thread_name)
            .spawn(move || run_loop(name, worker, work, &output, probe, &meters, &activity))?
    };
    Ok(StageHandle {
        name,
        worker,
        probe,
        input,
        activity,
        shutdown,
        thread,
    })
}

/// A stage's metric labels: its name, and which worker when it runs as several.
pub(super) fn stage_labels(name: &'static str, worker: Option<usize>) -> Vec<Label> {
    let mut labels = vec![Label::new(STAGE, name)];
    labels.extend(worker.map(|worker| Label::new(WORKER, worker.to_string())));
    labels
}

/// `labels` and a `reason`.
pub(super) fn with_reason(labels: &[Label], reason: &'static str) -> Vec<Label> {
    let mut labels = labels.to_vec();
    labels.push(Label::new(REASON, reason));
    labels
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
    fn new(name: &'static str, worker: Option<usize>, probe: Probe) -> Self {
        let labels = stage_labels(name, worker);
        Self {
            frames: counter!(FRAMES_TOTAL, labels.clone()),
            errors: counter!(FRAME_ERRORS_TOTAL, labels.clone()),
            duration: histogram!(STAGE_DURATION_SECONDS, labels.clone()),
            probe: match probe {
                Probe::None => MetricHistogram::noop(),
                Probe::FrameAge => histogram!(FRAME_AGE_SECONDS),
            },
            failed: counter!(STAGE_FAILURES_TOTAL, with_reason(&labels, "failed")),
            panicked: counter!(STAGE_FAILURES_TOTAL, with_reason(&labels, "panicked")),
        }
    }
}

fn run_loop<W, O>(
    name: &'static str,
    worker: Option<usize>,
    mut work: W,
    output: &O,
    probe: Probe,
    meters: &Meters,
    activity: &Activity,
) -> StageReport
where
    W: Work,
    O: Outlet<W::Out, Ticket = W::Ticket>,
{
    info!(stage = name, worker, "stage started");
    let started = Instant::now();
    let mut report = StageReport::new(name, worker, probe, StopReason::EndOfStream);
    let mut error_log = ErrorLog::default();
    let abort = work.shutdown().aborted().clone();
    report.stop = loop {
        let (ticket, input) = match work.take() {
            Ok(taken) => taken,
            Err(reason) => break reason,
        };
        let began = Instant::now();
        activity.start(began);
        if let (Probe::FrameAge, Some(stamp)) = (probe, W::stamp_of(&input)) {
            let age = stamp.age_at(began);
            record_micros(&mut report.probe_micros, age);
            meters.probe.record(age);
        }
        // The stage is not used again after a panic, so state it left half-changed is moot.
        let result = contain::catch(|| work.run(input));
        activity.stop();
        let took = began.elapsed();
        let out = match result {
            Ok(Ok(Some(out))) => out,
            Ok(Ok(None)) => {
                output.release(ticket, &abort);
                break work.finished();
            }
            Ok(Err(error)) => {
                report.count_error(took, meters, activity);
                output.release(ticket, &abort);
                match error {
                    StageError::Item(error) => {
                        error_log.note(name, worker, &*error);
                        continue;
                    }
                    StageError::Fatal(error) => {
                        break StopReason::Failed(Chain(&*error).to_string())
                    }
                }
            }
            Err(panic) => {
                report.count_error(took, meters, activity);
                output.release(ticket, &abort);
                break StopReason::Panicked(panic.0);
            }
        };
        report.frames_in += 1;
        report.frames_out += 1;
        activity.count(true);
        record_micros(&mut report.process_micros, took);
        meters.duration.record(took);
        meters.frames.increment(1);
        trace!(
            stage = name,
            worker,
            seq = out.stamp().seq,
            micros = took.as_micros() as u64,
            "processed"
        );
        if output.put(ticket, out, &abort) == Err(DropReason::Disconnected) {
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
        warn!(stage = name, worker, frames_in = report.frames_in, %stop, "stage stopped");
    } else {
        info!(stage = name, worker, frames_in = report.frames_in, %stop, "stage stopped");
    }
    report
}

impl StageReport {
    fn count_error(&mut self, took: Duration, meters: &Meters, activity: &Activity) {
        activity.count(false);
        self.frames_in += 1;
        self.errors += 1;
        record_micros(&mut self.process_micros, took);
        meters.duration.record(took);
        meters.errors.increment(1);
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
    #[derive(Clone)]
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

        /// Any policy and capacity on both edges, one stage or several workers, item errors
        /// and slow items in any pattern, a sink of any pace: every frame the source made is
        /// delivered, in order, dropped for a counted reason or errored,
        /// `in = out + dropped + errored`.
        #[test]
        fn every_frame_is_accounted_for_whatever_the_policies(
            policies in (policy(), policy()),
            capacities in (1usize..4, 1usize..4),
            workers in prop::option::of(1usize..4),
            frames in 1u64..120,
            failing in prop::collection::vec(any::<bool>(), 7),
            slow in prop::collection::vec(any::<bool>(), 5),
            sink_pause_us in 0u64..300,
        ) {
            let (to_work, work_in) = edge("work", capacities.0, policies.0);
            let (to_sink, sink_in) = edge("sink", capacities.1, policies.1);
            let sink_edge = sink_in.watch();
            let shutdown = Shutdown::new();
            let mut handles = vec![
                spawn_source("capture", source(Some(frames)), to_work, shutdown.clone())
                    .expect("spawn"),
            ];
            // Slow items make workers finish out of order.
            let work = move |frame: Frame| {
                if slow[frame.seq as usize % slow.len()] {
                    thread::sleep(Duration::from_micros(300));
                }
                if failing[frame.seq as usize % failing.len()] {
                    Err(StageError::item("bad frame"))
                } else {
                    Ok(frame)
                }
            };
            match workers {
                None => handles.push(
                    spawn_stage("work", FnStage(work), work_in, to_sink, Probe::None, shutdown)
                        .expect("spawn"),
                ),
                Some(n) => {
                    let stages = vec![FnStage(work); n];
                    let lanes = vec![(work_in, to_sink)];
                    spawn_workers("work", stages, lanes, Probe::None, &shutdown, &mut handles)
                        .expect("spawn");
                }
            }
            let mut delivered = Vec::new();
            while let Some(item) = sink_in.recv() {
                delivered.push(item.seq);
                thread::sleep(Duration::from_micros(sink_pause_us));
            }
            let report = PipelineReport::join(handles);
            prop_assert_eq!(report.stages.len(), 2);
            prop_assert_eq!(report.stages[1].workers.len(), workers.unwrap_or(0));
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
            let work = &report.stages[1];
            let sum = |count: fn(&StageReport) -> u64| work.workers.iter().map(count).sum::<u64>();
            if workers.is_some() {
                prop_assert_eq!(sum(|w| w.frames_in), work.frames_in);
                prop_assert_eq!(sum(|w| w.errors), work.errors);
            }
        }
    }

    /// capture (`frames`) → `stages` as workers (fed per `policy`, capacity 2) → sink, under
    /// a watchdog; the reports and the seqs that reached the sink.
    fn run_workers<F>(
        frames: Option<u64>,
        policy: WhenFull,
        stages: Vec<F>,
        shutdown: &Shutdown,
        stall_after: Duration,
    ) -> (PipelineReport, Vec<u64>)
    where
        F: FnMut(Frame) -> Result<Frame, StageError> + Send + 'static,
    {
        let (to_work, work_in) = edge("work", 2, policy);
        let (to_sink, sink_in) = edge("sink", 4, WhenFull::Block);
        let capture = spawn_source("capture", source(frames), to_work, shutdown.clone());
        let mut handles = vec![capture.expect("spawn")];
        let stages = stages.into_iter().map(FnStage).collect();
        let lanes = vec![(work_in, to_sink)];
        spawn_workers("work", stages, lanes, Probe::None, shutdown, &mut handles).expect("spawn");
        let watchdog = Watchdog::spawn(&handles, shutdown.clone(), stall_after).expect("spawn");
        let mut seen = Vec::new();
        while let Ok(Some(item)) = sink_in.recv_unless(shutdown.aborted()) {
            seen.push(item.seq);
        }
        drop(sink_in);
        let report = PipelineReport::join(handles);
        watchdog.stop();
        (report, seen)
    }

    /// Worker 1 panics on its first frame (the others wait for that, so it gets one): it is
    /// counted as that worker's, the others label the rest, in order.
    #[test]
    fn a_panicking_worker_is_counted_and_the_others_go_on() {
        let gave_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stages: Vec<_> = (0..3)
            .map(|worker| {
                let gave_up = Arc::clone(&gave_up);
                move |frame: Frame| {
                    if worker == 1 {
                        gave_up.store(true, std::sync::atomic::Ordering::SeqCst);
                        panic!("worker 1 gives up");
                    }
                    while !gave_up.load(std::sync::atomic::Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(1));
                    }
                    Ok(frame)
                }
            })
            .collect();
        let shutdown = Shutdown::new();
        let stall_after = Duration::from_secs(60);
        let (recorded, (report, seen)) =
            record(|| run_workers(Some(100), WhenFull::Block, stages, &shutdown, stall_after));
        assert_eq!(seen.len(), 99, "{report}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "order: {seen:?}");
        assert_counts_add_up(&report, seen.len());
        let work = &report.stages[1];
        let stops: Vec<&StopReason> = work.workers.iter().map(|w| &w.stop).collect();
        let gave_up = StopReason::Panicked("worker 1 gives up".into());
        let closed = StopReason::InputClosed;
        assert_eq!(stops, [&closed, &gave_up, &closed]);
        assert_eq!((work.errors, work.workers[1].frames_in), (1, 1));
        assert_eq!(work.stop, gave_up);
        let failure = report.failure().expect("a failure");
        assert_eq!(failure.title(), "work worker 1");
        let worker = |w: &'static str| [(STAGE, "work"), (WORKER, w)];
        let panicked = [(STAGE, "work"), (WORKER, "1"), (REASON, "panicked")];
        assert_eq!(recorded.counter(STAGE_FAILURES_TOTAL, &panicked), Some(1));
        assert_eq!(recorded.counter(FRAME_ERRORS_TOTAL, &worker("1")), Some(1));
        let frames = ["0", "1", "2"].map(|w| recorded.counter(FRAMES_TOTAL, &worker(w)));
        assert_eq!(frames.iter().flatten().sum::<u64>(), 99);
        let text = report.to_string();
        assert!(text.contains(" worker 1 "), "{text}");
    }

    /// Worker 0 hangs on its first frame behind an endless source: the watchdog aborts the
    /// run, the re-sequencer waiting for that frame does not hold anything up, and the report
    /// names the worker.
    #[test]
    fn a_stalled_worker_is_reported_and_nothing_waits_on_it() {
        let (release, stuck) = mpsc::channel::<()>();
        let stuck = Arc::new(std::sync::Mutex::new(stuck));
        let stages: Vec<_> = (0..2)
            .map(|worker| {
                let stuck = Arc::clone(&stuck);
                move |frame: Frame| {
                    if worker == 0 {
                        let _ = stuck.lock().expect("one waiter").recv();
                    }
                    Ok(frame)
                }
            })
            .collect();
        let shutdown = Shutdown::new();
        let stall_after = Duration::from_millis(50);
        let (recorded, (report, _)) =
            record(|| run_workers(None, WhenFull::Block, stages, &shutdown, stall_after));
        drop(release);
        let work = &report.stages[1];
        let stalled = &work.workers[0].stop;
        assert!(
            matches!(stalled, StopReason::Stalled(busy) if *busy >= stall_after),
            "{report}"
        );
        assert_eq!(work.workers[1].stop, StopReason::Aborted, "{report}");
        assert_eq!(
            report.failure().expect("a failure").title(),
            "work worker 0"
        );
        let stalls = [(STAGE, "work"), (WORKER, "0"), (REASON, "stalled")];
        assert_eq!(recorded.counter(STAGE_FAILURES_TOTAL, &stalls), Some(1));
    }

    /// One worker of two is slow (10 ms a frame) and the other cannot run ahead of it by more
    /// than the window: the queue in front fills and drops by its own policy only, the labels
    /// leave in order and every frame is accounted for.
    #[test]
    fn drop_policies_hold_in_front_of_a_slow_worker() {
        const FRAMES: u64 = 60;
        for policy in [WhenFull::Block, WhenFull::DropNewest, WhenFull::DropOldest] {
            let stages: Vec<_> = (0..2)
                .map(|worker| {
                    move |frame: Frame| {
                        if worker == 0 {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Ok(frame)
                    }
                })
                .collect();
            let stall_after = Duration::from_secs(60);
            let (report, seen) =
                run_workers(Some(FRAMES), policy, stages, &Shutdown::new(), stall_after);
            assert!(report.is_clean(), "{report}");
            assert_counts_add_up(&report, seen.len());
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "{policy:?} order: {seen:?}"
            );
            let dropped = report.stages[1].input.as_ref().expect("work input").dropped;
            match policy {
                WhenFull::Block => {
                    // Only a blocking queue waits for the slow worker to be scheduled: a
                    // dropping one may shed the whole burst before its thread first runs.
                    let slow = &report.stages[1].workers[0];
                    assert!(slow.frames_out > 0, "{report}");
                    assert_eq!(seen, (0..FRAMES).collect::<Vec<_>>());
                    assert_eq!(dropped.total(), 0);
                }
                WhenFull::DropNewest => {
                    assert_eq!(seen.first(), Some(&0), "{report}");
                    assert_eq!(dropped.evicted, 0);
                    assert!(dropped.queue_full > 0, "{report}");
                }
                WhenFull::DropOldest => {
                    assert_eq!(seen.last(), Some(&(FRAMES - 1)), "{report}");
                    assert_eq!(dropped.queue_full, 0);
                    assert!(dropped.evicted > 0, "{report}");
                }
            }
        }
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
