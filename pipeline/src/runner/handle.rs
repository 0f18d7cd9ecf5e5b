//! A running stage as the wiring holds it: joined for its report, watched for `/status`.

use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::report::{StageReport, StopReason};
use super::watchdog::Activity;
use super::Probe;
use crate::contain;
use crate::queue::EdgeWatch;
use crate::stage::Shutdown;

/// After an abort, how long the join waits for a stage to stop before reporting it stalled:
/// a stage that is not stuck only has to finish its current item.
const ABORT_GRACE: Duration = Duration::from_millis(300);
/// How often a join looks whether its stage has stopped.
const JOIN_POLL: Duration = Duration::from_millis(2);

/// A running source or stage.
pub struct StageHandle {
    pub(super) name: &'static str,
    /// Which of the stage's workers, when it runs as several.
    pub(super) worker: Option<usize>,
    pub(super) probe: Probe,
    pub(super) input: Option<EdgeWatch>,
    pub(super) activity: Arc<Activity>,
    pub(super) shutdown: Shutdown,
    pub(super) thread: JoinHandle<StageReport>,
}

/// A live view of a running stage's counts, for `/status`.
#[derive(Clone, Debug)]
pub struct StageWatch {
    pub name: &'static str,
    pub worker: Option<usize>,
    pub(super) activity: Arc<Activity>,
}

impl StageWatch {
    /// Items processed and handed on so far.
    pub fn frames(&self) -> u64 {
        self.activity.frames()
    }

    /// Items failed or panicked on so far.
    pub fn errors(&self) -> u64 {
        self.activity.errors()
    }

    /// How long the current item has been in `process()`; `None` between items.
    pub fn busy_for(&self, now: Instant) -> Option<Duration> {
        self.activity.busy_for(now)
    }
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
                    let busy = self.activity.busy_for(now).unwrap_or_default();
                    let mut report = StageReport::new(
                        self.name,
                        self.worker,
                        self.probe,
                        StopReason::Stalled(busy),
                    );
                    report.input = self.input.map(|edge| edge.stats());
                    return report;
                }
            }
            thread::sleep(JOIN_POLL);
        }
        let mut report = self.thread.join().unwrap_or_else(|payload| {
            StageReport::new(
                self.name,
                self.worker,
                self.probe,
                StopReason::Panicked(contain::message(&*payload)),
            )
        });
        report.input = self.input.map(|edge| edge.stats());
        report
    }

    pub fn watch(&self) -> StageWatch {
        StageWatch {
            name: self.name,
            worker: self.worker,
            activity: Arc::clone(&self.activity),
        }
    }
}

/// A stage's workers' watches, given when they start: how `/status` follows the workers of a
/// pipeline it does not own.
#[derive(Clone, Debug, Default)]
pub struct WorkerWatches(Arc<OnceLock<Vec<StageWatch>>>);

impl WorkerWatches {
    /// The workers have started; only the first call counts.
    pub fn set(&self, watches: Vec<StageWatch>) {
        let _ = self.0.set(watches);
    }

    /// The workers, once started; none before.
    pub fn get(&self) -> &[StageWatch] {
        self.0.get().map_or(&[], Vec::as_slice)
    }
}
