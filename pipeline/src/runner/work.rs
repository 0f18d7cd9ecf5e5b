//! What the loop runs: a source or a stage as one [`Work`], fed by an [`Inlet`] (its own edge
//! or the workers' dispatch) and handing results to an [`Outlet`] (an edge or the
//! re-sequencer).

use std::convert::Infallible;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::report::StopReason;
use super::workers::{Dispatch, Resequencers, Ticket};
use crate::frame::{Frame, Stamp, Stamped};
use crate::queue::{Aborted, DropReason, EdgeReceiver, EdgeSender};
use crate::stage::{Shutdown, Source, Stage, StageError};

/// Where a stage's items come from, and what comes with each to go back with its result:
/// nothing from a stage's own edge; the lane and number for one of several workers.
pub(super) trait Inlet<T>: Send + 'static {
    type Ticket: Copy + Send + 'static;

    /// The next item; `None` once the input is closed and drained.
    fn take(&self, abort: &Receiver<Infallible>) -> Result<Option<(Self::Ticket, T)>, Aborted>;
}

impl<T: Send + 'static> Inlet<T> for EdgeReceiver<T> {
    type Ticket = ();

    fn take(&self, abort: &Receiver<Infallible>) -> Result<Option<((), T)>, Aborted> {
        self.recv_unless(abort)
            .map(|item| item.map(|item| ((), item)))
    }
}

impl<T: Send + 'static> Inlet<T> for Arc<Dispatch<T>> {
    type Ticket = Ticket;

    fn take(&self, abort: &Receiver<Infallible>) -> Result<Option<(Ticket, T)>, Aborted> {
        Dispatch::take(self, abort)
    }
}

/// Where results go: the output edge, or the workers' re-sequencer.
pub(super) trait Outlet<T>: Send + 'static {
    type Ticket;

    /// Hands on `item`, the result for `ticket`: `Err` says why it was dropped, or, from the
    /// re-sequencer, that the output is gone.
    fn put(
        &self,
        ticket: Self::Ticket,
        item: T,
        abort: &Receiver<Infallible>,
    ) -> Result<(), DropReason>;

    /// No result will come for `ticket`: its item failed or panicked.
    fn release(&self, ticket: Self::Ticket, abort: &Receiver<Infallible>);
}

impl<T: Send + 'static> Outlet<T> for EdgeSender<T> {
    type Ticket = ();

    fn put(&self, (): (), item: T, abort: &Receiver<Infallible>) -> Result<(), DropReason> {
        self.send_unless(item, abort)
    }

    fn release(&self, (): (), _: &Receiver<Infallible>) {}
}

impl<T: Send + 'static> Outlet<T> for Arc<Resequencers<T>> {
    type Ticket = Ticket;

    fn put(&self, ticket: Ticket, item: T, abort: &Receiver<Infallible>) -> Result<(), DropReason> {
        Resequencers::put(self, ticket, Some(item), abort)
    }

    fn release(&self, ticket: Ticket, abort: &Receiver<Infallible>) {
        // A gone output is found by this worker's next put.
        let _ = Resequencers::put(self, ticket, None, abort);
    }
}

/// A source and a stage seen the same way: something that takes an input, then turns it
/// into zero or one output.
pub(super) trait Work: Send + 'static {
    /// What the input's [`Inlet`] gives with it, for the [`Outlet`].
    type Ticket: Copy;
    type In;
    type Out: Stamped + Send + 'static;

    /// The next input, or why there is none.
    fn take(&mut self) -> Result<(Self::Ticket, Self::In), StopReason>;
    /// The stamp to measure frame age from.
    fn stamp_of(input: &Self::In) -> Option<Stamp>;
    /// `Ok(None)`: nothing more will come.
    fn run(&mut self, input: Self::In) -> Result<Option<Self::Out>, StageError>;
    /// Why `run` returned `Ok(None)`.
    fn finished(&self) -> StopReason;
    fn shutdown(&self) -> &Shutdown;
}

pub(super) struct SourceWork<S> {
    pub(super) source: S,
    pub(super) shutdown: Shutdown,
}

impl<S: Source> Work for SourceWork<S> {
    type Ticket = ();
    type In = ();
    type Out = Frame;

    fn take(&mut self) -> Result<((), ()), StopReason> {
        if self.shutdown.is_triggered() {
            Err(StopReason::Shutdown)
        } else {
            Ok(((), ()))
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

pub(super) struct StageWork<S, I> {
    pub(super) stage: S,
    pub(super) input: I,
    pub(super) shutdown: Shutdown,
}

impl<S: Stage, I: Inlet<S::In>> Work for StageWork<S, I>
where
    S::In: Stamped,
    S::Out: Stamped,
{
    type Ticket = I::Ticket;
    type In = S::In;
    type Out = S::Out;

    fn take(&mut self) -> Result<(I::Ticket, S::In), StopReason> {
        match self.input.take(self.shutdown.aborted()) {
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
