//! Reopening a source that is lost mid-run: a camera unplugged, a V4L2 device whose reads
//! start failing after a while (nokhwa #47), a live source whose read outlasts its deadline
//! ([`super::deadline`]).
//!
//! [`Reconnecting`] wraps any source that can be opened again ([`Reopen`]). A fatal error
//! from the open source that [`Reopen::is_loss`] calls a loss is logged as `source_lost`; the
//! source is closed, then reopened after a wait that doubles from [`Backoff::first`] up to
//! [`Backoff::max`] while attempts fail. Each failed attempt is an item error, so the runner
//! counts and logs it and the run goes on. A reopened source is back only when it delivers a
//! frame: a camera that opens but sends nothing (a closed lid) is lost again at its read
//! deadline, and that counts as one more failed attempt, so the wait keeps growing instead of
//! starting over at each open. The return counts in `scened_source_reconnects_total`. The loss
//! and the return are also `source_lost` and `source_back` events ([`crate::events`]). Other
//! fatal errors end the run as from any source. Waits end early on shutdown. Frames keep one
//! sequence across reopens.

use std::error::Error;
use std::time::{Duration, Instant};

use ::metrics::{counter, Counter};
use tracing::{info, warn};

use super::SourceError;
use crate::error::Chain;
use crate::events::{Event, Events};
use crate::frame::Frame;
use crate::metrics::SOURCE_RECONNECTS_TOTAL;
use crate::stage::{Shutdown, Source, StageError};

/// Something that opens a source, as often as needed.
pub trait Reopen: Send + 'static {
    type Source: Source;

    fn reopen(&self) -> Result<Self::Source, SourceError>;

    /// [`Reopen::reopen`], giving up early on shutdown where opening waits.
    fn reopen_until(&self, _shutdown: &Shutdown) -> Result<Self::Source, SourceError> {
        self.reopen()
    }

    /// What errors and logs call the source, e.g. `camera 0`.
    fn describe(&self) -> String;

    /// Whether a fatal error of an open source means it is lost (closed and reopened) rather
    /// than broken (the run ends). For a device, every one.
    fn is_loss(&self, _error: &(dyn Error + 'static)) -> bool {
        true
    }
}

/// How long to wait before reopening: `first` after a loss, doubling after each failed
/// attempt, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

pub struct Reconnecting<R: Reopen> {
    reopen: R,
    /// `None` while lost.
    source: Option<R::Source>,
    backoff: Backoff,
    /// The wait before the next attempt.
    retry_in: Duration,
    next_seq: u64,
    reconnects: Counter,
    /// Reopened so far, for the events.
    reconnected: u64,
    /// While lost: since when, and the reopen attempts so far. Still set while a reopened
    /// source has not delivered a frame.
    lost: Option<(Instant, u64)>,
    events: Events,
}

impl<R: Reopen> Reconnecting<R> {
    /// `source` is the first one `reopen` made: opened by the caller, so that a source that
    /// is not there at all fails start-up instead of being retried. Register the metric
    /// here, on the thread where the recorder is installed.
    pub fn new(reopen: R, source: R::Source, backoff: Backoff) -> Self {
        Self {
            reopen,
            source: Some(source),
            backoff,
            retry_in: backoff.first,
            next_seq: 0,
            reconnects: counter!(SOURCE_RECONNECTS_TOTAL),
            reconnected: 0,
            lost: None,
            events: Events::default(),
        }
    }

    /// The open source, reopening a lost one after the wait; `Ok(None)` on shutdown.
    fn source(&mut self, shutdown: &Shutdown) -> Result<Option<&mut R::Source>, StageError> {
        if self.source.is_none() {
            if shutdown.sleep(self.retry_in) {
                return Ok(None);
            }
            let (_, attempts) = self.lost.get_or_insert((Instant::now(), 0));
            *attempts += 1;
            match self.reopen.reopen_until(shutdown) {
                Ok(source) => {
                    self.source = Some(source);
                    info!(source = %self.reopen.describe(), "source reopened");
                }
                Err(_) if shutdown.is_triggered() => return Ok(None),
                Err(error) => return Err(self.failed_attempt(Box::new(error))),
            }
        }
        Ok(self.source.as_mut())
    }

    /// An attempt that did not bring frames back: the wait doubles.
    fn failed_attempt(&mut self, error: Box<dyn Error + Send + Sync>) -> StageError {
        self.retry_in = (self.retry_in * 2).min(self.backoff.max);
        StageError::item(SourceError::Unavailable {
            what: self.reopen.describe(),
            retry_in: self.retry_in,
            source: error,
        })
    }

    /// The first frame since a loss: the source is back.
    fn back(&mut self) {
        let Some((lost_at, attempts)) = self.lost.take() else {
            return;
        };
        self.retry_in = self.backoff.first;
        self.reconnects.increment(1);
        self.reconnected += 1;
        let what = self.reopen.describe();
        info!(source = %what, attempts, "source back");
        let back = Event::source_back(what, self.reconnected, attempts, lost_at);
        self.events.publish(back);
    }
}

impl<R: Reopen> Source for Reconnecting<R> {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        loop {
            let Some(source) = self.source(shutdown)? else {
                return Ok(None);
            };
            match source.next_frame(shutdown) {
                Ok(Some(mut frame)) => {
                    self.back();
                    frame.seq = self.next_seq;
                    self.next_seq += 1;
                    return Ok(Some(frame));
                }
                Err(StageError::Fatal(cause)) if self.reopen.is_loss(&*cause) => {
                    self.source = None;
                    if self.lost.is_some() {
                        // Reopened, but lost again before any frame.
                        return Err(self.failed_attempt(cause));
                    }
                    let what = self.reopen.describe();
                    let reason = Chain(&*cause).to_string();
                    warn!(
                        source = %what,
                        retry_in_ms = self.retry_in.as_millis() as u64,
                        error = %reason,
                        "source_lost"
                    );
                    self.lost = Some((Instant::now(), 0));
                    let lost = Event::source_lost(what, reason, self.reconnected, self.retry_in);
                    self.events.publish(lost);
                }
                other => return other,
            }
        }
    }

    fn publish_to(&mut self, events: &Events) {
        self.events = events.clone();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::events::Subscriber;
    use crate::metrics::testing::record;
    use crate::source::clip::{ClipConfig, DEMO_CLIP};

    /// A real clip file as the lost-and-found device: it plays, is cut to nothing and then
    /// removed under the open source, and comes back. As a device, every fatal error is a
    /// loss (a clip alone only loses a read to its deadline).
    #[derive(Clone)]
    struct Device(ClipConfig);

    impl Reopen for Device {
        type Source = <ClipConfig as Reopen>::Source;

        fn reopen(&self) -> Result<Self::Source, SourceError> {
            self.0.reopen()
        }

        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    fn looping_clip() -> (tempfile::TempDir, PathBuf, Device) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("scenes.mjpeg");
        fs::write(&path, DEMO_CLIP).expect("write clip");
        let config = ClipConfig {
            path: Some(path.clone()),
            fps: 0.0,
            looping: true,
            ..ClipConfig::default()
        };
        (dir, path, Device(config))
    }

    fn item_error(result: Result<Option<Frame>, StageError>) -> String {
        match result {
            Err(StageError::Item(error)) => Chain(&*error).to_string(),
            Err(fatal) => panic!("fatal error {fatal}"),
            Ok(frame) => panic!("expected an error, got {:?}", frame.map(|f| f.seq)),
        }
    }

    #[test]
    fn a_lost_source_is_retried_with_capped_backoff_and_recovers() {
        let (_dir, path, device) = looping_clip();
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
        };
        let (recorded, mut source) = record(|| {
            let first = device.reopen().expect("builds");
            Reconnecting::new(device.clone(), first, backoff)
        });
        let events = Events::new();
        let said = events.subscribe(Subscriber::blocking(8));
        source.publish_to(&events);
        let shutdown = Shutdown::new();
        let mut next = || source.next_frame(&shutdown);
        for seq in 0..5 {
            assert_eq!(next().expect("ok").expect("a frame").seq, seq);
        }

        // Cut to nothing: what was already read still plays, then the clip has no frames: it
        // is lost, waits 10 ms and is found empty, so the wait doubles.
        fs::File::create(&path).expect("truncate");
        let name = format!("clip {}", path.display());
        let empty = |ms| {
            format!(
                "{name} unavailable, retrying in {ms} ms: clip {} is empty",
                path.display()
            )
        };
        let mut played = 5;
        let first_retry = loop {
            match next() {
                Ok(Some(frame)) => {
                    assert_eq!(frame.seq, played);
                    played += 1;
                }
                Ok(None) => panic!("a looping clip does not end"),
                Err(StageError::Fatal(error)) => panic!("fatal error {error}"),
                Err(StageError::Item(error)) if error.to_string().contains("unavailable") => {
                    break item_error(Err(StageError::Item(error)))
                }
                // The frame the cut went through.
                Err(StageError::Item(_)) => {}
            }
            assert!(played < 200, "never lost");
        };
        assert_eq!(first_retry, empty(20));
        let event = said.try_recv().expect("an event");
        // What docs/events.md shows (`--no-capture`).
        println!("{event}");
        let Event::SourceLost(lost) = (*event).clone() else {
            panic!("not source_lost: {event}");
        };
        let reason = format!("clip {} has no decodable frames", path.display());
        assert_eq!(
            (lost.source, lost.reason, lost.reconnects, lost.retry_in_ms),
            (name.clone(), reason, 0, 10)
        );
        // Empty, then gone: each attempt fails naming why, and the wait doubles to its cap.
        assert_eq!(item_error(next()), empty(40));
        fs::remove_file(&path).expect("remove");
        let gone = item_error(next());
        assert!(
            gone.starts_with(&format!(
                "{name} unavailable, retrying in 40 ms: cannot read "
            )),
            "{gone}"
        );

        // Back: the next read reopens it and the sequence goes on where it stopped.
        fs::write(&path, DEMO_CLIP).expect("restore");
        for seq in played..played + 3 {
            assert_eq!(next().expect("ok").expect("a frame").seq, seq);
        }
        assert_eq!(recorded.counter(SOURCE_RECONNECTS_TOTAL, &[]), Some(1));
        // Found on the fourth attempt, after the four waits.
        let event = said.try_recv().expect("an event");
        println!("{event}");
        let Event::SourceBack(back) = (*event).clone() else {
            panic!("not source_back: {event}");
        };
        assert_eq!((back.source, back.reconnects, back.attempts), (name, 1, 4));
        assert!(back.down_ms >= 10 + 20 + 40 + 40, "{}", back.down_ms);
        assert!(said.try_recv().is_err(), "one loss, one return");
    }

    #[test]
    fn a_stop_cuts_the_wait_for_a_reopen_short() {
        let (_dir, path, device) = looping_clip();
        let backoff = Backoff {
            first: Duration::from_secs(600),
            max: Duration::from_secs(600),
        };
        let first = device.reopen().expect("builds");
        let mut source = Reconnecting::new(device, first, backoff);
        let shutdown = Shutdown::new();
        fs::File::create(&path).expect("truncate");
        let stopper = shutdown.clone();
        let started = Instant::now();
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            stopper.trigger();
        });
        // Frames already read, then the loss, then the 600 s wait, which the stop cuts.
        while !matches!(source.next_frame(&shutdown), Ok(None)) {}
        assert!(started.elapsed() < Duration::from_secs(60));
        handle.join().expect("stopper");
    }

    /// A file source, not a device: a fatal error that is not a missed deadline ends it.
    #[test]
    fn a_clip_that_breaks_is_not_reopened() {
        let (_dir, path, Device(config)) = looping_clip();
        let first = config.reopen().expect("builds");
        let mut source = Reconnecting::new(config, first, RETRY_NEVER);
        fs::File::create(&path).expect("truncate");
        let shutdown = Shutdown::new();
        let fatal = loop {
            match source.next_frame(&shutdown) {
                Err(StageError::Fatal(error)) => break error.to_string(),
                Ok(None) => panic!("a looping clip does not end"),
                _ => {}
            }
        };
        assert_eq!(
            fatal,
            format!("clip {} has no decodable frames", path.display())
        );
    }

    const RETRY_NEVER: Backoff = Backoff {
        first: Duration::from_secs(600),
        max: Duration::from_secs(600),
    };
}
