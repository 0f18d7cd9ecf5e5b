//! One publisher, many subscribers: how the pipeline's outputs hear of what it publishes
//! (the event stream, every frame's result) without being called by it.
//!
//! [`Bus::publish`] hands each item to every subscription, in one order for all of them.
//! Each [`Subscription`] is a [`queue`](crate::queue) edge of its own, with its own size and
//! its own declared [`WhenFull`] policy, so what happens when a subscriber falls behind is
//! the subscriber's choice and is counted like any queue's drops: a dropping subscriber never
//! holds back the publisher or the others; a blocking one does, on purpose (a test that
//! wants every item).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::metrics::Counter;
use crossbeam_channel::{RecvTimeoutError, TryRecvError};

use crate::queue::{DropReason, EdgeConfig, EdgeReceiver, EdgeSender, WhenFull};

/// The publishing side: a cheap handle, cloned for every publisher and shared with whoever
/// subscribes. Until a subscriber comes, publishing costs a lock and nothing else.
pub struct Bus<T> {
    state: Arc<Mutex<State<T>>>,
    /// Applied to each item this handle publishes ([`Bus::stamping`]).
    stamp: Option<Arc<Stamp<T>>>,
}

type Stamp<T> = dyn Fn(&mut T) + Send + Sync;

struct State<T> {
    closed: bool,
    outlets: Vec<Outlet<T>>,
}

struct Outlet<T> {
    edge: EdgeSender<Arc<T>>,
    wake: Option<Box<dyn Fn() + Send + Sync>>,
}

impl<T> Outlet<T> {
    fn wake(&self) {
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

impl<T> Clone for Bus<T> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            stamp: self.stamp.clone(),
        }
    }
}

impl<T> Default for Bus<T> {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                closed: false,
                outlets: Vec::new(),
            })),
            stamp: None,
        }
    }
}

impl<T> fmt::Debug for Bus<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Bus")
            .field("closed", &state.closed)
            .field("subscribers", &state.outlets.len())
            .finish()
    }
}

impl<T> Bus<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state is held for a whole publish, so every subscriber sees one order; each step
    /// leaves it whole, so a panic elsewhere does not spoil it.
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle on the same stream that applies `stamp` to each item it publishes: how a
    /// camera's parts say which camera they are without knowing there are several.
    pub fn stamping(&self, stamp: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        Self {
            state: Arc::clone(&self.state),
            stamp: Some(Arc::new(stamp)),
        }
    }

    /// Hands `item` to every subscriber, per its policy; a subscription that was dropped is
    /// forgotten. After [`close`](Self::close), does nothing. A `Block` subscriber whose queue
    /// is full makes this wait for room.
    pub fn publish(&self, mut item: T) {
        if let Some(stamp) = &self.stamp {
            stamp(&mut item);
        }
        let mut state = self.state();
        if state.closed {
            return;
        }
        let item = Arc::new(item);
        state.outlets.retain(|outlet| {
            let sent = outlet.edge.send(Arc::clone(&item));
            outlet.wake();
            sent != Err(DropReason::Disconnected)
        });
    }

    /// A new subscription; it gets every item published from now on.
    pub fn subscribe(&self, subscriber: Subscriber) -> Subscription<T> {
        let Subscriber {
            edge,
            dropped,
            wake,
        } = subscriber;
        let (sender, receiver) = edge.build_counted("subscriber", dropped);
        let mut state = self.state();
        // Made after the close, it is closed at once: its sender goes with it.
        if !state.closed {
            state.outlets.push(Outlet { edge: sender, wake });
        }
        Subscription { receiver }
    }

    /// Ends the stream: nothing more is published, and each subscription ends once it has
    /// delivered what it holds.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        for outlet in std::mem::take(&mut state.outlets) {
            // Closed before the wake, so the woken consumer finds the end.
            drop(outlet.edge);
            if let Some(wake) = outlet.wake {
                wake();
            }
        }
    }
}

/// How a subscription's queue behaves: its size, its policy when full, what counts its
/// drops, and how its consumer hears of an item.
pub struct Subscriber {
    edge: EdgeConfig,
    dropped: Counter,
    wake: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Subscriber {
    /// A queue of `capacity` items (at least 1) that waits for room when full: it holds the
    /// publisher, and so every other subscriber, back.
    pub fn blocking(capacity: usize) -> Self {
        Self::new(capacity, WhenFull::Block, Counter::noop())
    }

    /// A queue of `capacity` items (at least 1) that evicts its oldest when full, counting
    /// each in `dropped`.
    pub fn dropping_oldest(capacity: usize, dropped: Counter) -> Self {
        Self::new(capacity, WhenFull::DropOldest, dropped)
    }

    pub fn new(capacity: usize, when_full: WhenFull, dropped: Counter) -> Self {
        Self {
            edge: EdgeConfig {
                capacity: capacity.max(1),
                when_full,
            },
            dropped,
            wake: None,
        }
    }

    /// Calls `wake` after each item offered and at the close, from the publishing thread:
    /// how a consumer that cannot block a thread (an async task) learns there is something
    /// to take with [`Subscription::try_recv`]. `wake` must be quick and must not publish.
    pub fn waking(mut self, wake: impl Fn() + Send + Sync + 'static) -> Self {
        self.wake = Some(Box::new(wake));
        self
    }
}

/// Why [`Subscription::recv_timeout`] or [`Subscription::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvent {
    /// Nothing yet.
    Empty,
    /// The stream is closed and everything queued has been taken.
    Closed,
}

/// The receiving end of a subscription. Dropping it unsubscribes: a publisher waiting for
/// room in its queue goes on.
pub struct Subscription<T> {
    receiver: EdgeReceiver<Arc<T>>,
}

impl<T> Subscription<T> {
    /// The next item, waiting for one; `None` once the stream is closed and drained.
    pub fn recv(&self) -> Option<Arc<T>> {
        self.receiver.recv()
    }

    /// The next item, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Arc<T>, NoEvent> {
        self.receiver
            .recv_timeout(timeout)
            .map_err(|error| match error {
                RecvTimeoutError::Timeout => NoEvent::Empty,
                RecvTimeoutError::Disconnected => NoEvent::Closed,
            })
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Result<Arc<T>, NoEvent> {
        self.receiver.try_recv().map_err(|error| match error {
            TryRecvError::Empty => NoEvent::Empty,
            TryRecvError::Disconnected => NoEvent::Closed,
        })
    }

    /// Items this subscription's policy dropped so far.
    pub fn dropped(&self) -> u64 {
        let dropped = self.receiver.watch().stats().dropped;
        dropped.queue_full + dropped.evicted
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::metrics::testing::record;

    fn drain(subscription: &Subscription<u64>) -> Vec<u64> {
        std::iter::from_fn(|| subscription.try_recv().ok())
            .map(|item| *item)
            .collect()
    }

    #[test]
    fn every_subscriber_gets_every_item_in_the_same_order() {
        let bus = Bus::new();
        let a = bus.subscribe(Subscriber::blocking(8));
        let b = bus.subscribe(Subscriber::dropping_oldest(8, Counter::noop()));
        let publishers: Vec<_> = (0..2)
            .map(|p| {
                let bus = bus.clone();
                thread::spawn(move || (0..3).for_each(|i| bus.publish(p * 10 + i)))
            })
            .collect();
        for publisher in publishers {
            publisher.join().unwrap();
        }
        let (a, b) = (drain(&a), drain(&b));
        assert_eq!(a.len(), 6);
        assert_eq!(a, b);
    }

    #[test]
    fn a_stamping_handle_changes_only_what_it_publishes() {
        let bus = Bus::new();
        let all = bus.subscribe(Subscriber::blocking(8));
        let tens = bus.stamping(|item: &mut u64| *item *= 10);
        tens.publish(1);
        bus.publish(2);
        tens.clone().publish(3);
        assert_eq!(drain(&all), [10, 2, 30]);
    }

    #[test]
    fn a_full_dropping_queue_keeps_the_newest_and_counts_the_rest() {
        let (recorded, (kept, dropped)) = record(|| {
            let bus = Bus::new();
            let counter = ::metrics::counter!("dropped");
            let slow = bus.subscribe(Subscriber::dropping_oldest(3, counter));
            let fast = bus.subscribe(Subscriber::blocking(100));
            (0..10).for_each(|i| bus.publish(i));
            assert_eq!(drain(&fast).len(), 10, "the slow one held nobody back");
            (drain(&slow), slow.dropped())
        });
        assert_eq!(kept, [7, 8, 9]);
        assert_eq!(dropped, 7);
        assert_eq!(recorded.counter("dropped", &[]), Some(7));
        // Drop-newest keeps the first ones.
        let bus = Bus::new();
        let first = bus.subscribe(Subscriber::new(2, WhenFull::DropNewest, Counter::noop()));
        (0..5).for_each(|i| bus.publish(i));
        assert_eq!((drain(&first), first.dropped()), (vec![0, 1], 3));
    }

    #[test]
    fn a_blocking_queue_holds_the_publisher_until_there_is_room_or_it_is_gone() {
        let bus = Bus::new();
        let subscription = bus.subscribe(Subscriber::blocking(1));
        bus.publish(0);
        let publisher = {
            let bus = bus.clone();
            thread::spawn(move || {
                bus.publish(1);
                bus.publish(2);
            })
        };
        let got: Vec<u64> = (0..2).map(|_| *subscription.recv().unwrap()).collect();
        assert_eq!(got, [0, 1]);
        // Unsubscribing releases a publisher waiting for room.
        drop(subscription);
        publisher.join().unwrap();
        bus.publish(3);
        assert_eq!(bus.state().outlets.len(), 0);
    }

    #[test]
    fn a_dropped_subscription_is_forgotten_whatever_its_policy() {
        let bus = Bus::new();
        let gone = bus.subscribe(Subscriber::dropping_oldest(1, Counter::noop()));
        bus.publish(0);
        drop(gone);
        bus.publish(1);
        assert_eq!(bus.state().outlets.len(), 0);
    }

    #[test]
    fn closing_ends_each_subscription_after_what_it_holds() {
        let bus = Bus::new();
        let subscription = bus.subscribe(Subscriber::blocking(4));
        let waiter = {
            let later = bus.subscribe(Subscriber::blocking(4));
            thread::spawn(move || {
                let got = later.recv().is_some();
                (got, later.recv().is_none())
            })
        };
        bus.publish(0);
        bus.close();
        assert_eq!(waiter.join().unwrap(), (true, true));
        bus.publish(1);
        assert_eq!(drain(&subscription), [0]);
        assert_eq!(subscription.try_recv().unwrap_err(), NoEvent::Closed);
        assert_eq!(
            subscription
                .recv_timeout(Duration::from_secs(60))
                .unwrap_err(),
            NoEvent::Closed
        );
        // A subscription made after the close is closed at once.
        let late = bus.subscribe(Subscriber::blocking(1));
        assert!(late.recv().is_none());
    }

    #[test]
    fn an_empty_queue_times_out_and_a_waker_hears_of_each_item() {
        let bus = Bus::new();
        let wakes = Arc::new(AtomicUsize::new(0));
        let subscription = {
            let wakes = Arc::clone(&wakes);
            bus.subscribe(Subscriber::blocking(4).waking(move || {
                wakes.fetch_add(1, Ordering::SeqCst);
            }))
        };
        let started = Instant::now();
        let waited = subscription.recv_timeout(Duration::from_millis(20));
        assert_eq!(waited.unwrap_err(), NoEvent::Empty);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(subscription.try_recv().unwrap_err(), NoEvent::Empty);
        bus.publish(0);
        bus.close();
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert!(subscription.recv_timeout(Duration::from_secs(60)).is_ok());
    }
}
