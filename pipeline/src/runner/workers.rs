//! Several threads running one stage: N workers take items from one input edge, and their
//! results leave in the order the items were taken.
//!
//! Re-sequencing by a frame's `seq` cannot work: frames dropped in front of the workers leave
//! gaps, and nothing can tell a gap from a frame still being worked on. So items are numbered
//! as they are handed out ([`Dispatch`]: taken from the edge and numbered under one lock, so
//! dispatch order is edge order), and every number handed out comes back to the
//! [`Resequencer`] — the result, or a release when the item failed or panicked — which sends
//! results on in number order and skips released numbers. It only ever waits for numbers a
//! worker is working on; a worker stuck on one is the watchdog's to abort, and an abort ends
//! every wait here.
//!
//! What the re-sequencer holds is bounded: a worker takes a permit before it takes an item,
//! and the permit comes back when that item's number leaves in order, so at most
//! [`PERMITS_PER_WORKER`] × N items are between dispatch and the output edge. Workers that far
//! ahead of a slow one wait for it, and the queue in front of them fills and applies its
//! declared policy, as it does in front of one slow stage.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{select_biased, Receiver, Sender};

use crate::queue::{Aborted, DropReason, EdgeReceiver, EdgeSender, EdgeWatch};

/// Items a worker may have between dispatch and the output edge: one being worked on, one
/// finished while an earlier number is still out, so jitter between workers costs no
/// throughput.
pub(super) const PERMITS_PER_WORKER: usize = 2;

/// A lock over state every update leaves whole: a worker's panic (contained by the runner)
/// does not spoil it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The workers' shared input: hands items out one at a time, numbered in the order taken.
pub(super) struct Dispatch<T> {
    /// The input edge and the next number, under one lock.
    input: Mutex<(EdgeReceiver<T>, u64)>,
    permits: Receiver<()>,
    /// Gives back the permit of a take that got no item.
    give_back: Sender<()>,
    watch: EdgeWatch,
}

/// The workers' shared output: re-sequences their results onto the output edge.
pub(super) struct Resequencer<T> {
    pending: Mutex<Pending<T>>,
    output: EdgeSender<T>,
    /// Gives back a permit per number that leaves.
    permits: Sender<()>,
}

/// A dispatch and a re-sequencer for `workers` workers between `input` and `output`.
pub(super) fn lanes<I, O>(
    input: EdgeReceiver<I>,
    output: EdgeSender<O>,
    workers: usize,
) -> (Dispatch<I>, Resequencer<O>) {
    let window = PERMITS_PER_WORKER * workers.max(1);
    let (give, permits) = crossbeam_channel::bounded(window);
    for _ in 0..window {
        give.try_send(())
            .expect("the channel holds the whole window");
    }
    let watch = input.watch();
    let dispatch = Dispatch {
        input: Mutex::new((input, 0)),
        permits,
        give_back: give.clone(),
        watch,
    };
    let resequencer = Resequencer {
        pending: Mutex::new(Pending::default()),
        output,
        permits: give,
    };
    (dispatch, resequencer)
}

impl<T> Dispatch<T> {
    /// The next item and its number; `None` once the edge is closed and drained. Waits for a
    /// permit first, then for an item; `abort` ends either wait.
    pub(super) fn take(&self, abort: &Receiver<Infallible>) -> Result<Option<(u64, T)>, Aborted> {
        select_biased! {
            recv(abort) -> _ => return Err(Aborted),
            recv(self.permits) -> _ => {}
        }
        // Other workers wait here while one waits for an item: that wait ends on an abort too.
        let mut input = lock(&self.input);
        let (edge, next) = &mut *input;
        match edge.recv_unless(abort) {
            Ok(Some(item)) => {
                let number = *next;
                *next += 1;
                Ok(Some((number, item)))
            }
            nothing => {
                let _ = self.give_back.try_send(());
                nothing.map(|_| None)
            }
        }
    }

    pub(super) fn watch(&self) -> EdgeWatch {
        self.watch.clone()
    }
}

impl<T> Resequencer<T> {
    /// Hands over number `number`'s result, `None` if there is none (it failed or panicked),
    /// and sends on what is now in order. `Err(Disconnected)` if the output edge's consumer is
    /// gone or the wait for room was aborted; every item sent is counted by the edge.
    pub(super) fn put(
        &self,
        number: u64,
        result: Option<T>,
        abort: &Receiver<Infallible>,
    ) -> Result<(), DropReason> {
        // Sent under the lock, so items leave in order; a full `Block` edge makes the other
        // workers wait here as it would make them wait to send.
        let mut pending = lock(&self.pending);
        pending.insert(number, result);
        let mut outcome = Ok(());
        while let Some(ready) = pending.pop_ready() {
            if let Some(item) = ready {
                if self.output.send_unless(item, abort) == Err(DropReason::Disconnected) {
                    outcome = Err(DropReason::Disconnected);
                }
            }
            let _ = self.permits.try_send(());
        }
        outcome
    }
}

/// Results that came back ahead of an earlier number, and the next number to send on.
struct Pending<T> {
    next: u64,
    held: BTreeMap<u64, Option<T>>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            next: 0,
            held: BTreeMap::new(),
        }
    }
}

impl<T> Pending<T> {
    fn insert(&mut self, number: u64, result: Option<T>) {
        debug_assert!(number >= self.next, "number {number} came back twice");
        self.held.insert(number, result);
    }

    /// The next number's result once it is back (`Some(None)`: released), in number order.
    fn pop_ready(&mut self) -> Option<Option<T>> {
        let ready = self.held.remove(&self.next)?;
        self.next += 1;
        Some(ready)
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::queue::{EdgeConfig, WhenFull};
    use crate::stage::Shutdown;

    fn drain(pending: &mut Pending<char>) -> Vec<Option<char>> {
        std::iter::from_fn(|| pending.pop_ready()).collect()
    }

    #[test]
    fn results_leave_in_number_order_and_releases_only_fill_the_gap() {
        let mut pending = Pending::default();
        pending.insert(2, Some('c'));
        pending.insert(1, None);
        assert_eq!(drain(&mut pending), [], "0 is still out");
        pending.insert(0, Some('a'));
        assert_eq!(drain(&mut pending), [Some('a'), None, Some('c')]);
        pending.insert(4, Some('e'));
        assert_eq!(drain(&mut pending), []);
        pending.insert(3, Some('d'));
        assert_eq!(drain(&mut pending), [Some('d'), Some('e')]);
        assert!(pending.held.is_empty());
    }

    fn edge<T>(capacity: usize) -> (EdgeSender<T>, EdgeReceiver<T>) {
        EdgeConfig {
            capacity,
            when_full: WhenFull::Block,
        }
        .build("test")
        .expect("valid edge")
    }

    /// Two workers may have four items out; the fifth take waits until the first number
    /// leaves, and an abort ends that wait.
    #[test]
    fn takes_wait_for_the_window_and_an_abort_ends_the_wait() {
        let (to_input, input) = edge(16);
        let (output, from_output) = edge(16);
        let (dispatch, resequencer) = lanes(input, output, 2);
        for item in 0..8 {
            to_input.send(item).expect("room");
        }
        let never = crossbeam_channel::never();
        let numbers: Vec<u64> = (0..4)
            .map(|_| dispatch.take(&never).unwrap().unwrap().0)
            .collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
        assert!(dispatch.permits.is_empty());
        // 1 and 2 come back first: nothing leaves, no permit returns.
        resequencer.put(2, Some(20), &never).unwrap();
        resequencer.put(1, None, &never).unwrap();
        assert!(dispatch.permits.is_empty() && from_output.watch().stats().sent == 0);
        resequencer.put(0, Some(0), &never).unwrap();
        assert_eq!(
            [from_output.recv(), from_output.recv()],
            [Some(0), Some(20)]
        );
        assert_eq!(from_output.watch().stats().depth, 0);
        assert_eq!(dispatch.permits.len(), 3);
        for expected in 4..7 {
            assert_eq!(dispatch.take(&never).unwrap().unwrap().0, expected);
        }
        let shutdown = Shutdown::new();
        let aborter = shutdown.clone();
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            aborter.abort();
        });
        assert_eq!(dispatch.take(shutdown.aborted()).err(), Some(Aborted));
        handle.join().unwrap();
    }
}
