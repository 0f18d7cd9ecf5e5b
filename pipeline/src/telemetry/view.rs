//! The live view's supply: frames handed over by the pipeline only while someone watches, and
//! the thread that turns them into JPEGs and the page's figures.
//!
//! The pipeline side is a [`Slot`], offered resize's input as a [`Tap`]: it loads one atomic
//! flag per item; only when the view has asked for a frame does it copy one (resize's input) into the
//! slot. It never waits: the view asks again when it wants the next one, so it takes at most
//! `preview_fps` frames however fast the pipeline runs.
//!
//! The view thread (`scened-view`, not a pipeline thread) sleeps while nobody watches. While
//! someone does, every `1 / preview_fps` it takes the next frame and encodes it (JPEG), and
//! takes the figures (`/status`, whose `top` ranks what the label is made of), then publishes both on
//! watch channels: each viewer reads the newest value when it is ready for one, so a slow
//! viewer skips frames and holds back nobody.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use tokio::sync::watch;
use tracing::debug;

use super::LiveStatus;
use crate::contain::lock;
use crate::frame::Frame;
use crate::metrics;
use crate::stage::Tap;

/// Longer than any source's frame period; then the view goes on without a new frame.
const FRAME_WAIT: Duration = Duration::from_secs(1);
/// A preview, not an archive: small and quick to encode.
const JPEG_QUALITY: u8 = 75;

/// Where the pipeline hands the live view what it asks for.
#[derive(Default)]
pub struct Preview {
    frames: Slot<Frame>,
}

impl Tap<Frame> for Preview {
    fn offer(&self, frame: &Frame) {
        if self.frames.wanted() {
            self.frames.put(frame.clone());
        }
    }
}

/// One value handed from a pipeline thread to the view thread on request.
struct Slot<T> {
    wanted: AtomicBool,
    /// Set at the stop: a wait for a value ends at once (the pipeline has stopped too).
    closed: AtomicBool,
    value: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            wanted: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            value: Mutex::new(None),
            filled: Condvar::new(),
        }
    }
}

impl<T> Slot<T> {
    /// Whether the view waits for a value: all the pipeline pays while nobody watches.
    fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    fn put(&self, value: T) {
        let mut slot = lock(&self.value);
        *slot = Some(value);
        self.wanted.store(false, Ordering::Relaxed);
        self.filled.notify_all();
    }

    /// Ends any wait for a value, now and later.
    fn close(&self) {
        let _slot = lock(&self.value);
        self.closed.store(true, Ordering::Relaxed);
        self.filled.notify_all();
    }

    /// Asks for the next value; the one held, if any, is dropped.
    fn request(&self) {
        let mut slot = lock(&self.value);
        *slot = None;
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// The value put since the last request, waiting for it at most `timeout`.
    fn take(&self, timeout: Duration) -> Option<T> {
        let slot = lock(&self.value);
        let (mut slot, _) = self
            .filled
            .wait_timeout_while(slot, timeout, |value| {
                value.is_none() && !self.closed.load(Ordering::Relaxed)
            })
            .unwrap_or_else(PoisonError::into_inner);
        slot.take()
    }
}

/// What a viewer watches, so the view thread makes only that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Watching {
    /// Frames, as JPEG (`/stream.mjpeg`, `/snapshot.jpg`).
    Pictures,
    /// The page's figures (`/events`).
    Figures,
}

#[derive(Default)]
struct Watchers {
    pictures: usize,
    figures: usize,
    stopped: bool,
}

/// The live view's pictures for a consumer off the HTTP side (MQTT's picture): one JPEG at a
/// time, made only when asked for, never waited on.
pub struct Pictures {
    view: Arc<View>,
    jpegs: watch::Receiver<Option<Bytes>>,
    /// Held while a picture is asked for: the view thread makes JPEGs while someone watches.
    asking: Option<Viewer>,
}

impl Pictures {
    pub(super) fn new(view: Arc<View>) -> Self {
        Self {
            jpegs: view.pictures(),
            view,
            asking: None,
        }
    }

    /// Asks for the next frame as JPEG; [`take`](Self::take) it once made.
    pub fn request(&mut self) {
        self.jpegs.mark_unchanged();
        if self.asking.is_none() {
            self.asking = Some(self.view.watch(Watching::Pictures));
        }
    }

    /// The JPEG asked for, if made by now; then the view makes no more for this.
    pub fn take(&mut self) -> Option<Bytes> {
        self.asking.as_ref()?;
        if !self.jpegs.has_changed().unwrap_or(false) {
            return None;
        }
        self.asking = None;
        self.jpegs.borrow_and_update().clone()
    }

    /// No more wanted.
    pub fn cancel(&mut self) {
        self.asking = None;
    }
}

/// The view thread's state, shared with the HTTP side.
pub(crate) struct View {
    preview: Arc<Preview>,
    status: Arc<LiveStatus>,
    period: Duration,
    watchers: Mutex<Watchers>,
    wake: Condvar,
    pictures: watch::Sender<Option<Bytes>>,
    figures: watch::Sender<Option<Bytes>>,
    encode_seconds: ::metrics::Histogram,
}

/// A viewer, counted while it lives.
pub(super) struct Viewer {
    view: Arc<View>,
    watching: Watching,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut watchers = lock(&self.view.watchers);
        match self.watching {
            Watching::Pictures => watchers.pictures -= 1,
            Watching::Figures => watchers.figures -= 1,
        }
    }
}

impl View {
    pub(super) fn new(preview: Arc<Preview>, status: Arc<LiveStatus>, period: Duration) -> Self {
        Self {
            preview,
            status,
            period,
            watchers: Mutex::default(),
            wake: Condvar::new(),
            pictures: watch::channel(None).0,
            figures: watch::channel(None).0,
            encode_seconds: ::metrics::histogram!(metrics::PREVIEW_ENCODE_SECONDS),
        }
    }

    /// Counts a viewer in until the returned guard drops; the view thread starts working
    /// for it at once.
    pub(super) fn watch(self: &Arc<Self>, watching: Watching) -> Viewer {
        let mut watchers = lock(&self.watchers);
        match watching {
            Watching::Pictures => watchers.pictures += 1,
            Watching::Figures => watchers.figures += 1,
        }
        self.wake.notify_all();
        Viewer {
            view: self.clone(),
            watching,
        }
    }

    /// The JPEGs, newest first; each viewer marks what it has seen.
    pub(super) fn pictures(&self) -> watch::Receiver<Option<Bytes>> {
        self.pictures.subscribe()
    }

    /// The figures as JSON.
    pub(super) fn figures(&self) -> watch::Receiver<Option<Bytes>> {
        self.figures.subscribe()
    }

    pub(super) fn stop(&self) {
        lock(&self.watchers).stopped = true;
        self.wake.notify_all();
        self.preview.frames.close();
    }

    /// The view thread: works while someone watches, until [`View::stop`].
    pub(super) fn run(&self) {
        while let Some((pictures, figures)) = self.next_round() {
            let started = Instant::now();
            if pictures {
                self.preview.frames.request();
                if let Some(frame) = self.preview.frames.take(FRAME_WAIT) {
                    self.publish_picture(&frame);
                }
            }
            if figures {
                self.publish_figures();
            }
            self.pause_until(started + self.period);
        }
    }

    /// Waits until someone watches; what they watch, or `None` once stopped.
    fn next_round(&self) -> Option<(bool, bool)> {
        let watchers = lock(&self.watchers);
        let watchers = self
            .wake
            .wait_while(watchers, |w| {
                !w.stopped && w.pictures == 0 && w.figures == 0
            })
            .unwrap_or_else(PoisonError::into_inner);
        (!watchers.stopped).then_some((watchers.pictures > 0, watchers.figures > 0))
    }

    fn pause_until(&self, until: Instant) {
        let watchers = lock(&self.watchers);
        let left = until.saturating_duration_since(Instant::now());
        let _ = self
            .wake
            .wait_timeout_while(watchers, left, |w| !w.stopped)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn publish_picture(&self, frame: &Frame) {
        let started = Instant::now();
        let mut jpeg = Vec::new();
        let (width, height) = frame.image.dimensions();
        let encoded = JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY).encode(
            frame.image.as_raw(),
            width,
            height,
            ExtendedColorType::Rgb8,
        );
        self.encode_seconds.record(started.elapsed());
        match encoded {
            Ok(()) => {
                self.pictures.send_replace(Some(Bytes::from(jpeg)));
            }
            // Frames are plain RGB of a checked size; nothing is expected to fail here.
            Err(error) => debug!(%error, "live view: cannot encode a frame"),
        }
    }

    fn publish_figures(&self) {
        let status = self.status.snapshot(Instant::now());
        let json = serde_json::to_vec(&status).expect("a struct of plain fields");
        self.figures.send_replace(Some(Bytes::from(json)));
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use image::RgbImage;

    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            captured_at: Instant::now(),
            image: RgbImage::new(4, 2),
        }
    }

    #[test]
    fn the_pipeline_hands_over_a_frame_only_when_asked() {
        let preview = Preview::default();
        // Nobody asked: nothing is copied.
        preview.offer(&frame(0));
        assert!(preview.frames.take(Duration::ZERO).is_none());
        preview.frames.request();
        assert!(preview.frames.wanted());
        preview.offer(&frame(1));
        // Asked once, given once: later frames pass untouched.
        assert!(!preview.frames.wanted());
        preview.offer(&frame(2));
        assert_eq!(preview.frames.take(Duration::ZERO).map(|f| f.seq), Some(1));
        assert!(preview.frames.take(Duration::ZERO).is_none());
    }

    #[test]
    fn a_request_waits_for_the_next_frame_from_another_thread() {
        let preview = Arc::new(Preview::default());
        preview.frames.request();
        let pipeline = {
            let preview = preview.clone();
            thread::spawn(move || {
                for seq in 0..1000 {
                    preview.offer(&frame(seq));
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let taken = preview.frames.take(Duration::from_secs(60));
        assert!(taken.is_some());
        pipeline.join().unwrap();
    }

    #[test]
    fn the_view_works_only_while_watched_and_publishes_jpegs_and_figures() {
        let preview = Arc::new(Preview::default());
        let status = Arc::new(LiveStatus::new(Duration::from_secs(2)));
        let view = Arc::new(View::new(
            preview.clone(),
            status,
            Duration::from_millis(10),
        ));
        let thread = {
            let view = view.clone();
            thread::spawn(move || view.run())
        };
        // Unwatched, the view asks for nothing.
        thread::sleep(Duration::from_millis(50));
        assert!(!preview.frames.wanted());
        let mut pictures = view.pictures();
        let mut figures = view.figures();
        let viewer = view.watch(Watching::Pictures);
        let reader = view.watch(Watching::Figures);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(pictures.has_changed().unwrap() && figures.has_changed().unwrap()) {
            assert!(Instant::now() < deadline, "nothing published");
            preview.offer(&frame(0));
            thread::sleep(Duration::from_millis(1));
        }
        let jpeg = pictures.borrow_and_update().clone().unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (4, 2));
        let json = figures.borrow_and_update().clone().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["frames"], 0);
        assert!(json["top"].is_array(), "{json}");
        drop((viewer, reader));
        view.stop();
        thread.join().unwrap();
    }
}
