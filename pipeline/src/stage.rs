//! What a stage and a source do for one item; the loop around them lives in [`crate::runner`].

use std::convert::Infallible;
use std::error::Error;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use crate::contain::lock;
use crate::events::Events;
use crate::frame::Frame;

/// Why an item could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Only this item failed: it is counted and skipped, and the stage goes on.
    #[error(transparent)]
    Item(Box<dyn Error + Send + Sync>),
    /// The stage cannot go on: it stops, and the pipeline drains behind it.
    #[error(transparent)]
    Fatal(Box<dyn Error + Send + Sync>),
}

impl StageError {
    pub fn item(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Item(error.into())
    }

    pub fn fatal(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Fatal(error.into())
    }
}

/// One step of the pipeline, called once per item on its own thread.
///
/// Every input yields one output or an error, so a stage's counts always add up
/// (`in = out + errored`). Tests call `process` directly.
pub trait Stage: Send + 'static {
    type In: Send + 'static;
    type Out: Send + 'static;

    fn process(&mut self, input: Self::In) -> Result<Self::Out, StageError>;

    /// Whether `input` is of the kind this stage takes: an input made for the stage it
    /// replaced ([`Swap`]) may not be, e.g. a frame resized for the previous model.
    fn accepts(&self, _input: &Self::In) -> bool {
        true
    }
}

/// A stage that can be replaced between two items, while its thread runs: how a reload swaps
/// a model or a camera's settings in without stopping the frames. Items made for the stage
/// it replaced (already in its queue) still go to that one, as long as the new one does not
/// accept them; the first item the new one takes retires the old.
pub struct Swap<S: Stage> {
    stage: S,
    previous: Option<S>,
    next: Receiver<S>,
}

/// Where a [`Swap`]'s replacement is sent.
pub type Replace<S> = Sender<S>;

impl<S: Stage> Swap<S> {
    pub fn new(stage: S) -> (Self, Replace<S>) {
        let (replace, next) = crossbeam_channel::unbounded();
        let swap = Self {
            stage,
            previous: None,
            next,
        };
        (swap, replace)
    }
}

impl<S: Stage> Stage for Swap<S> {
    type In = S::In;
    type Out = S::Out;

    fn process(&mut self, input: S::In) -> Result<S::Out, StageError> {
        while let Ok(next) = self.next.try_recv() {
            self.previous = Some(std::mem::replace(&mut self.stage, next));
        }
        if let Some(previous) = &mut self.previous {
            if !self.stage.accepts(&input) && previous.accepts(&input) {
                return previous.process(input);
            }
            self.previous = None;
            // What it held (a model's session) is free: resident no more.
            crate::allocator::give_back();
        }
        self.stage.process(input)
    }
}

/// Where frames come from.
pub trait Source: Send + 'static {
    /// The next frame, or `Ok(None)` at the end of the stream. May block until the frame is
    /// due or arrives; waits should use `shutdown.sleep` so a stop request cuts them short.
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError>;

    /// Where to say that the source was lost or is back, for a source that can be; given
    /// once, before the first frame. A wrapper passes it on.
    fn publish_to(&mut self, _events: &Events) {}
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        (**self).next_frame(shutdown)
    }

    fn publish_to(&mut self, events: &Events) {
        (**self).publish_to(events);
    }
}

/// Something that wants a look at items as they go by, e.g. the live view at frames: it
/// is offered each item on the pipeline's thread, so it must only copy what it wants, never
/// wait.
pub trait Tap<T>: Send + Sync {
    fn offer(&self, item: &T);
}

/// A stage whose input a [`Tap`] is offered before the stage takes it.
pub struct Tapped<S: Stage> {
    stage: S,
    tap: Option<Arc<dyn Tap<S::In>>>,
}

impl<S: Stage> Tapped<S> {
    pub fn new(stage: S, tap: Option<Arc<dyn Tap<S::In>>>) -> Self {
        Self { stage, tap }
    }
}

impl<S: Stage> Stage for Tapped<S> {
    type In = S::In;
    type Out = S::Out;

    fn process(&mut self, input: S::In) -> Result<S::Out, StageError> {
        if let Some(tap) = &self.tap {
            tap.offer(&input);
        }
        self.stage.process(input)
    }
}

/// A stop request shared by the app (signal handler), the sources and the pipeline.
///
/// A stop (`trigger`) is watched by sources only: the stages behind them stop when their
/// input closes, after finishing what is queued. An abort (`abort`, after a stage stalled) is
/// also watched by every wait on an edge: each stage stops at once, abandoning what is
/// queued, so nothing waits on the stalled stage.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// Nothing is ever sent; dropping the sender wakes every wait on `aborted` for good.
    abort: Arc<Mutex<Option<Sender<Infallible>>>>,
    aborted: Receiver<Infallible>,
    /// Stops that this one's stop also triggers: one camera's source, say.
    children: Mutex<Vec<Weak<Inner>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (abort, aborted) = crossbeam_channel::bounded(0);
        Self::aborted_with(Arc::new(Mutex::new(Some(abort))), aborted)
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stop not yet triggered, aborted when `abort`'s sender is dropped.
    fn aborted_with(
        abort: Arc<Mutex<Option<Sender<Infallible>>>>,
        aborted: Receiver<Infallible>,
    ) -> Self {
        Self(Arc::new(Inner {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            abort,
            aborted,
            children: Mutex::new(Vec::new()),
        }))
    }

    pub fn trigger(&self) {
        *lock(&self.0.stopped) = true;
        self.0.wake.notify_all();
        let children = std::mem::take(&mut *lock(&self.0.children));
        for child in children.iter().filter_map(Weak::upgrade) {
            Shutdown(child).trigger();
        }
    }

    /// A stop of its own, also triggered by this one's and aborted with it: what stops one
    /// camera's source while the others run.
    pub fn child(&self) -> Shutdown {
        let child = Self::aborted_with(Arc::clone(&self.0.abort), self.0.aborted.clone());
        let mut children = lock(&self.0.children);
        children.retain(|child| child.strong_count() > 0);
        children.push(Arc::downgrade(&child.0));
        drop(children);
        // Checked after registering, so a stop between the two is not missed.
        if self.is_triggered() {
            child.trigger();
        }
        child
    }

    pub fn is_triggered(&self) -> bool {
        *lock(&self.0.stopped)
    }

    /// Stops, and makes every edge wait give up.
    pub fn abort(&self) {
        self.trigger();
        lock(&self.0.abort).take();
    }

    pub fn is_aborted(&self) -> bool {
        self.0.aborted.try_recv() == Err(TryRecvError::Disconnected)
    }

    /// Ready (disconnected) once aborted: select on it next to an edge operation.
    pub fn aborted(&self) -> &Receiver<Infallible> {
        &self.0.aborted
    }

    /// Sleeps for `duration` unless a stop is requested first; returns whether it was.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut stopped = lock(&self.0.stopped);
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = self
                .0
                .wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn sleep_runs_its_full_time_without_a_stop() {
        let started = Instant::now();
        assert!(!Shutdown::new().sleep(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_stop_cuts_a_long_sleep_short() {
        let shutdown = Shutdown::new();
        let stopper = shutdown.clone();
        let started = Instant::now();
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            stopper.trigger();
        });
        assert!(shutdown.sleep(Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(shutdown.is_triggered());
        handle.join().expect("stopper thread");
    }

    #[test]
    fn an_abort_is_a_stop_that_wakes_channel_waits() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_aborted());
        let waiter = shutdown.clone();
        let handle = thread::spawn(move || waiter.aborted().recv().is_err());
        shutdown.abort();
        assert!(handle.join().expect("waiter thread"));
        assert!(shutdown.is_aborted() && shutdown.is_triggered());
    }

    #[test]
    fn a_child_stops_alone_or_with_its_parent_and_shares_its_abort() {
        let parent = Shutdown::new();
        let (one, two) = (parent.child(), parent.child());
        one.trigger();
        assert!(one.is_triggered() && !two.is_triggered() && !parent.is_triggered());
        parent.trigger();
        assert!(two.is_triggered());
        assert!(
            parent.child().is_triggered(),
            "a child of a stopped parent is stopped"
        );
        parent.abort();
        assert!(one.is_aborted() && two.is_aborted());
    }

    /// Doubles its input; accepts only even numbers when `even`.
    struct Doubler {
        even: bool,
        add: i32,
    }

    impl Stage for Doubler {
        type In = i32;
        type Out = i32;
        fn process(&mut self, input: i32) -> Result<i32, StageError> {
            Ok(input * 2 + self.add)
        }
        fn accepts(&self, input: &i32) -> bool {
            !self.even || input % 2 == 0
        }
    }

    #[test]
    fn a_swapped_stage_takes_over_and_the_old_one_finishes_what_was_made_for_it() {
        let (mut swap, replace) = Swap::new(Doubler {
            even: false,
            add: 0,
        });
        assert_eq!(swap.process(3).unwrap(), 6);
        replace.send(Doubler { even: true, add: 1 }).unwrap();
        assert_eq!(swap.process(5).unwrap(), 10, "odd: made for the old one");
        assert_eq!(swap.process(4).unwrap(), 9, "the new one's first");
        assert_eq!(swap.process(5).unwrap(), 11, "the old one is retired");
    }
}
