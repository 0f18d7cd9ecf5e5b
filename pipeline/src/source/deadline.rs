//! Reads with a deadline, for live sources: a camera, and a clip or folder paced at fps > 0.
//!
//! A live source's read can block for good: nokhwa's macOS `frame()` waits on a channel that
//! the camera itself keeps open, so it never fails when the camera goes (`camera/mod.rs`); a
//! V4L2 read can hang in the driver; a FIFO's writer can stop writing. [`Live`] opens a
//! source as its inner [`Reopen`] does and runs the source's reads on a thread of its own; a
//! read that has not returned within [`read_deadline`] (the first after an open: at least
//! [`FIRST_READ_DEADLINE`]) is a loss ([`SourceError::ReadTimeout`]),
//! which [`super::reconnect::Reconnecting`] handles as any other: a `source_lost` log line,
//! a reopen with backoff, counted in `scened_source_reconnects_total` when it works.
//!
//! A read stuck inside a driver cannot be cancelled. Its thread is left behind, holding the
//! source — a camera's handle and stream buffers, a file's descriptor and read buffer — until
//! the read returns, when it sees it was given up on and drops the source. A reopen meanwhile
//! may find the device busy; it is retried with backoff.

use std::error::Error;
use std::panic;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::reconnect::Reopen;
use super::SourceError;
use crate::contain;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

/// A replug, an exposure change or a slow disk can pause a source for a second; a read
/// still waiting after two is not coming back soon.
pub const MIN_READ_DEADLINE: Duration = Duration::from_secs(2);
/// A read gets at least this many frame periods.
const DEADLINE_PERIODS: f64 = 3.0;
/// The first read of a source just opened gets at least this long: a camera's stream can take
/// seconds to deliver its first frame (the capture session starting, exposure settling, a
/// Continuity Camera's wireless link), and a miss there would only reopen it to wait again.
pub const FIRST_READ_DEADLINE: Duration = Duration::from_secs(10);
/// How often a wait for a read looks at the stop request.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long a read of a source at `fps` may take: max(2 s, 3 frame periods); `None` for a
/// source that is not paced (fps 0), whose reads are as slow as the file.
pub fn read_deadline(fps: f64) -> Option<Duration> {
    (fps > 0.0).then(|| Duration::from_secs_f64(DEADLINE_PERIODS / fps).max(MIN_READ_DEADLINE))
}

/// Opens sources as `inner` does, each with its reads under `deadline`.
#[derive(Clone, Debug)]
pub struct Live<R> {
    inner: R,
    deadline: Duration,
}

impl<R: Reopen> Live<R> {
    pub fn new(inner: R, deadline: Duration) -> Self {
        Self { inner, deadline }
    }
}

impl<R: Reopen> Reopen for Live<R> {
    type Source = Deadlined;

    fn reopen(&self) -> Result<Deadlined, SourceError> {
        Deadlined::spawn(self.inner.reopen()?, self.deadline, self.describe())
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn is_loss(&self, error: &(dyn Error + 'static)) -> bool {
        matches!(
            error.downcast_ref::<SourceError>(),
            Some(SourceError::ReadTimeout { .. })
        ) || self.inner.is_loss(error)
    }
}

/// A read's result, or the message of the panic it ended in.
type Answer = Result<Result<Option<Frame>, StageError>, contain::Panic>;

/// A source whose reads run on a thread of its own.
pub struct Deadlined {
    /// One read per message; dropping it ends the reader once its read returns.
    requests: Sender<Shutdown>,
    answers: Receiver<Answer>,
    /// When the read being waited for was asked for.
    pending_since: Option<Instant>,
    deadline: Duration,
    /// No read has returned yet: [`FIRST_READ_DEADLINE`] applies.
    first: bool,
    what: String,
}

impl Deadlined {
    fn spawn<S: Source>(
        mut source: S,
        deadline: Duration,
        what: String,
    ) -> Result<Self, SourceError> {
        let (requests, asked) = crossbeam_channel::bounded::<Shutdown>(1);
        let (answer, answers) = crossbeam_channel::bounded(1);
        thread::Builder::new()
            .name("scened-read".into())
            .spawn(move || {
                for shutdown in asked {
                    let read = contain::catch(|| source.next_frame(&shutdown));
                    if answer.send(read).is_err() {
                        // Given up on: drop the source now.
                        break;
                    }
                }
            })
            .map_err(|source| SourceError::Thread {
                what: what.clone(),
                source,
            })?;
        Ok(Self {
            requests,
            answers,
            pending_since: None,
            deadline,
            first: true,
            what,
        })
    }
}

impl Source for Deadlined {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        let asked = match self.pending_since {
            Some(asked) => asked,
            None => {
                // The reader only stops when this side is dropped or it panicked outside a
                // read, which `catch` rules out: the send cannot fail.
                let _ = self.requests.send(shutdown.clone());
                *self.pending_since.insert(Instant::now())
            }
        };
        let deadline = if self.first {
            self.deadline.max(FIRST_READ_DEADLINE)
        } else {
            self.deadline
        };
        loop {
            let left = deadline.saturating_sub(asked.elapsed());
            if left.is_zero() {
                return Err(StageError::fatal(SourceError::ReadTimeout {
                    what: self.what.clone(),
                    after: deadline,
                }));
            }
            match self.answers.recv_timeout(left.min(STOP_POLL)) {
                Ok(answer) => {
                    self.pending_since = None;
                    self.first = false;
                    // A panic in the source is the runner's to report, as on its own thread.
                    return answer.unwrap_or_else(|panic| panic::resume_unwind(Box::new(panic.0)));
                }
                // The read goes on; the run stops without it.
                Err(RecvTimeoutError::Timeout) if shutdown.is_triggered() => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_three_frame_periods_and_at_least_two_seconds() {
        assert_eq!(read_deadline(0.0), None);
        assert_eq!(read_deadline(30.0), Some(Duration::from_secs(2)));
        assert_eq!(read_deadline(1.5), Some(Duration::from_secs(2)));
        assert_eq!(read_deadline(1.0), Some(Duration::from_secs(3)));
        assert_eq!(read_deadline(0.5), Some(Duration::from_secs(6)));
    }

    /// A source whose reads take as long as it is told, then give a frame.
    struct Slow(crossbeam_channel::Receiver<Duration>);

    impl Source for Slow {
        fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
            let Ok(pause) = self.0.recv() else {
                return Ok(None);
            };
            thread::sleep(pause);
            Ok(Some(Frame {
                seq: 0,
                captured_at: Instant::now(),
                image: image::RgbImage::new(2, 2),
            }))
        }
    }

    #[test]
    fn a_read_past_the_deadline_is_a_fatal_read_timeout_and_a_quick_one_a_frame() {
        let (pauses, told) = crossbeam_channel::unbounded();
        let deadline = Duration::from_millis(200);
        let mut source = Deadlined::spawn(Slow(told), deadline, "slow".into()).unwrap();
        let shutdown = Shutdown::new();
        // The first read may take longer: the source has just started.
        pauses.send(Duration::from_millis(400)).unwrap();
        assert!(source.next_frame(&shutdown).unwrap().is_some());
        pauses.send(Duration::from_secs(1)).unwrap();
        let started = Instant::now();
        let err = source.next_frame(&shutdown).unwrap_err();
        assert!(started.elapsed() >= deadline);
        assert!(matches!(err, StageError::Fatal(_)));
        assert_eq!(err.to_string(), "slow: no frame within 200 ms");
        // A stop ends a wait at once, without a frame.
        let stopper = shutdown.clone();
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            stopper.trigger();
        });
        let mut again = Deadlined::spawn(
            Slow(crossbeam_channel::never()),
            Duration::from_secs(600),
            "stuck".into(),
        )
        .unwrap();
        assert!(again.next_frame(&shutdown).unwrap().is_none());
        handle.join().unwrap();
    }

    struct Panicky;

    impl Source for Panicky {
        fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
            panic!("decoder bug")
        }
    }

    /// The runner reports a source's panic as `panicked`: it must reach the runner's thread.
    #[test]
    fn a_panic_on_the_reader_thread_reaches_the_caller() {
        let mut source = Deadlined::spawn(Panicky, Duration::from_secs(5), "p".into()).unwrap();
        let shutdown = Shutdown::new();
        let caught = contain::catch(|| source.next_frame(&shutdown).map(|f| f.is_some()));
        assert_eq!(caught.unwrap_err().to_string(), "decoder bug");
    }

    /// A FIFO clip whose writer pauses longer than the read deadline, then goes on: the read
    /// is given up on, the clip reopened (counted once), and the frames after the pause come
    /// through the new reader. The writer writes frame by frame, as a live encoder would; the
    /// abandoned reader may take one frame on its way out.
    #[cfg(unix)]
    #[test]
    fn a_fifo_whose_writer_pauses_is_lost_and_reopened() {
        use std::io::Write;
        use std::os::unix::ffi::OsStrExt;

        use crate::metrics::testing::record;
        use crate::metrics::SOURCE_RECONNECTS_TOTAL;
        use crate::source::clip::ClipConfig;
        use crate::source::testing::jpeg;
        use crate::source::SourceConfig;

        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("feed.mjpeg");
        let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("path");
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        const EACH: usize = 10;
        let writer = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                // Blocks until the source opens the FIFO to read.
                let mut feed = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                let frame = jpeg(16, 16, [200, 30, 30]);
                let burst = |feed: &mut std::fs::File| {
                    for _ in 0..EACH {
                        feed.write_all(&frame).unwrap();
                        thread::sleep(Duration::from_millis(20));
                    }
                };
                burst(&mut feed);
                thread::sleep(MIN_READ_DEADLINE + Duration::from_millis(600));
                burst(&mut feed);
            })
        };
        let config = SourceConfig::Clip(ClipConfig {
            path: Some(fifo),
            fps: 50.0,
            ..ClipConfig::default()
        });
        let (recorded, source) = record(|| config.build().expect("opens the FIFO"));
        let mut source = source;
        let shutdown = Shutdown::new();
        let started = Instant::now();
        let mut frames = Vec::new();
        // The writer closes after its second burst: the reopened clip ends there.
        while let Some(frame) = source.next_frame(&shutdown).expect("no fatal error") {
            frames.push((frame.seq, started.elapsed()));
            assert!(started.elapsed() < Duration::from_secs(30), "never ended");
        }
        writer.join().unwrap();
        assert_eq!(recorded.counter(SOURCE_RECONNECTS_TOTAL, &[]), Some(1));
        let after_pause = frames
            .iter()
            .filter(|(_, at)| *at > MIN_READ_DEADLINE)
            .count();
        assert_eq!(frames.len() - after_pause, EACH, "{frames:?}");
        assert!(after_pause >= EACH - 1, "{frames:?}");
        // One sequence across the reopen.
        assert!(frames
            .iter()
            .enumerate()
            .all(|(i, (seq, _))| *seq == i as u64));
    }
}
