//! Stall detection: a stage stuck in one `process()` call cannot be stopped from outside its
//! thread, so the [`Watchdog`] notices, logs and counts it and aborts the run
//! ([`Shutdown::abort`]): every other stage gives up its waits on the edges and stops.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ::metrics::{counter, Counter};
use tracing::warn;

use super::{stage_labels, with_reason, StageHandle};
use crate::metrics::STAGE_FAILURES_TOTAL;
use crate::stage::Shutdown;

/// What a stage is doing, read from other threads: since when it has been on its current
/// item (for the watchdog), and its counts so far (for `/status`).
#[derive(Debug)]
pub(super) struct Activity {
    epoch: Instant,
    /// Microseconds from `epoch` to the start of the current `process()` call, plus one;
    /// 0 between calls (waiting for input or for room).
    since: AtomicU64,
    frames: AtomicU64,
    errors: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            since: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// Counts an item processed (`ok`) or failed.
    pub(super) fn count(&self, ok: bool) {
        let count = if ok { &self.frames } else { &self.errors };
        count.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub(super) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(super) fn start(&self, now: Instant) {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        self.since.store(
            u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Release,
        );
    }

    pub(super) fn stop(&self) {
        self.since.store(0, Ordering::Release);
    }

    /// How long the current call has run; `None` between calls.
    pub(super) fn busy_for(&self, now: Instant) -> Option<Duration> {
        let since = self.since.load(Ordering::Acquire).checked_sub(1)?;
        Some(now.saturating_duration_since(self.epoch + Duration::from_micros(since)))
    }
}

/// Watches the stages (not sources: their waits are pacing, or a camera's exposure) for one
/// `process()` call outlasting a limit; on one, logs it, counts it in
/// `scened_stage_failures_total{reason="stalled"}` and aborts the run.
pub struct Watchdog {
    stop: crossbeam_channel::Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Starts watching `handles`' stages. Register on the thread with the recorder.
    pub fn spawn<'a>(
        handles: impl IntoIterator<Item = &'a StageHandle>,
        shutdown: Shutdown,
        stall_after: Duration,
    ) -> io::Result<Self> {
        type Watched = (&'static str, Option<usize>, Arc<Activity>, Counter);
        let watched: Vec<Watched> = handles
            .into_iter()
            .filter(|handle| handle.input.is_some())
            .map(|handle| {
                let labels = stage_labels(handle.name, handle.worker);
                let stalls = counter!(STAGE_FAILURES_TOTAL, with_reason(&labels, "stalled"));
                let activity = Arc::clone(&handle.activity);
                (handle.name, handle.worker, activity, stalls)
            })
            .collect();
        let (stop, stopped) = crossbeam_channel::bounded(0);
        // A stall is noticed within a quarter of the limit.
        let poll = (stall_after / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
        let thread = thread::Builder::new()
            .name("scened-watchdog".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(poll)
                {
                    let now = Instant::now();
                    for (stage, worker, activity, stalls) in &watched {
                        let busy_for = activity.busy_for(now);
                        let Some(busy_for) = busy_for.filter(|b| *b > stall_after) else {
                            continue;
                        };
                        warn!(
                            stage,
                            worker,
                            busy_ms = busy_for.as_millis() as u64,
                            "stage stalled on one item; aborting the run"
                        );
                        stalls.increment(1);
                        shutdown.abort();
                        return;
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    pub fn stop(self) {
        drop(self.stop);
        // The thread only waits and reads atomics: it cannot panic.
        let _ = self.thread.join();
    }
}
