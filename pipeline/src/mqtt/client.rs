//! The client thread: one thread owns rumqttc's blocking [`Client`] and its [`Connection`]
//! (whose tokio runtime stays inside it), takes events from the outbox, publishes them and
//! drives the connection, with backoff while the broker is away.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ::metrics::{counter, gauge, Counter, Gauge};
use rumqttc::{
    Client, Connection, ConnectionError, Event as MqttEvent, Incoming, MqttOptions, Outgoing, QoS,
    RecvTimeoutError,
};
use tracing::{info, warn};

use super::claim::claim;
use super::discovery::{self, Served};
use super::topics::{Marker, Publish, State, Topics};
use super::{Broker, MqttError, CONNECT_TIMEOUT_SECONDS};
use crate::contain;
use crate::events::{Events, NoEvent, Subscriber, Subscription};
use crate::metrics::{
    MQTT_CONNECTED, MQTT_CONNECTIONS_TOTAL, MQTT_CONNECTION_ERRORS_TOTAL,
    MQTT_EVENTS_DROPPED_TOTAL, MQTT_EVENTS_PUBLISHED_TOTAL, REASON,
};
use crate::stage::Shutdown;
use crate::telemetry::view::Pictures;
use crate::telemetry::LiveStatus;

/// The first wait after a failed connection, doubled after each further failure up to
/// `RETRY_MAX`: a broker restarting is back within seconds, one that is down stays down.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often the thread, connected, looks for new events in the outbox.
const TICK: Duration = Duration::from_millis(20);
/// Requests rumqttc holds before it has written them; events wait in the outbox instead,
/// where the drop policy applies.
const CLIENT_QUEUE: usize = 16;
/// At a stop, how long the thread may take to publish what is left and `offline`, and to
/// disconnect: a signal's drain has 750 ms in all.
const FINISH_LIMIT: Duration = Duration::from_millis(500);
/// How often the diagnostics (fps, latency, score) go out while connected.
const DIAGNOSTICS_EVERY: Duration = Duration::from_secs(5);
/// A picture asked of the live view that has not come by then (the pipeline has stopped) is
/// given up.
const PICTURE_WAIT: Duration = Duration::from_secs(5);

/// A client ready to connect.
pub struct MqttClient {
    pub(super) broker: Broker,
    /// With the last will.
    pub(super) options: MqttOptions,
    /// Without it, for [`MqttClient::claim`].
    pub(super) probe: MqttOptions,
    pub(super) topics: Topics,
    pub(super) camera: String,
    pub(super) qos: QoS,
    pub(super) outbox: usize,
    /// Home Assistant's discovery prefix, with `discovery`.
    pub(super) discovery_prefix: Option<String>,
    pub(super) image_every: Option<Duration>,
    pub(super) marker: Marker,
}

/// What the rest of the daemon gives MQTT to publish beside the events.
pub struct Live {
    /// The pipeline's figures, for the diagnostics, when telemetry follows them.
    pub status: Option<Arc<LiveStatus>>,
    /// The live view's pictures, when telemetry serves it.
    pub pictures: Option<Pictures>,
    /// The live view's address, for Home Assistant's `configuration_url`.
    pub url: Option<String>,
    /// With several cameras, the one this client publishes as: the others' events are
    /// left to their own clients.
    pub only: Option<String>,
}

impl MqttClient {
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Looks at who publishes as this camera (see [`super::claim`]): an error naming the camera
    /// and `key`, where its name is given, when another running instance does. Call before
    /// anything else starts.
    pub fn claim(&self, key: &str) -> Result<(), MqttError> {
        let (probe, broker, topics) = (self.probe.clone(), &self.broker, &self.topics);
        let name = (key, self.camera.as_str());
        claim(probe, broker, topics, name, &self.marker.instance)
    }

    /// Subscribes to `events` and starts the thread, which connects in the background.
    /// Register the metrics here, on the thread with the recorder.
    pub fn start(self, events: &Events, live: Live) -> Result<Mqtt, MqttError> {
        if self.image_every.is_some() && live.pictures.is_none() {
            return Err(MqttError::ImageWithoutTelemetry);
        }
        let served = Served {
            url: live.url,
            diagnostics: live.status.is_some(),
            picture: self.image_every.is_some(),
        };
        let discovery = self
            .discovery_prefix
            .as_deref()
            .map_or_else(Vec::new, |prefix| {
                discovery::configs(prefix, &self.camera, &self.topics, &served)
            });
        let tally = Arc::new(Tally::default());
        let meters = Meters::new();
        let evicted = meters.evicted.clone();
        let outbox = events.subscribe(Subscriber::dropping_oldest(self.outbox, evicted));
        let outbox = Arc::new(outbox);
        let stop = Shutdown::new();
        let broker = self.broker.clone();
        let pictures = live.pictures.filter(|_| self.image_every.is_some());
        let worker = Worker {
            marker: self.marker.to_json(),
            client: self,
            outbox: Arc::clone(&outbox),
            stop: stop.clone(),
            tally: Arc::clone(&tally),
            meters,
            status: live.status,
            pictures,
            discovery,
            only: live.only,
        };
        let thread = thread::Builder::new()
            .name("scened-mqtt".into())
            .spawn(move || worker.run())
            .map_err(MqttError::Thread)?;
        Ok(Mqtt {
            broker,
            stop,
            tally,
            outbox,
            thread,
        })
    }
}

/// What the thread has done so far, for the report.
#[derive(Default)]
struct Tally {
    published: AtomicU64,
    lost: AtomicU64,
    connections: AtomicU64,
}

struct Meters {
    connected: Gauge,
    connections: Counter,
    errors: Counter,
    published: Counter,
    evicted: Counter,
    lost: Counter,
}

impl Meters {
    fn new() -> Self {
        let dropped = |reason| counter!(MQTT_EVENTS_DROPPED_TOTAL, REASON => reason);
        let meters = Self {
            connected: gauge!(MQTT_CONNECTED),
            connections: counter!(MQTT_CONNECTIONS_TOTAL),
            errors: counter!(MQTT_CONNECTION_ERRORS_TOTAL),
            published: counter!(MQTT_EVENTS_PUBLISHED_TOTAL),
            evicted: dropped("evicted"),
            lost: dropped("disconnected"),
        };
        // Every series from the start: a dashboard reads a count, not a missing series.
        meters.connected.set(0.0);
        for counter in [&meters.connections, &meters.errors, &meters.published] {
            counter.increment(0);
        }
        meters.evicted.increment(0);
        meters.lost.increment(0);
        meters
    }
}

/// The running MQTT side.
pub struct Mqtt {
    broker: Broker,
    stop: Shutdown,
    tally: Arc<Tally>,
    /// Shared with the thread, for its drop count.
    outbox: Arc<Subscription>,
    thread: JoinHandle<()>,
}

impl Mqtt {
    /// After the event stream is closed: publishes what the outbox still holds and `offline`,
    /// disconnects, and says what became of the events. Takes at most [`FINISH_LIMIT`]: a
    /// thread still busy then (in a connection attempt) is left behind, unfinished.
    pub fn finish(self) -> MqttReport {
        self.stop.trigger();
        // The thread notices the stop within a tick, then has its own FINISH_LIMIT.
        let deadline = Instant::now() + FINISH_LIMIT + 5 * TICK;
        while !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let finished = self.thread.is_finished();
        if finished {
            let _ = self.thread.join();
        } else {
            warn!(broker = %self.broker, "mqtt: still connecting at the stop, left behind");
        }
        let read = |count: &AtomicU64| count.load(Ordering::Acquire);
        MqttReport {
            broker: self.broker.to_string(),
            published: read(&self.tally.published),
            evicted: self.outbox.dropped(),
            lost: read(&self.tally.lost),
            connections: read(&self.tally.connections),
            finished,
        }
    }
}

/// What became of the events sent to MQTT in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttReport {
    pub broker: String,
    /// Written to the broker (QoS 0) or acknowledged by it (QoS 1).
    pub published: u64,
    /// Dropped from the full outbox while the broker was away.
    pub evicted: u64,
    /// Lost with a connection, or still unpublished at the stop.
    pub lost: u64,
    pub connections: u64,
    /// Whether the thread was done by the stop; if not, events it still held are in no
    /// count.
    pub finished: bool,
}

impl MqttReport {
    /// Every event the outbox received: each is published or dropped.
    pub fn events(&self) -> u64 {
        self.published + self.evicted + self.lost
    }
}

impl fmt::Display for MqttReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mqtt {}: {} events, {} published, {} dropped ({} evicted from the outbox, {} lost \
             with the connection or at the stop), connected {} times",
            self.broker,
            self.events(),
            self.published,
            self.evicted + self.lost,
            self.evicted,
            self.lost,
            self.connections
        )?;
        if !self.finished {
            writeln!(
                f,
                "mqtt: still connecting at the stop; what it held is not counted"
            )?;
        }
        Ok(())
    }
}

/// The thread: moves events from the outbox to the client, drives the connection.
struct Worker {
    client: MqttClient,
    outbox: Arc<Subscription>,
    stop: Shutdown,
    tally: Arc<Tally>,
    meters: Meters,
    status: Option<Arc<LiveStatus>>,
    pictures: Option<Pictures>,
    /// The discovery topics and configs, published on each connection.
    discovery: Vec<(String, String)>,
    /// Only this camera's events, with several.
    only: Option<String>,
    /// The instance marker's JSON.
    marker: String,
}

/// The connection's state on the thread.
struct Session {
    client: Client,
    connection: Connection,
    connected: bool,
    /// Taken from the outbox, not yet accepted by the client.
    pending: VecDeque<Publish>,
    /// Accepted by the client, not yet written, in order: whether each is counted.
    queued: VecDeque<bool>,
    /// QoS 1: written, not yet acknowledged, by packet id.
    unacked: HashMap<u16, bool>,
    /// The retained `label` topic's bookkeeping.
    state: State,
    /// The picture: owed since the label changed; asked of the live view since; sent last.
    picture_owed: bool,
    picture_asked: Option<Instant>,
    picture_sent: Option<Instant>,
    next_diagnostics: Instant,
    retry_in: Duration,
    /// Since when the broker has been away, once that was logged: being back is logged at
    /// the same level.
    away_since: Option<Instant>,
}

impl Worker {
    fn run(self) {
        let broker = self.client.broker.clone();
        // rumqttc builds a tokio runtime and unwraps it; a panic here must not go unnoticed.
        if let Err(panic) = contain::catch(move || self.serve()) {
            warn!(%broker, error = %panic, "mqtt: the client failed; no more events go to MQTT");
        }
    }

    fn serve(mut self) {
        let (client, mut connection) = Client::new(self.client.options.clone(), CLIENT_QUEUE);
        let mut network = connection.eventloop.network_options();
        network.set_connection_timeout(CONNECT_TIMEOUT_SECONDS);
        connection.eventloop.set_network_options(network);
        let mut session = Session {
            client,
            connection,
            connected: false,
            pending: VecDeque::new(),
            queued: VecDeque::new(),
            unacked: HashMap::new(),
            state: State::default(),
            picture_owed: false,
            picture_asked: None,
            picture_sent: None,
            next_diagnostics: Instant::now(),
            retry_in: RETRY_FIRST,
            away_since: None,
        };
        while !self.stop.is_triggered() {
            if session.connected {
                self.hand_over(&mut session);
            }
            // Connecting takes what it takes (up to the connect timeout); connected, the
            // outbox is looked at every tick.
            let wait = if session.connected {
                TICK
            } else {
                Duration::from_secs(CONNECT_TIMEOUT_SECONDS + 1)
            };
            match session.connection.recv_timeout(wait) {
                Ok(Ok(event)) => self.on_event(&mut session, event),
                Ok(Err(error)) => self.on_error(&mut session, &error),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        self.finish(session);
    }

    /// Moves events from the outbox into the client until it is full or the outbox empty;
    /// then, caught up, the label of now, the picture and the diagnostics when due.
    fn hand_over(&mut self, session: &mut Session) {
        loop {
            if !self.flush(session) {
                return;
            }
            match self.outbox.try_recv() {
                // The daemon's own events (a reload) say no camera: each camera's stream says them.
                Ok(event)
                    if self.only.is_some()
                        && event
                            .camera()
                            .is_some_and(|camera| Some(camera) != self.only.as_deref()) => {}
                Ok(event) => {
                    let json = event.to_json();
                    session.state.saw(&event, &json);
                    session.pending.push_back(self.client.topics.event(&json));
                }
                Err(NoEvent::Empty | NoEvent::Closed) => {
                    let Some(state) = session.state.due(&self.client.topics) else {
                        break;
                    };
                    session.pending.push_back(state);
                    session.picture_owed = self.pictures.is_some();
                }
            }
        }
        self.tend(session, Instant::now());
        self.flush(session);
    }

    /// Hands pending publishes to the client; false when it is full (the eventloop takes them
    /// as it writes; the topics are checked, so none is invalid).
    fn flush(&self, session: &mut Session) -> bool {
        while let Some(publish) = session.pending.front() {
            let sent = session.client.try_publish(
                publish.topic.as_str(),
                self.client.qos,
                publish.retain,
                publish.payload.clone(),
            );
            if sent.is_err() {
                return false;
            }
            session.queued.push_back(publish.counted);
            session.pending.pop_front();
        }
        true
    }

    /// The diagnostics every few seconds; the picture when owed, asked for and made, at most
    /// once every `image_every_seconds`.
    fn tend(&mut self, session: &mut Session, now: Instant) {
        let topics = &self.client.topics;
        if let Some(status) = self
            .status
            .as_ref()
            .filter(|_| now >= session.next_diagnostics)
        {
            let status = status.snapshot(now);
            session.pending.push_back(topics.diagnostics(&status));
            session.next_diagnostics = now + DIAGNOSTICS_EVERY;
        }
        let (Some(pictures), Some(every)) = (&mut self.pictures, self.client.image_every) else {
            return;
        };
        match session.picture_asked {
            Some(asked) => {
                if let Some(jpeg) = pictures.take() {
                    session.pending.push_back(topics.picture(&jpeg));
                    (session.picture_asked, session.picture_sent) = (None, Some(now));
                } else if now.saturating_duration_since(asked) > PICTURE_WAIT {
                    pictures.cancel();
                    session.picture_asked = None;
                }
            }
            None => {
                let rested = session
                    .picture_sent
                    .is_none_or(|sent| now.saturating_duration_since(sent) >= every);
                if session.picture_owed && rested {
                    pictures.request();
                    (session.picture_owed, session.picture_asked) = (false, Some(now));
                }
            }
        }
    }

    fn on_event(&self, session: &mut Session, event: MqttEvent) {
        match event {
            MqttEvent::Incoming(Incoming::ConnAck(_)) => self.on_connected(session),
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => {
                let Some(counted) = session.queued.pop_front() else {
                    return;
                };
                if self.client.qos == QoS::AtMostOnce {
                    self.published(counted);
                } else {
                    session.unacked.insert(pkid, counted);
                }
            }
            MqttEvent::Incoming(Incoming::PubAck(ack)) => {
                if let Some(counted) = session.unacked.remove(&ack.pkid) {
                    self.published(counted);
                }
            }
            _ => {}
        }
    }

    fn published(&self, counted: bool) {
        if counted {
            self.tally.published.fetch_add(1, Ordering::AcqRel);
            self.meters.published.increment(1);
        }
    }

    /// Connected: the marker, availability and discovery go first, retained; the label of
    /// now once caught up with the outbox.
    fn on_connected(&self, session: &mut Session) {
        session.connected = true;
        session.retry_in = RETRY_FIRST;
        self.tally.connections.fetch_add(1, Ordering::AcqRel);
        self.meters.connections.increment(1);
        self.meters.connected.set(1.0);
        match session.away_since.take() {
            Some(since) => {
                let away_ms = since.elapsed().as_millis() as u64;
                warn!(broker = %self.client.broker, away_ms, "mqtt: broker back, connected");
            }
            None => info!(broker = %self.client.broker, "mqtt: connected"),
        }
        let first = self.client.topics.on_connect(&self.marker, &self.discovery);
        for publish in first.into_iter().rev() {
            session.pending.push_front(publish);
        }
        // A restarted broker has lost what was retained.
        session.state.reconnected();
        session.picture_owed = self.pictures.is_some();
        session.next_diagnostics = Instant::now();
    }

    /// A failed attempt or a lost connection: what the client held is lost (a new session
    /// starts clean), counted; then a wait before the next attempt.
    fn on_error(&self, session: &mut Session, error: &ConnectionError) {
        let lost = session.queued.drain(..).filter(|&counted| counted).count()
            + session
                .unacked
                .drain()
                .filter(|&(_, counted)| counted)
                .count();
        session.connection.eventloop.pending.clear();
        self.lose(lost as u64);
        // Retained copies may be among them; they go again on reconnecting.
        session.pending.retain(|publish| publish.counted);
        session.away_since.get_or_insert_with(Instant::now);
        self.meters.errors.increment(1);
        self.meters.connected.set(0.0);
        let was = std::mem::replace(&mut session.connected, false);
        let what = if was {
            "connection lost"
        } else {
            "cannot connect"
        };
        warn!(
            broker = %self.client.broker,
            error = %error,
            retry_in_ms = session.retry_in.as_millis() as u64,
            "mqtt: {what}"
        );
        if !self.stop.sleep(session.retry_in) {
            session.retry_in = (session.retry_in * 2).min(RETRY_MAX);
        }
    }

    fn lose(&self, events: u64) {
        self.tally.lost.fetch_add(events, Ordering::AcqRel);
        self.meters.lost.increment(events);
    }

    /// The stream is closed: publish the rest and `offline`, then disconnect. Whatever is not
    /// published by then is lost.
    fn finish(&mut self, mut session: Session) {
        let deadline = Instant::now() + FINISH_LIMIT;
        if session.connected {
            let mut last_words = VecDeque::from(self.client.topics.at_stop());
            let mut disconnecting = false;
            while Instant::now() < deadline && session.connected {
                // Whatever is still pending did not fit in the client; else the outbox is empty.
                self.hand_over(&mut session);
                if session.pending.is_empty() {
                    if let Some(word) = last_words.pop_front() {
                        session.pending.push_back(word);
                        continue;
                    }
                    // Everything written (QoS 0) or acknowledged (QoS 1): say goodbye, so
                    // the broker does not send the will.
                    let idle = session.queued.is_empty() && session.unacked.is_empty();
                    if idle && !disconnecting {
                        disconnecting = session.client.try_disconnect().is_ok();
                    }
                }
                match session.connection.recv_timeout(TICK) {
                    Ok(Ok(MqttEvent::Outgoing(Outgoing::Disconnect))) => break,
                    Ok(Ok(event)) => self.on_event(&mut session, event),
                    Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
        let mut left = session.queued.iter().filter(|&&c| c).count()
            + session.unacked.values().filter(|&&c| c).count()
            + session.pending.iter().filter(|p| p.counted).count();
        left += std::iter::from_fn(|| self.outbox.try_recv().ok()).count();
        self.lose(left as u64);
        self.meters.connected.set(0.0);
    }
}
