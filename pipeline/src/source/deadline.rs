//! Opens and reads with a deadline, for live sources: a camera, and a clip or folder paced at
//! fps > 0.
//!
//! A live source can block for good: a V4L2 read can hang in the driver, a FIFO's writer can
//! stop writing, and opening or stopping a camera can hang inside the OS (nokhwa #204 reports
//! `Camera::new` hanging on a Mac). [`Live`] runs each source on a worker thread of its own
//! that opens it, reads it on request and closes it: an open that has not answered within
//! [`OPEN_DEADLINE`] fails ([`SourceError::OpenTimeout`]), and a read that has not returned
//! within [`read_deadline`] (the first after an open: at least [`FIRST_READ_DEADLINE`]) is a
//! loss ([`SourceError::ReadTimeout`]), which [`super::reconnect::Reconnecting`] handles as any
//! other: a `source_lost` log line, a reopen with backoff, counted in
//! `scened_source_reconnects_total` once frames flow again.
//!
//! A call stuck in a driver cannot be cancelled, so what is given up on is only let go of: the
//! worker closes the source (a camera's session stopped and released) as soon as its call
//! returns, and then ends. One worker at a time: a reopen first waits up to [`CLOSE_WAIT`] for
//! the previous worker to end, and while it has not, the attempt fails
//! ([`SourceError::StillClosing`]) and is retried with backoff. So a source never holds more
//! than one open session and one stuck thread, whatever the device does.

use std::error::Error;
use std::panic;
use std::sync::{Arc, Mutex, PoisonError};
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
/// How long an open may take: a capture session starting up, an iPhone over the air.
pub const OPEN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a reopen waits for the previous worker to close its source and end: stopping a
/// capture session takes well under a second, and a FIFO reader given up on ends as soon as
/// its writer writes again.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How often a wait looks at the stop request.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long a read of a source at `fps` may take: max(2 s, 3 frame periods); `None` for a
/// source that is not paced (fps 0), whose reads are as slow as the file.
pub fn read_deadline(fps: f64) -> Option<Duration> {
    (fps > 0.0).then(|| Duration::from_secs_f64(DEADLINE_PERIODS / fps).max(MIN_READ_DEADLINE))
}

/// Opens sources as `inner` does, each on a worker thread of its own, with its open under
/// [`OPEN_DEADLINE`] and its reads under `deadline`; never more than one worker at a time.
#[derive(Debug)]
pub struct Live<R> {
    inner: Arc<R>,
    deadline: Duration,
    open_deadline: Duration,
    close_wait: Duration,
    /// Disconnects when the last worker started has ended.
    last_worker: Mutex<Option<Receiver<()>>>,
}

impl<R: Reopen + Sync> Live<R> {
    pub fn new(inner: R, deadline: Duration) -> Self {
        Self::with_limits(inner, deadline, OPEN_DEADLINE, CLOSE_WAIT)
    }

    fn with_limits(
        inner: R,
        deadline: Duration,
        open_deadline: Duration,
        close_wait: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            deadline,
            open_deadline,
            close_wait,
            last_worker: Mutex::new(None),
        }
    }
}

impl<R: Reopen + Sync> Reopen for Live<R> {
    type Source = Deadlined;

    fn reopen(&self) -> Result<Deadlined, SourceError> {
        self.reopen_until(&Shutdown::new())
    }

    fn reopen_until(&self, shutdown: &Shutdown) -> Result<Deadlined, SourceError> {
        let what = self.describe();
        let mut last = self
            .last_worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ended) = last.as_ref() {
            if !wait_for_end(ended, self.close_wait, shutdown) {
                return Err(SourceError::StillClosing { what });
            }
        }
        let (worker, ended) = Deadlined::spawn(Arc::clone(&self.inner), self.deadline, what)?;
        *last = Some(ended);
        drop(last);
        worker.opened(self.open_deadline, shutdown)
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

/// Whether the worker behind `ended` ended within `limit` (or a stop came first: then it is
/// not waited for, and counts as still running).
fn wait_for_end(ended: &Receiver<()>, limit: Duration, shutdown: &Shutdown) -> bool {
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match ended.recv_timeout(left.min(STOP_POLL)) {
            Err(RecvTimeoutError::Disconnected) => return true,
            _ if left.is_zero() || shutdown.is_triggered() => return false,
            _ => {}
        }
    }
}

/// A read's result, or the message of the panic it ended in.
type Answer = Result<Result<Option<Frame>, StageError>, contain::Panic>;

/// A source that lives on a worker thread: opened, read and closed there.
pub struct Deadlined {
    /// One read per message; dropping it ends the worker once its call returns.
    requests: Sender<Shutdown>,
    answers: Receiver<Answer>,
    /// The open's outcome, once.
    opened: Receiver<Result<(), SourceError>>,
    /// When the read being waited for was asked for.
    pending_since: Option<Instant>,
    deadline: Duration,
    /// No read has returned yet: [`FIRST_READ_DEADLINE`] applies.
    first: bool,
    what: String,
}

impl Deadlined {
    /// Starts the worker, which opens a source as `inner` does; returns its handle and a
    /// receiver that disconnects when the worker has ended (its source closed).
    fn spawn<R: Reopen + Sync>(
        inner: Arc<R>,
        deadline: Duration,
        what: String,
    ) -> Result<(Self, Receiver<()>), SourceError> {
        let (requests, asked) = crossbeam_channel::bounded::<Shutdown>(1);
        let (answer, answers) = crossbeam_channel::bounded(1);
        let (open_answer, opened) = crossbeam_channel::bounded(1);
        let (alive, ended) = crossbeam_channel::bounded::<()>(0);
        thread::Builder::new()
            .name("scened-source".into())
            .spawn(move || {
                let _alive = alive;
                let mut source = match contain::catch(|| inner.reopen()) {
                    Ok(Ok(source)) => source,
                    Ok(Err(error)) => {
                        let _ = open_answer.send(Err(error));
                        return;
                    }
                    Err(panic) => {
                        let _ = open_answer.send(Err(SourceError::OpenPanicked {
                            what: inner.describe(),
                            panic,
                        }));
                        return;
                    }
                };
                // Given up on while opening: the source closes here, at once.
                if open_answer.send(Ok(())).is_err() {
                    return;
                }
                for shutdown in asked {
                    let read = contain::catch(|| source.next_frame(&shutdown));
                    if answer.send(read).is_err() {
                        // Given up on: the source closes now.
                        break;
                    }
                }
            })
            .map_err(|source| SourceError::Thread {
                what: what.clone(),
                source,
            })?;
        let worker = Self {
            requests,
            answers,
            opened,
            pending_since: None,
            deadline,
            first: true,
            what,
        };
        Ok((worker, ended))
    }

    /// Waits up to `limit` for the open; dropping `self` on failure lets the worker go.
    fn opened(self, limit: Duration, shutdown: &Shutdown) -> Result<Self, SourceError> {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match self.opened.recv_timeout(left.min(STOP_POLL)) {
                Ok(opened) => return opened.map(|()| self),
                Err(RecvTimeoutError::Timeout) if !left.is_zero() && !shutdown.is_triggered() => {}
                // Out of time, or stopping (the worker cannot end without answering).
                Err(_) => {
                    return Err(SourceError::OpenTimeout {
                        what: self.what.clone(),
                        after: limit,
                    })
                }
            }
        }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_deadline_is_three_frame_periods_and_at_least_two_seconds() {
        assert_eq!(read_deadline(0.0), None);
        assert_eq!(read_deadline(30.0), Some(Duration::from_secs(2)));
        assert_eq!(read_deadline(1.5), Some(Duration::from_secs(2)));
        assert_eq!(read_deadline(1.0), Some(Duration::from_secs(3)));
        assert_eq!(read_deadline(0.5), Some(Duration::from_secs(6)));
    }

    /// Hands out one ready-made source, as a device that opens at once.
    struct Ready<S>(Mutex<Option<S>>);

    impl<S: Source> Reopen for Ready<S> {
        type Source = S;

        fn reopen(&self) -> Result<S, SourceError> {
            let source = self.0.lock().unwrap().take();
            Ok(source.expect("opened once"))
        }

        fn describe(&self) -> String {
            "test".into()
        }
    }

    fn live<S: Source>(source: S, deadline: Duration) -> Deadlined {
        Live::new(Ready(Mutex::new(Some(source))), deadline)
            .reopen()
            .expect("opens")
    }

    /// A source whose reads take as long as it is told, then give a frame.
    struct Slow(crossbeam_channel::Receiver<Duration>);

    impl Source for Slow {
        fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
            let Ok(pause) = self.0.recv() else {
                return Ok(None);
            };
            thread::sleep(pause);
            Ok(Some(frame()))
        }
    }

    fn frame() -> Frame {
        Frame {
            seq: 0,
            captured_at: Instant::now(),
            image: image::RgbImage::new(2, 2),
        }
    }

    #[test]
    fn a_read_past_the_deadline_is_a_fatal_read_timeout_and_a_quick_one_a_frame() {
        let (pauses, told) = crossbeam_channel::unbounded();
        let deadline = Duration::from_millis(200);
        let mut source = live(Slow(told), deadline);
        let shutdown = Shutdown::new();
        // The first read may take longer: the source has just started.
        pauses.send(Duration::from_millis(400)).unwrap();
        assert!(source.next_frame(&shutdown).unwrap().is_some());
        pauses.send(Duration::from_secs(1)).unwrap();
        let started = Instant::now();
        let err = source.next_frame(&shutdown).unwrap_err();
        assert!(started.elapsed() >= deadline);
        assert!(matches!(err, StageError::Fatal(_)));
        assert_eq!(err.to_string(), "test: no frame within 200 ms");
        // A stop ends a wait at once, without a frame.
        let stopper = shutdown.clone();
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            stopper.trigger();
        });
        let mut again = live(Slow(crossbeam_channel::never()), Duration::from_secs(600));
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
        let mut source = live(Panicky, Duration::from_secs(5));
        let shutdown = Shutdown::new();
        let caught = contain::catch(|| source.next_frame(&shutdown).map(|f| f.is_some()));
        assert_eq!(caught.unwrap_err().to_string(), "decoder bug");
    }

    /// How a fake camera behaves after it opens, and whether opening hangs.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Behaviour {
        /// Opening does not answer until the test lets it (nokhwa #204's `Camera::new`).
        HangsOnOpen,
        /// Opens, then no frame comes (a lid closed): each read waits out the source's own
        /// read limit, as the macOS source's does, and fails.
        DeliversNothing,
        /// Opens, gives two frames, then its reads fail (unplugged).
        Dies,
        /// Opens and streams.
        Works,
    }

    /// What a fake camera does, and what it holds: sessions opening or open (each on a worker
    /// thread, so this also counts the workers), and the most there ever were at once.
    struct Fake {
        behaviour: Mutex<Behaviour>,
        held: AtomicUsize,
        most_held: AtomicUsize,
        opens: AtomicUsize,
        /// A hung open waits on this until its sender is dropped.
        release: Receiver<()>,
    }

    struct FakeCamera(Arc<Fake>);

    struct Session {
        behaviour: Behaviour,
        frames: u32,
        fake: Arc<Fake>,
    }

    impl Drop for Session {
        fn drop(&mut self) {
            self.fake.held.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Reopen for FakeCamera {
        type Source = Session;

        fn reopen(&self) -> Result<Session, SourceError> {
            let fake = &self.0;
            let now = fake.held.fetch_add(1, Ordering::SeqCst) + 1;
            fake.most_held.fetch_max(now, Ordering::SeqCst);
            fake.opens.fetch_add(1, Ordering::SeqCst);
            let behaviour = *fake.behaviour.lock().unwrap();
            let session = Session {
                behaviour,
                frames: 0,
                fake: Arc::clone(fake),
            };
            if behaviour == Behaviour::HangsOnOpen {
                let _ = fake.release.recv();
            }
            Ok(session)
        }

        fn describe(&self) -> String {
            "fake camera".into()
        }
    }

    impl Source for Session {
        fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
            match self.behaviour {
                Behaviour::DeliversNothing => {
                    thread::sleep(Duration::from_millis(30));
                    Err(StageError::fatal(SourceError::ReadTimeout {
                        what: "fake camera".into(),
                        after: Duration::from_millis(30),
                    }))
                }
                Behaviour::Dies if self.frames >= 2 => {
                    Err(StageError::fatal(SourceError::NoCamera))
                }
                _ => {
                    self.frames += 1;
                    Ok(Some(frame()))
                }
            }
        }
    }

    /// The reconnect loop over a fake camera that dies, then hangs on open, then delivers
    /// nothing, then works: whatever it does, at most one session is held (opening, open, or
    /// not yet closed) and so at most one worker thread is alive; the wait keeps growing
    /// until frames flow, and only then is the camera back, once.
    #[test]
    fn the_reconnect_loop_holds_at_most_one_session_and_one_thread() {
        use crate::error::Chain;
        use crate::events::{Event, Events, Subscriber};
        use crate::metrics::testing::record;
        use crate::metrics::SOURCE_RECONNECTS_TOTAL;
        use crate::source::reconnect::{Backoff, Reconnecting};

        let (hold, release) = crossbeam_channel::bounded::<()>(0);
        let fake = Arc::new(Fake {
            behaviour: Mutex::new(Behaviour::Dies),
            held: AtomicUsize::new(0),
            most_held: AtomicUsize::new(0),
            opens: AtomicUsize::new(0),
            release,
        });
        let set = |behaviour| *fake.behaviour.lock().unwrap() = behaviour;
        let live = Live::with_limits(
            FakeCamera(Arc::clone(&fake)),
            Duration::from_secs(5),
            Duration::from_millis(200),
            Duration::from_millis(100),
        );
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(80),
        };
        let (recorded, mut source) = record(|| {
            let first = live.reopen().expect("opens");
            Reconnecting::new(live, first, backoff)
        });
        let events = Events::new();
        let said = events.subscribe(Subscriber::blocking(8));
        source.publish_to(&events);
        let shutdown = Shutdown::new();
        let mut next = || match source.next_frame(&shutdown) {
            Ok(Some(_)) => None,
            Ok(None) => panic!("no stop was asked for"),
            Err(StageError::Item(error)) => Some(Chain(&*error).to_string()),
            Err(StageError::Fatal(error)) => panic!("fatal: {error}"),
        };
        const STUCK: &str = "fake camera: still closing from before (a call into its driver \
                             has not returned)";
        let unavailable =
            |ms, why: &str| format!("fake camera unavailable, retrying in {ms} ms: {why}");

        // Two frames, then it dies, and every open hangs: the first attempt times out, and
        // while that open has not returned no other is started.
        assert_eq!((next(), next()), (None, None));
        set(Behaviour::HangsOnOpen);
        assert_eq!(
            next(),
            Some(unavailable(20, "fake camera: not open within 200 ms"))
        );
        assert_eq!(next(), Some(unavailable(40, STUCK)));
        assert_eq!(next(), Some(unavailable(80, STUCK)));
        assert_eq!(fake.opens.load(Ordering::SeqCst), 2);
        assert_eq!(fake.held.load(Ordering::SeqCst), 1);

        // The hung open returns at last, and its session is closed at once; now the camera
        // opens but sends nothing: each open is a failed attempt, the wait stays at its cap.
        set(Behaviour::DeliversNothing);
        drop(hold);
        let nothing = "fake camera: no frame within 30 ms";
        for _ in 0..3 {
            assert_eq!(next(), Some(unavailable(80, nothing)));
        }
        assert_eq!(fake.opens.load(Ordering::SeqCst), 5);
        assert!(matches!(
            &*said.try_recv().expect("lost"),
            Event::SourceLost(_)
        ));
        // No return while nothing flows (the counter is read once, at the end: reading it
        // takes the recorder's snapshot).
        assert!(said.try_recv().is_err(), "no return while nothing flows");

        // It works again: back, once, at the seventh attempt.
        set(Behaviour::Works);
        assert_eq!(next(), None);
        let Event::SourceBack(back) = (*said.try_recv().expect("back")).clone() else {
            panic!("not source_back");
        };
        assert_eq!((back.reconnects, back.attempts), (1, 7));
        assert_eq!(recorded.counter(SOURCE_RECONNECTS_TOTAL, &[]), Some(1));
        assert_eq!(fake.most_held.load(Ordering::SeqCst), 1);
        drop(source);
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
