//! Several threads running one stage: N workers take items from one or more lanes (a lane
//! is a camera's input edge and output edge), and each lane's results leave on its output in
//! the order its items were taken.
//!
//! Re-sequencing by a frame's `seq` cannot work: frames dropped in front of the workers leave
//! gaps, and nothing can tell a gap from a frame still being worked on. So items are numbered
//! per lane as they are handed out ([`Dispatch`]: taken from the edge and numbered under one
//! lock, so dispatch order is edge order), and every number handed out comes back to its
//! lane's [`Resequencer`] — the result, or a release when the item failed or panicked — which
//! sends results on in number order and skips released numbers. It only ever waits for
//! numbers a worker is working on; a worker stuck on one is the watchdog's to abort, and an
//! abort ends every wait here.
//!
//! The lanes are served in turn: a take looks at the lanes from the one after the lane it last
//! served, so a lane that always has an item waiting (a fast camera) gets at most every other
//! item while another has one too, and a slow camera's frame waits for one item, not for a
//! backlog. One lane is the plain case: a stage's workers between two edges.
//!
//! What a re-sequencer holds is bounded: a lane's item is taken only with one of that lane's
//! permits, which comes back when the item's number leaves in order, so at most
//! [`PERMITS_PER_WORKER`] × N of a lane's items are between dispatch and its output edge.
//! Workers that far ahead of a slow one wait for it, and the queue in front of them fills and
//! applies its declared policy, as it does in front of one slow stage.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use crate::contain::{lock, read, write};
use crate::queue::{Aborted, DropReason, EdgeReceiver, EdgeSender, EdgeWatch};

/// Items a worker may have between dispatch and the output edge: one being worked on, one
/// finished while an earlier number is still out, so jitter between workers costs no
/// throughput.
pub(super) const PERMITS_PER_WORKER: usize = 2;

/// What goes with an item to its worker and back with its result: its lane (a camera's
/// input and output edges) and its number in that lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticket {
    pub(super) lane: usize,
    pub(super) number: u64,
}

/// The workers' shared input: hands items out one at a time, numbered per lane in the order
/// taken, the lanes served in turn. Lanes may be added while the workers run (a camera added by
/// a reload); a lane whose input closes is done.
pub(super) struct Dispatch<T> {
    taking: Mutex<Taking<T>>,
    /// Lanes added, for the next take to join to the others: a take waiting for an item holds
    /// the lock, and sees one come here.
    added: (Sender<Input<T>>, Receiver<Input<T>>),
    /// Each lane's window: permits per item between dispatch and its output.
    window: usize,
}

/// The lanes' inputs and whose turn it is, under one lock.
struct Taking<T> {
    inputs: Vec<Input<T>>,
    /// The lane to look at first: the one after the last served, so a lane that always has
    /// an item waiting cannot keep the others waiting (a fast camera cannot starve a slow one).
    turn: usize,
}

struct Input<T> {
    edge: EdgeReceiver<T>,
    next: u64,
    open: bool,
    /// A permit per item of this lane that may be between dispatch and its output.
    permits: Receiver<()>,
    /// Tells the lane's re-sequencer, once the input is closed, how many items it will get.
    closed: Option<Box<dyn FnOnce(u64) + Send>>,
}

/// The workers' shared output: re-sequences each lane's results onto its output edge.
pub(super) struct Resequencers<T> {
    lanes: RwLock<Vec<Arc<Resequencer<T>>>>,
}

/// One lane's re-sequencer.
pub(super) struct Resequencer<T> {
    /// With the output edge: sent under the lock, items leave in order.
    pending: Mutex<Pending<T>>,
    /// Gives back a permit per number that leaves.
    permits: Sender<()>,
    /// Its output's consumer is gone: the workers stop once every lane's is.
    gone: AtomicBool,
}

/// A dispatch and the re-sequencers for `workers` workers between each lane's input edge and
/// its output edge.
pub(super) fn lanes<I, O: Send + 'static>(
    lanes: Vec<super::Lane<I, O>>,
    workers: usize,
) -> (Dispatch<I>, Resequencers<O>) {
    let dispatch = Dispatch {
        taking: Mutex::new(Taking {
            inputs: Vec::with_capacity(lanes.len()),
            turn: 0,
        }),
        added: crossbeam_channel::unbounded(),
        window: PERMITS_PER_WORKER * workers.max(1),
    };
    let resequencers = Resequencers {
        lanes: RwLock::new(Vec::with_capacity(lanes.len())),
    };
    for lane in lanes {
        add(&dispatch, &resequencers, lane);
    }
    (dispatch, resequencers)
}

/// Adds a lane: its re-sequencer first, so a worker that takes its first item finds it.
pub(super) fn add<I, O: Send + 'static>(
    dispatch: &Dispatch<I>,
    resequencers: &Resequencers<O>,
    (input, output): super::Lane<I, O>,
) {
    let (give, take) = crossbeam_channel::bounded(dispatch.window);
    for _ in 0..dispatch.window {
        give.try_send(())
            .expect("the channel holds the whole window");
    }
    let resequencer = Arc::new(Resequencer {
        pending: Mutex::new(Pending {
            output: Some(output),
            ..Pending::default()
        }),
        permits: give,
        gone: AtomicBool::new(false),
    });
    // Under the lock, so the inputs join in the order of the re-sequencers.
    let mut lanes = write(&resequencers.lanes);
    lanes.push(Arc::clone(&resequencer));
    let input = Input {
        edge: input,
        next: 0,
        open: true,
        permits: take,
        closed: Some(Box::new(move |count| resequencer.close_after(count))),
    };
    dispatch
        .added
        .0
        .send(input)
        .expect("the dispatch holds the receiver");
}

/// What a look over the lanes found.
enum Look<T> {
    Item(Ticket, T),
    /// Every lane is closed and drained.
    Closed,
    /// Nothing to take now.
    Wait,
}

impl<T> Dispatch<T> {
    /// The next item and its ticket, from the first lane in turn with both an item and a
    /// permit; `None` once every lane is closed and drained. `abort` ends the wait.
    pub(super) fn take(
        &self,
        abort: &Receiver<Infallible>,
    ) -> Result<Option<(Ticket, T)>, Aborted> {
        // Other workers wait here while one waits for an item: that wait ends on an abort too.
        let mut taking = lock(&self.taking);
        loop {
            if abort.try_recv() == Err(TryRecvError::Disconnected) {
                return Err(Aborted);
            }
            taking.inputs.extend(self.added.1.try_iter());
            match self.look(&mut taking) {
                Look::Item(ticket, item) => return Ok(Some((ticket, item))),
                Look::Closed => return Ok(None),
                Look::Wait => {}
            }
            // Until something changes: an item in a lane with a permit, a permit back in a
            // lane without, a lane closed or added, or the abort.
            let mut change = Select::new();
            change.recv(abort);
            change.recv(&self.added.1);
            for input in taking.inputs.iter().filter(|input| input.open) {
                if input.permits.is_empty() {
                    change.recv(&input.permits);
                } else {
                    input.edge.ready_in(&mut change);
                }
            }
            change.ready();
        }
    }

    /// One look at each lane, in turn.
    fn look(&self, taking: &mut Taking<T>) -> Look<T> {
        let lanes = taking.inputs.len();
        let mut open = false;
        for lane in (0..lanes).map(|i| (taking.turn + i) % lanes) {
            let input = &mut taking.inputs[lane];
            // Only a taker, under the lock, takes permits: one seen here stays.
            if !input.open || input.permits.is_empty() {
                open |= input.open;
                continue;
            }
            match input.edge.try_recv() {
                Ok(item) => {
                    let _ = input.permits.try_recv();
                    let number = input.next;
                    input.next += 1;
                    taking.turn = (lane + 1) % lanes;
                    return Look::Item(Ticket { lane, number }, item);
                }
                Err(TryRecvError::Empty) => open = true,
                Err(TryRecvError::Disconnected) => {
                    input.open = false;
                    if let Some(closed) = input.closed.take() {
                        closed(input.next);
                    }
                }
            }
        }
        if open {
            Look::Wait
        } else {
            Look::Closed
        }
    }

    /// The input edge's counters, when there is one lane: a stage's report row shows them.
    pub(super) fn watch(&self) -> Option<EdgeWatch> {
        let mut taking = lock(&self.taking);
        taking.inputs.extend(self.added.1.try_iter());
        match &taking.inputs[..] {
            [one] => Some(one.edge.watch()),
            _ => None,
        }
    }
}

impl<T> Resequencers<T> {
    /// Hands over `ticket`'s result (see [`Resequencer::put`]). `Err(Disconnected)` only once
    /// every lane's output is gone: one camera's end does not stop the workers serving the
    /// others.
    pub(super) fn put(
        &self,
        ticket: Ticket,
        result: Option<T>,
        abort: &Receiver<Infallible>,
    ) -> Result<(), DropReason> {
        let lane = Arc::clone(&read(&self.lanes)[ticket.lane]);
        let outcome = lane.put(ticket.number, result, abort);
        if outcome == Err(DropReason::Disconnected) {
            lane.gone.store(true, Ordering::Release);
            let lanes = read(&self.lanes);
            if !lanes.iter().all(|lane| lane.gone.load(Ordering::Acquire)) {
                return Ok(());
            }
        }
        outcome
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
            let output = pending.output.as_ref();
            if let (Some(item), Some(output)) = (ready, output) {
                if output.send_unless(item, abort) == Err(DropReason::Disconnected) {
                    outcome = Err(DropReason::Disconnected);
                }
            }
            let _ = self.permits.try_send(());
        }
        pending.close_when_done();
        outcome
    }

    /// The lane's input is closed after `count` items: once they have all left, the output
    /// closes, and what is behind it drains and ends while the workers serve the other lanes
    /// (a camera removed by a reload).
    fn close_after(&self, count: u64) {
        let mut pending = lock(&self.pending);
        pending.end = Some(count);
        pending.close_when_done();
    }
}

/// Results that came back ahead of an earlier number, the next number to send on, and where.
struct Pending<T> {
    next: u64,
    held: BTreeMap<u64, Option<T>>,
    output: Option<EdgeSender<T>>,
    /// How many items the lane gets, once its input is closed.
    end: Option<u64>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            next: 0,
            held: BTreeMap::new(),
            output: None,
            end: None,
        }
    }
}

impl<T> Pending<T> {
    fn close_when_done(&mut self) {
        if self.end == Some(self.next) {
            self.output = None;
        }
    }

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
        let (dispatch, resequencers) = lanes(vec![(input, output)], 2);
        let permits = dispatch
            .added
            .1
            .try_recv()
            .map(|input| {
                let permits = input.permits.clone();
                lock(&dispatch.taking).inputs.push(input);
                permits
            })
            .unwrap();
        for item in 0..8 {
            to_input.send(item).expect("room");
        }
        let never = crossbeam_channel::never();
        let numbers: Vec<u64> = (0..4)
            .map(|_| dispatch.take(&never).unwrap().unwrap().0.number)
            .collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
        assert!(permits.is_empty());
        let ticket = |number| Ticket { lane: 0, number };
        // 1 and 2 come back first: nothing leaves, no permit returns.
        resequencers.put(ticket(2), Some(20), &never).unwrap();
        resequencers.put(ticket(1), None, &never).unwrap();
        assert!(permits.is_empty() && from_output.watch().stats().sent == 0);
        resequencers.put(ticket(0), Some(0), &never).unwrap();
        assert_eq!(
            [from_output.recv(), from_output.recv()],
            [Some(0), Some(20)]
        );
        assert_eq!(from_output.watch().stats().depth, 0);
        assert_eq!(permits.len(), 3);
        for expected in 4..7 {
            assert_eq!(dispatch.take(&never).unwrap().unwrap().0.number, expected);
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

    /// A lane that always has an item waiting gets every other take at most: the quiet lane's
    /// items are taken as they come, numbered in its own order; the workers end once both
    /// lanes are closed and drained.
    #[test]
    fn lanes_are_served_in_turn_and_numbered_each_on_its_own() {
        let (to_busy, busy) = edge(16);
        let (to_quiet, quiet) = edge(16);
        let (busy_out, _busy_results) = edge::<u32>(16);
        let (quiet_out, _quiet_results) = edge::<u32>(16);
        let (dispatch, _resequencers) = lanes(vec![(busy, busy_out), (quiet, quiet_out)], 4);
        for item in 0..6 {
            to_busy.send(item).expect("room");
        }
        for item in 100..102 {
            to_quiet.send(item).expect("room");
        }
        drop((to_busy, to_quiet));
        let never = crossbeam_channel::never();
        let taken: Vec<(usize, u64, u32)> = std::iter::from_fn(|| {
            let (ticket, item) = dispatch.take(&never).unwrap()?;
            Some((ticket.lane, ticket.number, item))
        })
        .collect();
        assert_eq!(
            taken,
            [
                (0, 0, 0),
                (1, 0, 100),
                (0, 1, 1),
                (1, 1, 101),
                (0, 2, 2),
                (0, 3, 3),
                (0, 4, 4),
                (0, 5, 5)
            ]
        );
    }

    /// A take waiting on an empty lane sees a lane added meanwhile, and takes from it.
    #[test]
    fn a_lane_added_while_a_take_waits_is_served() {
        let (_to_quiet, quiet) = edge::<u32>(4);
        let (quiet_out, _quiet_results) = edge::<u32>(4);
        let (dispatch, resequencers) = lanes(vec![(quiet, quiet_out)], 1);
        let dispatch = Arc::new(dispatch);
        let taker = {
            let dispatch = Arc::clone(&dispatch);
            thread::spawn(move || {
                let (ticket, item) = dispatch.take(&crossbeam_channel::never()).unwrap()?;
                Some((ticket.lane, ticket.number, item))
            })
        };
        thread::sleep(Duration::from_millis(20));
        let (to_added, added) = edge(4);
        let (added_out, added_results) = edge(4);
        to_added.send(7).expect("room");
        add(&dispatch, &resequencers, (added, added_out));
        assert_eq!(taker.join().unwrap(), Some((1, 0, 7)));
        let never = crossbeam_channel::never();
        resequencers
            .put(Ticket { lane: 1, number: 0 }, Some(70), &never)
            .unwrap();
        assert_eq!(added_results.recv(), Some(70));
    }
}
