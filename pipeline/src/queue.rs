//! Bounded edges between stages, each with a declared policy for when it is full.
//!
//! An edge has one producer and one consumer. Every item sent is either received, dropped
//! (counted by reason) or still queued: `attempts = received + dropped + depth`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{counter, gauge, Counter, Gauge};
use crossbeam_channel::{
    select_biased, Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError,
};
use serde::{Deserialize, Serialize};

use crate::error::Invalid;
use crate::metrics::{
    FRAMES_DROPPED_TOTAL, QUEUE, QUEUE_CAPACITY, QUEUE_DEPTH, QUEUE_HIGH_WATER, REASON, STAGE,
};

/// Each slot is allocated up front, and a frame queue this deep is only latency.
pub const MAX_CAPACITY: usize = 4096;

/// What a full edge does with a new item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: nothing is lost, the producer slows to the consumer's pace.
    Block,
    /// Drop the item being sent: the consumer sees the oldest items.
    DropNewest,
    /// Evict the oldest queued item to make room: the consumer sees the freshest.
    DropOldest,
}

/// Why an item never reached the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// `DropNewest` on a full edge: the item being sent.
    QueueFull,
    /// `DropOldest` on a full edge: the oldest queued item.
    Evicted,
    /// The consumer is gone (it stopped or failed).
    Disconnected,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [Self::QueueFull, Self::Evicted, Self::Disconnected];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Evicted => "evicted",
            Self::Disconnected => "disconnected",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An edge's size and policy, as configured. Both are required: each edge has its own
/// defaults, and a half-written table must not silently mix them with another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Items the edge holds, 1 to 4096; small keeps latency low.
    pub capacity: usize,
    /// What a full edge does with a new item: `block`, `drop_newest` or `drop_oldest`.
    pub when_full: WhenFull,
}

impl EdgeConfig {
    /// Checks the edge named `name` (the stage it feeds).
    pub fn check(&self, name: &str) -> Result<(), Invalid> {
        Invalid::check(
            (1..=MAX_CAPACITY).contains(&self.capacity),
            &format!("edges.{name}.capacity"),
            "1 to 4096",
            self.capacity,
        )
    }

    /// Creates the edge named `name` (the stage it feeds) and registers its metrics.
    pub fn build<T>(
        &self,
        name: &'static str,
    ) -> Result<(EdgeSender<T>, EdgeReceiver<T>), Invalid> {
        self.check(name)?;
        Ok(self.connect(Shared::new(name, self.capacity)))
    }

    /// An edge outside the pipeline, e.g. an output's queue of events: no queue gauges, and
    /// what its policy drops (`queue_full`, `evicted`) counted in `dropped` alone. A consumer
    /// that goes away is not a drop: it unsubscribed.
    pub fn build_counted<T>(
        &self,
        name: &'static str,
        dropped: Counter,
    ) -> (EdgeSender<T>, EdgeReceiver<T>) {
        let shared = Shared {
            depth_gauge: Gauge::noop(),
            high_water_gauge: Gauge::noop(),
            drop_counters: [dropped.clone(), dropped, Counter::noop()],
            ..Shared::unmetered(name, self.capacity.max(1))
        };
        self.connect(shared)
    }

    fn connect<T>(&self, shared: Shared) -> (EdgeSender<T>, EdgeReceiver<T>) {
        let (tx, rx) = crossbeam_channel::bounded(shared.capacity);
        let mode = match self.when_full {
            WhenFull::Block => Mode::Block,
            WhenFull::DropNewest => Mode::DropNewest,
            // Evicting needs a receiver on the producer side; it also keeps the channel
            // connected, so the consumer's liveness is tracked by `Shared::consumer_alive`.
            WhenFull::DropOldest => Mode::DropOldest(rx.clone()),
        };
        let shared = Arc::new(shared);
        let sender = EdgeSender {
            tx,
            mode,
            shared: Arc::clone(&shared),
        };
        (sender, EdgeReceiver { rx, shared })
    }
}

/// Counts of dropped items, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    pub queue_full: u64,
    pub evicted: u64,
    /// Serialized as reports have always named it.
    #[serde(rename = "consumer_gone")]
    pub disconnected: u64,
}

impl DropCounts {
    pub fn total(&self) -> u64 {
        self.queue_full + self.evicted + self.disconnected
    }
}

impl std::ops::Add for DropCounts {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            queue_full: self.queue_full + other.queue_full,
            evicted: self.evicted + other.evicted,
            disconnected: self.disconnected + other.disconnected,
        }
    }
}

/// A moment's view of an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeStats {
    pub name: &'static str,
    pub capacity: usize,
    pub depth: usize,
    pub high_water: usize,
    /// Items offered to the edge, whatever became of them.
    pub sent: u64,
    pub received: u64,
    pub dropped: DropCounts,
}

enum Mode<T> {
    Block,
    DropNewest,
    DropOldest(Receiver<T>),
}

struct Shared {
    name: &'static str,
    capacity: usize,
    sent: AtomicU64,
    accepted: AtomicU64,
    received: AtomicU64,
    dropped: [AtomicU64; 3],
    high_water: AtomicUsize,
    consumer_alive: AtomicBool,
    depth_gauge: Gauge,
    high_water_gauge: Gauge,
    drop_counters: [Counter; 3],
}

impl Shared {
    /// A pipeline edge's counters, registered as the queue's and the stage's metrics.
    fn new(name: &'static str, capacity: usize) -> Self {
        gauge!(QUEUE_CAPACITY, QUEUE => name).set(capacity as f64);
        Self {
            depth_gauge: gauge!(QUEUE_DEPTH, QUEUE => name),
            high_water_gauge: gauge!(QUEUE_HIGH_WATER, QUEUE => name),
            drop_counters: DropReason::ALL.map(
                |reason| counter!(FRAMES_DROPPED_TOTAL, STAGE => name, REASON => reason.as_str()),
            ),
            ..Self::unmetered(name, capacity)
        }
    }

    fn unmetered(name: &'static str, capacity: usize) -> Self {
        Self {
            name,
            capacity,
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: Default::default(),
            high_water: AtomicUsize::new(0),
            consumer_alive: AtomicBool::new(true),
            depth_gauge: Gauge::noop(),
            high_water_gauge: Gauge::noop(),
            drop_counters: [Counter::noop(), Counter::noop(), Counter::noop()],
        }
    }

    fn on_accepted(&self, depth: usize) {
        self.accepted.fetch_add(1, Ordering::AcqRel);
        self.depth_gauge.set(depth as f64);
        let previous = self.high_water.fetch_max(depth, Ordering::Relaxed);
        if depth > previous {
            self.high_water_gauge.set(depth as f64);
        }
    }

    fn on_dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::AcqRel);
        self.drop_counters[reason.index()].increment(1);
        tracing::trace!(queue = self.name, reason = reason.as_str(), "dropped");
    }

    fn load_dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Acquire)
    }

    /// Items accepted and neither received nor evicted. Exact once both ends are idle.
    fn in_queue(&self) -> u64 {
        let accepted = self.accepted.load(Ordering::Acquire);
        let gone = self.received.load(Ordering::Acquire) + self.load_dropped(DropReason::Evicted);
        accepted.saturating_sub(gone)
    }

    fn stats(&self) -> EdgeStats {
        let in_queue = self.in_queue();
        // Once the consumer is gone, what is still queued will never be delivered.
        let (depth, abandoned) = if self.consumer_alive.load(Ordering::Acquire) {
            (in_queue, 0)
        } else {
            (0, in_queue)
        };
        EdgeStats {
            name: self.name,
            capacity: self.capacity,
            depth: usize::try_from(depth).unwrap_or(usize::MAX),
            high_water: self.high_water.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Acquire),
            received: self.received.load(Ordering::Acquire),
            dropped: DropCounts {
                queue_full: self.load_dropped(DropReason::QueueFull),
                evicted: self.load_dropped(DropReason::Evicted),
                disconnected: self.load_dropped(DropReason::Disconnected) + abandoned,
            },
        }
    }
}

/// A read-only view of an edge's counters; it outlives both ends.
#[derive(Clone)]
pub struct EdgeWatch(Arc<Shared>);

impl std::fmt::Debug for EdgeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.stats().fmt(f)
    }
}

impl EdgeWatch {
    /// The edge's counters now. Exact once its producer and consumer have stopped; then
    /// `sent = received + dropped.total() + depth` (items still queued when the consumer
    /// went count as `disconnected`).
    pub fn stats(&self) -> EdgeStats {
        self.0.stats()
    }
}

/// The producing end of an edge. Dropping it closes the edge once the queue is drained.
pub struct EdgeSender<T> {
    tx: Sender<T>,
    mode: Mode<T>,
    shared: Arc<Shared>,
}

impl<T> EdgeSender<T> {
    /// Sends per the edge's policy. `Err` says why this item was dropped; an item evicted to
    /// make room for it is counted, not reported.
    pub fn send(&self, item: T) -> Result<(), DropReason> {
        self.send_unless(item, &crossbeam_channel::never::<()>())
    }

    /// [`send`](Self::send), except that a wait for room gives up once `abort` is ready
    /// ([`crate::stage::Shutdown::aborted`]): the item is then dropped as `Disconnected`,
    /// since its consumer is being given up on.
    pub fn send_unless<A>(&self, item: T, abort: &Receiver<A>) -> Result<(), DropReason> {
        self.shared.sent.fetch_add(1, Ordering::AcqRel);
        let result = match &self.mode {
            Mode::Block => select_biased! {
                recv(abort) -> _ => Err(DropReason::Disconnected),
                send(self.tx, item) -> sent => sent.map_err(|_| DropReason::Disconnected),
            },
            Mode::DropNewest => self.tx.try_send(item).map_err(|err| match err {
                TrySendError::Full(_) => DropReason::QueueFull,
                TrySendError::Disconnected(_) => DropReason::Disconnected,
            }),
            Mode::DropOldest(evictor) => self.send_evicting(evictor, item),
        };
        match result {
            Ok(()) => self.shared.on_accepted(self.tx.len()),
            Err(reason) => self.shared.on_dropped(reason),
        }
        result
    }

    fn send_evicting(&self, evictor: &Receiver<T>, mut item: T) -> Result<(), DropReason> {
        loop {
            if !self.shared.consumer_alive.load(Ordering::Acquire) {
                return Err(DropReason::Disconnected);
            }
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    // The consumer may empty the queue first; then the retry just succeeds.
                    if evictor.try_recv().is_ok() {
                        self.shared.on_dropped(DropReason::Evicted);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return Err(DropReason::Disconnected),
            }
        }
    }

    pub fn watch(&self) -> EdgeWatch {
        EdgeWatch(Arc::clone(&self.shared))
    }
}

/// A wait on an edge given up on an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

/// The consuming end of an edge. Dropping it makes further sends fail as `Disconnected`.
pub struct EdgeReceiver<T> {
    rx: Receiver<T>,
    shared: Arc<Shared>,
}

impl<T> EdgeReceiver<T> {
    /// The next item; `None` once the sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        self.recv_unless(&crossbeam_channel::never::<()>())
            .unwrap_or(None)
    }

    /// [`recv`](Self::recv), except that it gives up once `abort` is ready
    /// ([`crate::stage::Shutdown::aborted`]), even with items queued.
    pub fn recv_unless<A>(&self, abort: &Receiver<A>) -> Result<Option<T>, Aborted> {
        let item = select_biased! {
            recv(abort) -> _ => return Err(Aborted),
            recv(self.rx) -> item => item.ok(),
        };
        Ok(item.inspect(|_| self.received()))
    }

    /// The next item, waiting at most `timeout`: `Err(Timeout)` if none came, or
    /// `Err(Disconnected)` once the sender is gone and the queue is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).inspect(|_| self.received())
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv().inspect(|_| self.received())
    }

    /// Adds this edge to `select`, to wait until it has an item or is closed; the item is
    /// then taken with [`try_recv`](Self::try_recv), which counts it.
    pub fn ready_in<'a>(&'a self, select: &mut crossbeam_channel::Select<'a>) {
        select.recv(&self.rx);
    }

    fn received(&self) {
        self.shared.received.fetch_add(1, Ordering::Relaxed);
        self.shared.depth_gauge.set(self.rx.len() as f64);
    }

    pub fn watch(&self) -> EdgeWatch {
        EdgeWatch(Arc::clone(&self.shared))
    }
}

impl<T> Drop for EdgeReceiver<T> {
    fn drop(&mut self) {
        self.shared.consumer_alive.store(false, Ordering::Release);
        // The channel discards what is queued; the metric counts it now (stats stay exact
        // even for items a racing producer adds after this).
        let abandoned = self.shared.in_queue();
        self.shared.drop_counters[DropReason::Disconnected.index()].increment(abandoned);
        self.shared.depth_gauge.set(0.0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;
    use std::thread;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::metrics::testing::record;

    fn edge(capacity: usize, when_full: WhenFull) -> (EdgeSender<u32>, EdgeReceiver<u32>) {
        EdgeConfig {
            capacity,
            when_full,
        }
        .build("test")
        .expect("valid edge config")
    }

    pub(crate) fn policy() -> impl Strategy<Value = WhenFull> {
        prop_oneof![
            Just(WhenFull::Block),
            Just(WhenFull::DropNewest),
            Just(WhenFull::DropOldest)
        ]
    }

    #[test]
    fn zero_and_huge_capacities_are_refused_naming_the_queue() {
        for capacity in [0, MAX_CAPACITY + 1] {
            let config = EdgeConfig {
                capacity,
                when_full: WhenFull::Block,
            };
            let err = config.build::<u32>("infer").err().expect("refused");
            assert_eq!(
                err.to_string(),
                format!("edges.infer.capacity must be 1 to 4096, got {capacity}")
            );
        }
    }

    #[test]
    fn config_reads_snake_case_policies_and_needs_both_keys() {
        let config: EdgeConfig =
            toml::from_str("capacity = 3\nwhen_full = \"drop_oldest\"").expect("parses");
        assert_eq!(
            config,
            EdgeConfig {
                capacity: 3,
                when_full: WhenFull::DropOldest
            }
        );
        let err = toml::from_str::<EdgeConfig>("capacity = 1").expect_err("no policy");
        assert!(err.to_string().contains("when_full"), "{err}");
        assert!(toml::from_str::<EdgeConfig>("capacity = 1\nsize = 2").is_err());
        assert!(toml::from_str::<EdgeConfig>("capacity = 1\nwhen_full = \"dropOldest\"").is_err());
    }

    #[test]
    fn drop_newest_keeps_the_oldest_and_drop_oldest_keeps_the_newest() {
        for (policy, kept) in [
            (WhenFull::DropNewest, [0, 1]),
            (WhenFull::DropOldest, [3, 4]),
        ] {
            let (tx, rx) = edge(2, policy);
            let sent: Vec<_> = (0..5).map(|i| tx.send(i)).collect();
            drop(tx);
            let received: Vec<u32> = std::iter::from_fn(|| rx.recv()).collect();
            assert_eq!(received, kept, "{policy:?}");
            let stats = rx.watch().stats();
            assert_eq!(stats.dropped.total(), 3, "{policy:?}");
            assert_eq!(stats.high_water, 2);
            let rejected = sent.iter().filter(|r| r.is_err()).count() as u64;
            assert_eq!(rejected, stats.dropped.queue_full, "{policy:?}");
        }
    }

    #[test]
    fn sending_to_a_dropped_consumer_is_a_counted_drop_for_every_policy() {
        for policy in [WhenFull::Block, WhenFull::DropNewest, WhenFull::DropOldest] {
            let (tx, rx) = edge(1, policy);
            drop(rx);
            assert_eq!(tx.send(1), Err(DropReason::Disconnected), "{policy:?}");
            assert_eq!(tx.send(2), Err(DropReason::Disconnected), "{policy:?}");
            assert_eq!(tx.watch().stats().dropped.disconnected, 2, "{policy:?}");
        }
    }

    #[test]
    fn items_queued_when_the_consumer_goes_count_as_disconnected() {
        let (tx, rx) = edge(3, WhenFull::Block);
        tx.send(1).expect("room");
        tx.send(2).expect("room");
        drop(rx);
        let stats = tx.watch().stats();
        assert_eq!((stats.depth, stats.dropped.disconnected), (0, 2));
        assert_eq!(stats.sent, stats.received + stats.dropped.total());
    }

    #[test]
    fn a_blocked_sender_is_released_when_the_consumer_goes() {
        let (tx, rx) = edge(1, WhenFull::Block);
        tx.send(0).expect("room for one");
        let consumer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            drop(rx);
        });
        assert_eq!(tx.send(1), Err(DropReason::Disconnected));
        consumer.join().expect("consumer thread");
    }

    #[test]
    fn an_abort_ends_waits_on_a_full_or_an_empty_edge() {
        let shutdown = crate::stage::Shutdown::new();
        let (tx, rx) = edge(1, WhenFull::Block);
        tx.send(0).expect("room for one");
        let (empty_tx, empty_rx) = edge(1, WhenFull::Block);
        let aborter = shutdown.clone();
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            aborter.abort();
        });
        // Both would wait forever: nobody receives from `rx` or sends to `empty_tx`.
        assert_eq!(
            tx.send_unless(1, shutdown.aborted()),
            Err(DropReason::Disconnected)
        );
        assert_eq!(empty_rx.recv_unless(shutdown.aborted()), Err(Aborted));
        // An abort wins over queued items, which are abandoned with the receiver.
        assert_eq!(rx.recv_unless(shutdown.aborted()), Err(Aborted));
        handle.join().expect("aborter");
        drop((rx, empty_tx));
        let stats = tx.watch().stats();
        assert_eq!((stats.sent, stats.received), (2, 0));
        assert_eq!(stats.dropped.disconnected, 2);
    }

    #[test]
    fn depth_capacity_high_water_and_drops_reach_the_metrics() {
        let (recorded, (tx, rx)) = record(|| edge(3, WhenFull::DropNewest));
        for i in 0..5 {
            let _ = tx.send(i);
        }
        rx.recv().expect("queued item");
        let queue = [(QUEUE, "test")];
        assert_eq!(recorded.gauge(QUEUE_CAPACITY, &queue), Some(3.0));
        assert_eq!(recorded.gauge(QUEUE_DEPTH, &queue), Some(2.0));
        assert_eq!(recorded.gauge(QUEUE_HIGH_WATER, &queue), Some(3.0));
        let full = [(STAGE, "test"), (REASON, "queue_full")];
        assert_eq!(recorded.counter(FRAMES_DROPPED_TOTAL, &full), Some(2));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Send,
        Recv,
    }

    proptest! {
        /// Single-threaded against a model queue: each policy keeps exactly the items it
        /// declares, in order, and every item is received, dropped or still queued.
        #[test]
        fn every_policy_matches_its_model_and_conserves_items(
            policy in policy(),
            capacity in 1usize..5,
            ops in prop::collection::vec(prop_oneof![Just(Op::Send), Just(Op::Recv)], 0..200),
        ) {
            let (tx, rx) = edge(capacity, policy);
            let mut model = VecDeque::new();
            let (mut next, mut received) = (0u32, 0u64);
            for op in ops {
                match op {
                    // Block would wait forever here with no consumer: the threaded test covers it.
                    Op::Send if policy == WhenFull::Block && model.len() == capacity => {}
                    Op::Send => {
                        if model.len() < capacity {
                            model.push_back(next);
                        } else if policy == WhenFull::DropOldest {
                            model.pop_front();
                            model.push_back(next);
                        }
                        let _ = tx.send(next);
                        next += 1;
                    }
                    Op::Recv if model.is_empty() => {}
                    Op::Recv => {
                        prop_assert_eq!(rx.recv(), model.pop_front());
                        received += 1;
                    }
                }
            }
            let stats = rx.watch().stats();
            prop_assert_eq!(stats.depth, model.len());
            prop_assert_eq!(stats.received, received);
            prop_assert_eq!(stats.sent, u64::from(next));
            prop_assert_eq!(stats.sent, received + stats.dropped.total() + model.len() as u64);
        }

        /// With a real consumer thread: sent = received + dropped, order is kept, and
        /// `Block` loses nothing.
        #[test]
        fn every_policy_conserves_frames_across_threads(
            policy in policy(),
            capacity in 1usize..4,
            count in 1u32..300,
            consumer_pause_us in 0u64..200,
        ) {
            let (tx, rx) = edge(capacity, policy);
            let consumer = thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(item) = rx.recv() {
                    got.push(item);
                    thread::sleep(Duration::from_micros(consumer_pause_us));
                }
                got
            });
            for item in 0..count {
                let _ = tx.send(item);
            }
            let stats_before_close = tx.watch().stats();
            drop(tx);
            let got = consumer.join().expect("consumer thread");
            let dropped = stats_before_close.dropped.total();
            prop_assert_eq!(u64::from(count), got.len() as u64 + dropped);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "order kept");
            if policy == WhenFull::Block {
                prop_assert_eq!(dropped, 0);
            }
        }
    }
}
