//! The viewers' streams: `/snapshot.jpg`, `/stream.mjpeg` and `/events`, each fed from the view
//! thread's watch channels or a subscription to the event stream, and the seats that cap them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use tokio::sync::{broadcast, mpsc, Notify};

use super::routes::{full, streaming, text, App};
use super::server::Body;
use super::view::{View, Watching};
use crate::events::{Event, Events, NoEvent, Subscriber};
use crate::metrics;

/// A snapshot waits this long for a frame; then the pipeline is taken to be stopped.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// Events kept for `/events` viewers that reconnect, and queued for each viewer; a viewer
/// further behind loses the oldest.
const EVENTS_QUEUE: usize = 64;
/// The separator of `/stream.mjpeg`'s parts.
const BOUNDARY: &str = "scened-frame";

/// The open streams of each kind, capped.
pub(super) struct Streams {
    pub(super) pictures: Arc<Seats>,
    pub(super) figures: Arc<Seats>,
    /// Events an `/events` viewer lost, being behind.
    pub(super) events_dropped: ::metrics::Counter,
    pub(super) replay: Arc<Replay>,
}

impl Streams {
    /// Registers the viewer metrics, so every series shows from the first scrape.
    pub(super) fn new(max: usize) -> Self {
        let events_dropped = ::metrics::counter!(metrics::HTTP_EVENTS_DROPPED_TOTAL);
        events_dropped.increment(0);
        Self {
            pictures: Arc::new(Seats::new(max, "mjpeg")),
            figures: Arc::new(Seats::new(max, "events")),
            events_dropped,
            replay: Arc::new(Replay::new()),
        }
    }

    /// Starts numbering the run's events for `/events`; on the server's runtime.
    pub(super) fn feed(&self, events: &Events) -> tokio::task::JoinHandle<()> {
        let fill = self
            .replay
            .clone()
            .fill(events.clone(), self.events_dropped.clone());
        tokio::spawn(fill)
    }
}

/// Up to `max` holders at once, counted in a gauge.
pub(super) struct Seats {
    taken: AtomicUsize,
    max: usize,
    gauge: ::metrics::Gauge,
}

/// One of [`Seats`], given back on drop.
pub(super) struct Seat(Arc<Seats>);

impl Seats {
    fn new(max: usize, stream: &'static str) -> Self {
        let gauge = ::metrics::gauge!(metrics::HTTP_VIEWERS, metrics::STREAM => stream);
        gauge.set(0.0);
        Self {
            taken: AtomicUsize::new(0),
            max,
            gauge,
        }
    }

    pub(super) fn take(self: &Arc<Self>) -> Option<Seat> {
        let taken = self
            .taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        self.gauge.set((taken + 1) as f64);
        Some(Seat(self.clone()))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let left = self.0.taken.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.gauge.set(left as f64);
    }
}

/// The next frame as JPEG.
pub(super) async fn snapshot(view: &Arc<View>) -> Response<Body> {
    let mut pictures = view.pictures();
    let _viewer = view.watch(Watching::Pictures);
    let next = tokio::time::timeout(SNAPSHOT_WAIT, pictures.changed()).await;
    let jpeg = match next {
        Ok(Ok(())) => pictures.borrow_and_update().clone(),
        _ => None,
    };
    match jpeg {
        Some(jpeg) => full(StatusCode::OK, "image/jpeg", jpeg),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no frame in {} s: the pipeline is not running\n",
                SNAPSHOT_WAIT.as_secs()
            ),
        ),
    }
}

/// `/stream.mjpeg`: each new JPEG as a part, for as long as the viewer reads.
pub(super) fn stream_pictures(view: &Arc<View>, seat: Seat, head: bool) -> Response<Body> {
    let content_type = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    if head {
        return streaming(&content_type, Body::Full(None));
    }
    let mut pictures = view.pictures();
    let viewer = view.watch(Watching::Pictures);
    let (parts, body) = mpsc::channel(3);
    tokio::spawn(async move {
        let _held = (seat, viewer);
        loop {
            tokio::select! {
                () = parts.closed() => return,
                changed = pictures.changed() => if changed.is_err() { return },
            }
            let Some(jpeg) = pictures.borrow_and_update().clone() else {
                continue;
            };
            let head = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            );
            // A viewer slower than the frames waits here, and then gets the newest one.
            for part in [Bytes::from(head), jpeg, Bytes::from_static(b"\r\n")] {
                if parts.send(part).await.is_err() {
                    return;
                }
            }
        }
    });
    streaming(&content_type, Body::Stream(body))
}

/// `/events`: Server-Sent Events. Each of the run's events goes out as stdout prints it, named
/// by its kind and numbered (`id: 7`, `event: label`, `data: {"event":"label",…}`); between
/// them, at most `preview_fps` times a second, `event: status` carries the page's figures,
/// with the id of the last event sent. The first block carries `retry` too (a block of its
/// own would be an empty message to clients such as httpx-sse). A viewer that comes back with
/// `Last-Event-ID` first gets what it missed, as far as the [`Replay`] ring reaches.
pub(super) fn stream_events(
    app: &App,
    streams: &Streams,
    seat: Seat,
    head: bool,
    last_event_id: Option<u64>,
) -> Response<Body> {
    let content_type = "text/event-stream";
    if head {
        return streaming(content_type, Body::Full(None));
    }
    let (missed, mut last_id, mut live) = streams.replay.join(last_event_id);
    let mut missed = VecDeque::from(missed);
    let dropped = streams.events_dropped.clone();
    let Some(view) = app
        .cameras
        .list()
        .first()
        .map(|camera| Arc::clone(&camera.view))
    else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no camera\n");
    };
    let mut figures = view.figures();
    let viewer = view.watch(Watching::Figures);
    let (out, body) = mpsc::channel(2);
    tokio::spawn(async move {
        let _held = (seat, viewer);
        let mut first = true;
        loop {
            let (id, event) = match missed.pop_front() {
                Some(numbered) => numbered,
                None => tokio::select! {
                    () = out.closed() => return,
                    received = live.recv() => match received {
                        Ok(numbered) => numbered,
                        Err(broadcast::error::RecvError::Lagged(lost)) => {
                            dropped.increment(lost);
                            continue;
                        }
                        // The daemon is going: the figures end too.
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    changed = figures.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let Some(json) = figures.borrow_and_update().clone() else {
                            continue;
                        };
                        let block = sse(first, last_id, "status", &json);
                        first = false;
                        if out.send(block).await.is_err() {
                            return;
                        }
                        continue;
                    }
                },
            };
            last_id = id;
            let block = sse(first, id, event.kind(), event.to_json().as_bytes());
            first = false;
            if out.send(block).await.is_err() {
                return;
            }
        }
    });
    streaming(content_type, Body::Stream(body))
}

/// A browser reconnects this long after the stream breaks.
const RETRY_MS: u64 = 1000;

/// One Server-Sent Event: `retry` if it is the stream's first, its id, its name and its data, a
/// line of JSON.
fn sse(first: bool, id: u64, name: &str, json: &[u8]) -> Bytes {
    let head = if first {
        format!("retry: {RETRY_MS}\nid: {id}\nevent: {name}\ndata: ")
    } else {
        format!("id: {id}\nevent: {name}\ndata: ")
    };
    let mut event = Vec::with_capacity(head.len() + json.len() + 2);
    event.extend_from_slice(head.as_bytes());
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// An event and its number.
type Numbered = (u64, Arc<Event>);

/// The run's events as `/events` serves them: numbered from 1 by one subscription to the
/// stream, the last [`EVENTS_QUEUE`] kept for viewers that reconnect, and handed to every
/// viewer through a broadcast of as many (a viewer further behind loses the oldest, counted).
pub(super) struct Replay {
    ring: Mutex<VecDeque<Numbered>>,
    /// The number the next event gets.
    next: AtomicU64,
    live: broadcast::Sender<Numbered>,
}

impl Replay {
    fn new() -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(EVENTS_QUEUE)),
            next: AtomicU64::new(1),
            live: broadcast::channel(EVENTS_QUEUE).0,
        }
    }

    fn push(&self, event: Arc<Event>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if ring.len() == EVENTS_QUEUE {
            ring.pop_front();
        }
        ring.push_back((id, event.clone()));
        // Nobody watching is no error.
        let _ = self.live.send((id, event));
    }

    /// A viewer joins: what it missed since `last_event_id` (nothing for a new viewer, the
    /// whole ring for an id this run never gave), the id it is at, and the events from now.
    fn join(
        &self,
        last_event_id: Option<u64>,
    ) -> (Vec<Numbered>, u64, broadcast::Receiver<Numbered>) {
        // Under the lock, so no event falls between the ring and the broadcast.
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.next.load(Ordering::Relaxed) - 1;
        let after = match last_event_id {
            Some(id) if id <= now => id,
            Some(_) => 0,
            None => now,
        };
        let missed = ring.iter().filter(|(id, _)| *id > after).cloned().collect();
        (missed, after, self.live.subscribe())
    }

    /// Numbers the run's events until the stream closes. The publisher (a pipeline thread)
    /// only queues and wakes: this task falling behind loses the oldest, counted, and never
    /// holds the pipeline back.
    async fn fill(self: Arc<Self>, events: Events, dropped: ::metrics::Counter) {
        let queued = Arc::new(Notify::new());
        let subscriber = Subscriber::dropping_oldest(EVENTS_QUEUE, dropped).waking({
            let queued = queued.clone();
            move || queued.notify_one()
        });
        let subscription = events.subscribe(subscriber);
        loop {
            match subscription.try_recv() {
                Ok(event) => self.push(event),
                Err(NoEvent::Empty) => queued.notified().await,
                Err(NoEvent::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Arc<Event> {
        Arc::new(Event::started(
            "m.tflite",
            "int8",
            format!("source {n}"),
            "porch",
            (1, 1),
        ))
    }

    fn ids(numbered: &[Numbered]) -> Vec<u64> {
        numbered.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn the_first_block_carries_retry_and_every_block_an_id() {
        assert_eq!(
            sse(true, 3, "label", b"{\"a\":1}"),
            "retry: 1000\nid: 3\nevent: label\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            sse(false, 4, "status", b"{}"),
            "id: 4\nevent: status\ndata: {}\n\n"
        );
    }

    #[test]
    fn a_viewer_that_comes_back_gets_what_it_missed_as_far_as_the_ring_reaches() {
        let replay = Replay::new();
        let (missed, at, _) = replay.join(None);
        assert_eq!((missed.len(), at), (0, 0));
        for n in 0..EVENTS_QUEUE + 10 {
            replay.push(event(n));
        }
        let last = (EVENTS_QUEUE + 10) as u64;
        // New: nothing from before it came.
        let (missed, at, mut live) = replay.join(None);
        assert_eq!((missed.len(), at), (0, last));
        // Back from id 70: 71 on.
        let (missed, at, _) = replay.join(Some(last - 4));
        assert_eq!(ids(&missed), (last - 3..=last).collect::<Vec<_>>());
        assert_eq!(at, last - 4);
        // Further back than the ring: all it holds.
        let (missed, _, _) = replay.join(Some(3));
        assert_eq!(ids(&missed), (11..=last).collect::<Vec<_>>());
        // An id this run never gave (another run's): the whole ring, from 0.
        let (missed, at, _) = replay.join(Some(10 * last));
        assert_eq!((missed.len(), at), (EVENTS_QUEUE, 0));
        // And what comes next, live.
        replay.push(event(99));
        let (id, next) = live.try_recv().unwrap();
        assert_eq!(id, last + 1);
        assert!(matches!(&*next, Event::Started(s) if s.source == "source 99"));
    }
}
