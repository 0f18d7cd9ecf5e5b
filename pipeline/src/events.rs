//! The event stream: everything scened tells the world, as one kind of JSON object with an
//! `event` field — a label, the source lost and back, a stage failed, the run started and
//! stopped. stdout, MQTT and the HTTP side's `/events` all carry these same objects.
//!
//! [`Events`] fans each published event out to its subscribers, in one order for all of them.
//! Each [`Subscription`] has its own bounded queue and its own declared policy for when it is
//! full ([`WhenFull`]): a network consumer drops its oldest and counts what it dropped, so a
//! slow one never holds back the pipeline or the others; stdout blocks, so a slow reader of
//! the labels holds back the pipeline, as `[edges.sink]` says, rather than lose lines.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ::metrics::Counter;
use serde::{Deserialize, Serialize};

use crate::pipeline::LabelEvent;
use crate::queue::WhenFull;
use crate::runner::{PipelineReport, StopReason};

/// One line of the stream. Serialized, the variant is the `event` field and its fields sit
/// beside it: `{"event":"label","frame":812,"ts":"2026-01-01T12:00:00.123Z",…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Label(Label),
    SourceLost(SourceLost),
    SourceBack(SourceBack),
    StageFailed(StageFailed),
    Started(Started),
    Stopped(Stopped),
}

/// A smoothed label: the line scened has always printed, with the same fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The frame's sequence number at the source.
    pub frame: u64,
    /// Capture time, RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub label: String,
    /// The smoother's score for `label`, to four decimals.
    pub score: f64,
    /// Capture to label, to a tenth of a millisecond.
    pub latency_ms: f64,
}

/// The source stopped delivering; it is reopened after `retry_in_ms`, then again with
/// backoff until it is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLost {
    pub ts: String,
    /// What the source is, e.g. `camera 0`.
    pub source: String,
    /// Why it is lost: the error and its causes.
    pub reason: String,
    /// Times it was lost and reopened before in this run.
    pub reconnects: u64,
    pub retry_in_ms: u64,
}

/// A lost source reopened: frames flow again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBack {
    pub ts: String,
    pub source: String,
    /// Times it was lost and reopened in this run, this one included.
    pub reconnects: u64,
    /// Reopen attempts this time, the one that worked included.
    pub attempts: u64,
    /// From the loss to the reopen.
    pub down_ms: u64,
}

/// A stage stopped by a fault; the run ends, non-zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFailed {
    pub ts: String,
    /// `capture`, `resize`, `infer` or `smooth`.
    pub stage: String,
    /// `failed` (a fatal error), `panicked` or `stalled`, as in `scened_stage_failures_total`.
    pub reason: String,
    /// What went wrong, as the report says it.
    pub error: String,
}

/// The model is loaded, the source open and frames about to flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub ts: String,
    /// The model file's name.
    pub model: String,
    /// Its weights' type: `float32`, `int8`, `uint8`.
    pub dtype: String,
    /// What the source is, e.g. `camera 0`, `clip (built-in demo clip)`.
    pub source: String,
    /// `[telemetry] camera`, `default` when unset.
    pub camera: String,
    /// Inference workers (frames in parallel: throughput) and threads per inference (one
    /// frame split between cores: latency), as the run uses them (docs/inference.md).
    pub workers: usize,
    pub threads: usize,
}

/// The run is over: the report's summary. Always the last event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stopped {
    pub ts: String,
    /// `end_of_stream` (the source ended, or a `[stop]` limit was reached), `shutdown` (a
    /// signal, or the output went away) or `stage_failed`.
    pub reason: String,
    /// Frames labelled (each came out of the pipeline, printed or not).
    pub frames: u64,
    /// Frames labelled per second over the run.
    pub fps: f64,
    /// Frames dropped on the queues, for any reason.
    pub drops: u64,
    /// Frames a stage failed on and skipped.
    pub errors: u64,
    pub seconds: f64,
    /// The process's peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

/// Wall-clock time as every event's `ts` shows it.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn now() -> String {
    timestamp(SystemTime::now())
}

/// `x` rounded to `decimals` places: f32 scores printed as f64 show noise digits.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl From<&LabelEvent> for Label {
    fn from(event: &LabelEvent) -> Self {
        Self {
            frame: event.frame,
            ts: timestamp(event.captured),
            label: event.label.clone(),
            score: round(f64::from(event.score), 4),
            latency_ms: round(event.latency.as_secs_f64() * 1e3, 1),
        }
    }
}

impl Event {
    /// The `event` field's value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Label(_) => "label",
            Self::SourceLost(_) => "source_lost",
            Self::SourceBack(_) => "source_back",
            Self::StageFailed(_) => "stage_failed",
            Self::Started(_) => "started",
            Self::Stopped(_) => "stopped",
        }
    }

    /// The source lost now, `reconnects` times before, reopened after `retry_in`.
    pub fn source_lost(
        source: String,
        reason: String,
        reconnects: u64,
        retry_in: Duration,
    ) -> Self {
        Self::SourceLost(SourceLost {
            ts: now(),
            source,
            reason,
            reconnects,
            retry_in_ms: millis(retry_in),
        })
    }

    /// The source back now, after being lost since `lost_at`.
    pub fn source_back(source: String, reconnects: u64, attempts: u64, lost_at: Instant) -> Self {
        Self::SourceBack(SourceBack {
            ts: now(),
            source,
            reconnects,
            attempts,
            down_ms: millis(lost_at.elapsed()),
        })
    }

    /// The run starts: `workers` inference workers of `threads` threads each.
    pub fn started(
        model: &str,
        dtype: &str,
        source: String,
        camera: &str,
        (workers, threads): (usize, usize),
    ) -> Self {
        Self::Started(Started {
            ts: now(),
            model: model.to_owned(),
            dtype: dtype.to_owned(),
            source,
            camera: camera.to_owned(),
            workers,
            threads,
        })
    }

    /// One `stage_failed` per stage the report says failed, in pipeline order.
    pub fn stage_failures(report: &PipelineReport) -> impl Iterator<Item = Self> + '_ {
        report.stages.iter().filter_map(|stage| {
            let (reason, error) = match &stage.stop {
                StopReason::Failed(error) => ("failed", error.clone()),
                StopReason::Panicked(message) => ("panicked", message.clone()),
                StopReason::Stalled(_) => ("stalled", stage.stop.to_string()),
                _ => return None,
            };
            Some(Self::StageFailed(StageFailed {
                ts: now(),
                stage: stage.name.to_owned(),
                reason: reason.to_owned(),
                error,
            }))
        })
    }

    /// The summary of a run that took `seconds`, with the process's peak memory.
    pub fn stopped(report: &PipelineReport, seconds: f64, peak_rss_bytes: u64) -> Self {
        let capture = report.stages.first().map(|stage| &stage.stop);
        let reason = if !report.is_clean() {
            "stage_failed"
        } else if capture == Some(&StopReason::EndOfStream) {
            "end_of_stream"
        } else {
            "shutdown"
        };
        let frames = report.labels();
        Self::Stopped(Stopped {
            ts: now(),
            reason: reason.to_owned(),
            frames,
            fps: if seconds > 0.0 {
                round(frames as f64 / seconds, 2)
            } else {
                0.0
            },
            drops: report.dropped().total(),
            errors: report.stages.iter().map(|stage| stage.errors).sum(),
            seconds: round(seconds, 3),
            peak_rss_mib: round(crate::rss::mib(peak_rss_bytes), 1),
        })
    }

    /// The event as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and numbers serialize")
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes each event of `subscription` to `out` as a line of JSON, flushed, until the stream
/// closes. On a write error the subscription is dropped, so a publisher waiting for room in
/// it goes on.
pub fn write_lines(subscription: Subscription, mut out: impl Write) -> io::Result<()> {
    while let Some(event) = subscription.recv() {
        writeln!(out, "{event}")?;
        out.flush()?;
    }
    Ok(())
}

/// The stream: a cheap handle, cloned for every publisher and shared with whoever subscribes.
/// Until a subscriber comes, publishing costs a lock and nothing else.
#[derive(Clone, Default)]
pub struct Events(Arc<Bus>);

#[derive(Default)]
struct Bus {
    /// Held for a whole publish, so every subscriber sees the same order.
    publishing: Mutex<()>,
    state: Mutex<BusState>,
}

#[derive(Default)]
struct BusState {
    closed: bool,
    queues: Vec<Arc<Queue>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.0.state);
        f.debug_struct("Events")
            .field("closed", &state.closed)
            .field("subscribers", &state.queues.len())
            .finish()
    }
}

/// Every lock here guards state that each step leaves whole, so a panic elsewhere does not
/// spoil it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Events {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `event` to every subscriber, per its policy. After [`close`](Self::close), does
    /// nothing. A `Block` subscriber whose queue is full makes this wait for room.
    pub fn publish(&self, event: Event) {
        let _order = lock(&self.0.publishing);
        let queues = {
            let mut state = lock(&self.0.state);
            if state.closed {
                return;
            }
            state.queues.retain(|queue| !queue.is_abandoned());
            state.queues.clone()
        };
        let event = Arc::new(event);
        for queue in queues {
            queue.push(Arc::clone(&event));
        }
    }

    /// A new subscription; it gets every event published from now on.
    pub fn subscribe(&self, subscriber: Subscriber) -> Subscription {
        let queue = Arc::new(Queue::new(subscriber));
        let mut state = lock(&self.0.state);
        if state.closed {
            lock(&queue.state).closed = true;
        } else {
            state.queues.push(Arc::clone(&queue));
        }
        Subscription { queue }
    }

    /// Ends the stream: nothing more is published, and each subscription ends once it has
    /// delivered what it holds.
    pub fn close(&self) {
        let _order = lock(&self.0.publishing);
        let queues = {
            let mut state = lock(&self.0.state);
            state.closed = true;
            std::mem::take(&mut state.queues)
        };
        for queue in queues {
            queue.close();
        }
    }
}

/// How a subscription's queue behaves: its size, its policy when full, and what counts its
/// drops.
pub struct Subscriber {
    capacity: usize,
    when_full: WhenFull,
    dropped: Counter,
    wake: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Subscriber {
    /// A queue of `capacity` events (at least 1) that waits for room when full.
    pub fn blocking(capacity: usize) -> Self {
        Self::new(capacity, WhenFull::Block, Counter::noop())
    }

    /// A queue of `capacity` events (at least 1) that evicts its oldest when full, counting
    /// each in `dropped`.
    pub fn dropping_oldest(capacity: usize, dropped: Counter) -> Self {
        Self::new(capacity, WhenFull::DropOldest, dropped)
    }

    pub fn new(capacity: usize, when_full: WhenFull, dropped: Counter) -> Self {
        Self {
            capacity: capacity.max(1),
            when_full,
            dropped,
            wake: None,
        }
    }

    /// Calls `wake` after each event queued and at the close, from the publishing thread:
    /// how a consumer that cannot block a thread (an async task) learns there is something
    /// to take with [`Subscription::try_recv`]. `wake` must be quick and must not publish.
    pub fn waking(mut self, wake: impl Fn() + Send + Sync + 'static) -> Self {
        self.wake = Some(Box::new(wake));
        self
    }
}

/// One subscriber's queue.
struct Queue {
    capacity: usize,
    when_full: WhenFull,
    dropped: Counter,
    wake: Option<Box<dyn Fn() + Send + Sync>>,
    state: Mutex<QueueState>,
    /// Signalled when an event is queued or the stream closes.
    ready: Condvar,
    /// Signalled when an event is taken or the subscription is dropped.
    room: Condvar,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Arc<Event>>,
    closed: bool,
    /// The subscription was dropped: nothing more is queued for it.
    abandoned: bool,
    dropped: u64,
}

impl Queue {
    fn new(subscriber: Subscriber) -> Self {
        Self {
            capacity: subscriber.capacity,
            when_full: subscriber.when_full,
            dropped: subscriber.dropped,
            wake: subscriber.wake,
            state: Mutex::new(QueueState {
                events: VecDeque::with_capacity(subscriber.capacity.min(64)),
                ..QueueState::default()
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
        }
    }

    fn is_abandoned(&self) -> bool {
        lock(&self.state).abandoned
    }

    fn push(&self, event: Arc<Event>) {
        let mut state = lock(&self.state);
        while state.events.len() >= self.capacity && !state.abandoned {
            match self.when_full {
                WhenFull::Block => {
                    state = self
                        .room
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                WhenFull::DropOldest => {
                    state.events.pop_front();
                    self.count_drop(&mut state);
                }
                WhenFull::DropNewest => {
                    self.count_drop(&mut state);
                    return;
                }
            }
        }
        if state.abandoned {
            return;
        }
        state.events.push_back(event);
        drop(state);
        self.ready.notify_one();
        self.wake();
    }

    fn count_drop(&self, state: &mut QueueState) {
        state.dropped += 1;
        self.dropped.increment(1);
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
        self.wake();
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

/// Why [`Subscription::recv_timeout`] or [`Subscription::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvent {
    /// None yet.
    Empty,
    /// The stream is closed and everything queued has been taken.
    Closed,
}

/// The receiving end of a subscription. Dropping it unsubscribes: a publisher waiting for
/// room in its queue goes on.
pub struct Subscription {
    queue: Arc<Queue>,
}

impl Subscription {
    /// The next event, waiting for one; `None` once the stream is closed and drained.
    pub fn recv(&self) -> Option<Arc<Event>> {
        let mut state = lock(&self.queue.state);
        loop {
            if let Some(event) = self.take(&mut state) {
                return Some(event);
            }
            if state.closed {
                return None;
            }
            state = self
                .queue
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The next event, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Arc<Event>, NoEvent> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.queue.state);
        loop {
            if let Some(event) = self.take(&mut state) {
                return Ok(event);
            }
            if state.closed {
                return Err(NoEvent::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoEvent::Empty);
            }
            state = self
                .queue
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Result<Arc<Event>, NoEvent> {
        let mut state = lock(&self.queue.state);
        match self.take(&mut state) {
            Some(event) => Ok(event),
            None if state.closed => Err(NoEvent::Closed),
            None => Err(NoEvent::Empty),
        }
    }

    /// Events this subscription's queue dropped so far.
    pub fn dropped(&self) -> u64 {
        lock(&self.queue.state).dropped
    }

    fn take(&self, state: &mut QueueState) -> Option<Arc<Event>> {
        let event = state.events.pop_front()?;
        self.queue.room.notify_one();
        Some(event)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = lock(&self.queue.state);
        state.abandoned = true;
        state.events.clear();
        drop(state);
        self.queue.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::metrics::testing::record;

    fn label(frame: u64) -> Event {
        Event::Label(Label {
            frame,
            ts: "2026-01-01T12:00:00.123Z".into(),
            label: "espresso".into(),
            score: 0.91,
            latency_ms: 14.2,
        })
    }

    fn frames(subscription: &Subscription) -> Vec<u64> {
        std::iter::from_fn(|| subscription.try_recv().ok())
            .map(|event| match &*event {
                Event::Label(label) => label.frame,
                other => panic!("not a label: {other}"),
            })
            .collect()
    }

    #[test]
    fn a_label_serializes_as_the_line_scened_always_printed_tagged_label() {
        let line = label(812).to_json();
        assert_eq!(
            line,
            r#"{"event":"label","frame":812,"ts":"2026-01-01T12:00:00.123Z","label":"espresso","score":0.91,"latency_ms":14.2}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), label(812));
    }

    #[test]
    fn a_label_event_rounds_the_score_and_the_latency() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_268_800_123);
        let event = LabelEvent {
            frame: 3,
            captured: at,
            class: 967,
            label: "espresso".into(),
            score: 0.912_345_6,
            latency: Duration::from_micros(14_249),
            changed: true,
        };
        let label = Label::from(&event);
        assert_eq!(label.ts, "2026-01-01T12:00:00.123Z");
        assert_eq!((label.score, label.latency_ms), (0.9123, 14.2));
    }

    #[test]
    fn every_kind_is_tagged_with_its_name_and_reads_back() {
        let events = [
            label(1),
            Event::source_lost(
                "camera 0".into(),
                "no frame".into(),
                2,
                Duration::from_secs(1),
            ),
            Event::source_back("camera 0".into(), 3, 2, Instant::now()),
            Event::started("m.tflite", "int8", "camera 0".into(), "default", (1, 2)),
        ];
        for event in events {
            let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(json["event"], event.kind(), "{json}");
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        }
    }

    #[test]
    fn every_subscriber_gets_every_event_in_the_same_order() {
        let events = Events::new();
        let a = events.subscribe(Subscriber::blocking(8));
        let b = events.subscribe(Subscriber::dropping_oldest(8, Counter::noop()));
        let publishers: Vec<_> = (0..2)
            .map(|p| {
                let events = events.clone();
                thread::spawn(move || (0..3).for_each(|i| events.publish(label(p * 10 + i))))
            })
            .collect();
        for publisher in publishers {
            publisher.join().unwrap();
        }
        let (a, b) = (frames(&a), frames(&b));
        assert_eq!(a.len(), 6);
        assert_eq!(a, b);
    }

    #[test]
    fn a_full_dropping_queue_keeps_the_newest_and_counts_the_rest() {
        let (recorded, (kept, dropped)) = record(|| {
            let events = Events::new();
            let counter = ::metrics::counter!("dropped");
            let slow = events.subscribe(Subscriber::dropping_oldest(3, counter));
            let fast = events.subscribe(Subscriber::blocking(100));
            (0..10).for_each(|i| events.publish(label(i)));
            assert_eq!(frames(&fast).len(), 10, "the slow one held nobody back");
            (frames(&slow), slow.dropped())
        });
        assert_eq!(kept, [7, 8, 9]);
        assert_eq!(dropped, 7);
        assert_eq!(recorded.counter("dropped", &[]), Some(7));
        // Drop-newest keeps the first ones.
        let events = Events::new();
        let first = events.subscribe(Subscriber::new(2, WhenFull::DropNewest, Counter::noop()));
        (0..5).for_each(|i| events.publish(label(i)));
        assert_eq!((frames(&first), first.dropped()), (vec![0, 1], 3));
    }

    #[test]
    fn a_blocking_queue_holds_the_publisher_until_there_is_room_or_it_is_gone() {
        let events = Events::new();
        let subscription = events.subscribe(Subscriber::blocking(1));
        events.publish(label(0));
        let publisher = {
            let events = events.clone();
            thread::spawn(move || {
                events.publish(label(1));
                events.publish(label(2));
            })
        };
        assert_eq!(frames_blocking(&subscription, 2), [0, 1]);
        // Unsubscribing releases a publisher waiting for room.
        drop(subscription);
        publisher.join().unwrap();
        events.publish(label(3));
        assert_eq!(lock(&events.0.state).queues.len(), 0);
    }

    fn frames_blocking(subscription: &Subscription, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| match &*subscription.recv().expect("an event") {
                Event::Label(label) => label.frame,
                other => panic!("not a label: {other}"),
            })
            .collect()
    }

    #[test]
    fn closing_ends_each_subscription_after_what_it_holds() {
        let events = Events::new();
        let subscription = events.subscribe(Subscriber::blocking(4));
        let waiter = {
            let events = events.clone();
            let later = events.subscribe(Subscriber::blocking(4));
            thread::spawn(move || {
                let got = later.recv().is_some();
                (got, later.recv().is_none())
            })
        };
        events.publish(label(0));
        events.close();
        assert_eq!(waiter.join().unwrap(), (true, true));
        events.publish(label(1));
        assert_eq!(frames(&subscription), [0]);
        assert_eq!(subscription.try_recv().unwrap_err(), NoEvent::Closed);
        assert_eq!(
            subscription
                .recv_timeout(Duration::from_secs(60))
                .unwrap_err(),
            NoEvent::Closed
        );
        // A subscription made after the close is closed at once.
        let late = events.subscribe(Subscriber::blocking(1));
        assert!(late.recv().is_none());
    }

    #[test]
    fn an_empty_queue_times_out_and_a_waker_hears_of_each_event() {
        let events = Events::new();
        let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let subscription = {
            let wakes = Arc::clone(&wakes);
            events.subscribe(Subscriber::blocking(4).waking(move || {
                wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }))
        };
        let started = Instant::now();
        let waited = subscription.recv_timeout(Duration::from_millis(20));
        assert_eq!(waited.unwrap_err(), NoEvent::Empty);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(subscription.try_recv().unwrap_err(), NoEvent::Empty);
        events.publish(label(0));
        events.close();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(subscription.recv_timeout(Duration::from_secs(60)).is_ok());
    }
}
