//! MQTT: the event stream published to a broker, with availability, for home automation.
//!
//! With an `[output.mqtt]` table, scened connects to the broker and publishes, under
//! `<topic_prefix>/<camera>/`:
//!
//! | topic | what | retained |
//! |---|---|---|
//! | `label` | the current label: the `label` event's JSON object | yes |
//! | `events` | every event, as on stdout | no |
//! | `availability` | `online` once connected; `offline` at a clean stop, and as the last will the broker sends when scened dies | yes |
//!
//! and, with `discovery = true`, a Home Assistant discovery config, so the label shows up as a
//! sensor. One thread owns rumqttc's blocking [`Client`] and its [`Connection`] (whose tokio
//! runtime stays inside it): nothing here waits on the pipeline, nor it on this. Events reach
//! the thread through a subscription to the event stream, the outbox: bounded, dropping its
//! oldest when the broker is away for long. Every event is either published or counted dropped
//! (`scened_mqtt_events_dropped_total`, by reason). A broker that is down at start or goes away
//! is retried with backoff, each failure counted and logged; on every (re)connection the
//! availability, the discovery config and the current label are published again, since a
//! restarted broker may have lost its retained messages.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ::metrics::{counter, gauge, Counter, Gauge};
use rumqttc::{
    Client, Connection, ConnectionError, Event as MqttEvent, Incoming, LastWill, MqttOptions,
    Outgoing, QoS, RecvTimeoutError, TlsConfiguration, Transport,
};
use serde::Deserialize;
use tracing::{info, warn};

use crate::contain;
use crate::error::Invalid;
use crate::events::{Event, Events, NoEvent, Subscriber, Subscription};
use crate::metrics::{
    MQTT_CONNECTED, MQTT_CONNECTIONS_TOTAL, MQTT_CONNECTION_ERRORS_TOTAL,
    MQTT_EVENTS_DROPPED_TOTAL, MQTT_EVENTS_PUBLISHED_TOTAL, REASON,
};
use crate::stage::Shutdown;

pub const DEFAULT_TOPIC_PREFIX: &str = "scened";
pub const DEFAULT_KEEP_ALIVE_SECONDS: u64 = 30;
pub const DEFAULT_QOS: u8 = 0;
/// At 30 labels a second (`--every-frame`), half a minute of the broker away; a few hundred KB.
pub const DEFAULT_OUTBOX: usize = 1000;
pub const DEFAULT_DISCOVERY: bool = false;
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";
const MAX_OUTBOX: usize = 100_000;

/// The first wait after a failed connection, doubled after each further failure up to
/// `RETRY_MAX`: a broker restarting is back within seconds, one that is down stays down.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest a connection attempt (TCP, TLS, CONNECT/CONNACK) may take.
const CONNECT_TIMEOUT_SECONDS: u64 = 5;
/// How often the thread, connected, looks for new events in the outbox.
const TICK: Duration = Duration::from_millis(20);
/// Requests rumqttc holds before it has written them; events wait in the outbox instead,
/// where the drop policy applies.
const CLIENT_QUEUE: usize = 16;
/// At a stop, how long the thread may take to publish what is left and `offline`, and to
/// disconnect: a signal's drain has 750 ms in all.
const FINISH_LIMIT: Duration = Duration::from_millis(500);

/// `[output.mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://HOST[:PORT]` (port 1883 by default) or `mqtts://HOST[:PORT]` (TLS, 8883).
    pub broker: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// The name of the environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// Topics are `<topic_prefix>/<camera>/label|events|availability`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Seconds between keep-alive pings; the broker declares scened gone (and publishes the
    /// last will) after 1.5 times this without a word. 1 to 65535.
    #[serde(default = "default_keep_alive_seconds")]
    pub keep_alive_seconds: u64,
    /// 0 (at most once) or 1 (at least once, acknowledged by the broker).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// For `mqtts`: a PEM file of the CA that signed the broker's certificate. Left out, the
    /// system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Events held while the broker is away, 1 to 100000; beyond, the oldest are dropped.
    #[serde(default = "default_outbox")]
    pub outbox: usize,
    /// Publish a Home Assistant discovery config (retained), so the label appears as a sensor.
    #[serde(default = "default_discovery")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
}

fn default_topic_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.to_owned()
}
fn default_keep_alive_seconds() -> u64 {
    DEFAULT_KEEP_ALIVE_SECONDS
}
fn default_qos() -> u8 {
    DEFAULT_QOS
}
fn default_outbox() -> usize {
    DEFAULT_OUTBOX
}
fn default_discovery() -> bool {
    DEFAULT_DISCOVERY
}
fn default_discovery_prefix() -> String {
    DEFAULT_DISCOVERY_PREFIX.to_owned()
}

impl MqttConfig {
    /// The settings at their defaults, with `broker`.
    pub fn new(broker: &str) -> Self {
        Self {
            broker: broker.to_owned(),
            username: None,
            password_env: None,
            topic_prefix: default_topic_prefix(),
            keep_alive_seconds: DEFAULT_KEEP_ALIVE_SECONDS,
            qos: DEFAULT_QOS,
            ca_file: None,
            outbox: DEFAULT_OUTBOX,
            discovery: DEFAULT_DISCOVERY,
            discovery_prefix: default_discovery_prefix(),
        }
    }

    /// Checks the settings, and `camera` as a topic level, without touching the environment,
    /// a file or the network; gives where the broker is.
    pub fn check(&self, camera: &str) -> Result<Broker, Invalid> {
        let broker = Broker::parse(&self.broker).ok_or_else(|| Invalid {
            key: "output.mqtt.broker".into(),
            expected: "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]",
            got: format!("{:?}", self.broker),
        })?;
        let keep_alive = self.keep_alive_seconds;
        let key = "output.mqtt.keep_alive_seconds";
        Invalid::check(
            (1..=65535).contains(&keep_alive),
            key,
            "1 to 65535",
            keep_alive,
        )?;
        Invalid::check(self.qos <= 1, "output.mqtt.qos", "0 or 1", self.qos)?;
        let outbox = self.outbox;
        let key = "output.mqtt.outbox";
        Invalid::check(
            (1..=MAX_OUTBOX).contains(&outbox),
            key,
            "1 to 100000",
            outbox,
        )?;
        let topic = "a topic without +, # or a leading $, not empty";
        for (key, value) in [
            ("output.mqtt.topic_prefix", &self.topic_prefix),
            ("output.mqtt.discovery_prefix", &self.discovery_prefix),
        ] {
            Invalid::check(is_topic(value), key, topic, format!("{value:?}"))?;
        }
        let level = "one topic level (no /, + or #) for MQTT, not empty";
        let ok = is_topic(camera) && !camera.contains('/');
        Invalid::check(ok, "telemetry.camera", level, format!("{camera:?}"))?;
        if self.password_env.is_some() {
            let key = "output.mqtt.username";
            let expected = "set when password_env is";
            Invalid::check(self.username.is_some(), key, expected, "nothing")?;
        }
        Ok(broker)
    }

    /// Checks the settings, reads the password from the environment and the CA file: all
    /// that can fail before connecting. Nothing connects yet.
    pub fn build(&self, camera: &str) -> Result<MqttClient, MqttError> {
        let broker = self.check(camera)?;
        let topics = Topics::new(&self.topic_prefix, camera);
        let qos = if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let client_id = format!("scened-{}-{}", id_safe(camera), std::process::id());
        let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
        options
            .set_keep_alive(Duration::from_secs(self.keep_alive_seconds))
            .set_last_will(LastWill::new(&topics.availability, OFFLINE, qos, true));
        if let Some(username) = &self.username {
            let password = match &self.password_env {
                Some(var) => {
                    std::env::var(var).map_err(|_| MqttError::PasswordUnset { var: var.clone() })?
                }
                None => String::new(),
            };
            options.set_credentials(username, password);
        }
        if broker.tls {
            options.set_transport(Transport::tls_with_config(self.tls()?));
        }
        let discovery = self
            .discovery
            .then(|| discovery(&self.discovery_prefix, camera, &topics));
        Ok(MqttClient {
            broker,
            options,
            topics,
            qos,
            outbox: self.outbox,
            discovery,
        })
    }

    fn tls(&self) -> Result<TlsConfiguration, MqttError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;

        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let bad = |reason: String| MqttError::CaFile {
                    path: path.clone(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| bad(e.to_string()))?;
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no certificate in it".into()));
                }
            }
            None => {
                // Unreadable stores are skipped; none at all is an error below.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(MqttError::NoSystemRoots);
                }
            }
        }
        // The provider is named rather than taken from the process default, which another
        // crate could set to something else.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| MqttError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfiguration::Rustls(Arc::new(config)))
    }
}

/// A topic or prefix scened may publish under.
fn is_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.starts_with('$') && !topic.contains(['+', '#', '\0'])
}

/// `text` with what Home Assistant ids and client ids do not take replaced by `_`.
fn id_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where the broker is, from `broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Broker {
    /// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`; an IPv6 host in brackets.
    pub fn parse(url: &str) -> Option<Self> {
        let (tls, rest) = match url.split_once("://")? {
            ("mqtt", rest) => (false, rest),
            ("mqtts", rest) => (true, rest),
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                let port = match after {
                    "" => None,
                    after => Some(after.strip_prefix(':')?),
                };
                (host, port)
            }
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let bad = |c: char| c.is_whitespace() || "/@?#[]".contains(c);
        if host.is_empty() || host.contains(bad) {
            return None;
        }
        let port = match port {
            Some(port) => port.parse::<u16>().ok().filter(|&p| p != 0)?,
            None if tls => 8883,
            None => 1883,
        };
        Some(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("output.mqtt.password_env: the environment variable {var} is not set")]
    PasswordUnset { var: String },
    #[error("output.mqtt.ca_file: cannot use {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error(
        "output.mqtt.broker: mqtts needs trusted roots, and the system has none (set ca_file)"
    )]
    NoSystemRoots,
    #[error("output.mqtt: TLS: {0}")]
    Tls(String),
    #[error("output.mqtt: cannot start its thread")]
    Thread(#[source] io::Error),
}

const ONLINE: &str = "online";
const OFFLINE: &str = "offline";

/// The topics of one camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub label: String,
    pub events: String,
    pub availability: String,
}

impl Topics {
    pub fn new(prefix: &str, camera: &str) -> Self {
        let topic = |name| format!("{prefix}/{camera}/{name}");
        Self {
            label: topic("label"),
            events: topic("events"),
            availability: topic("availability"),
        }
    }
}

/// Home Assistant's discovery topic and config for the label sensor.
fn discovery(prefix: &str, camera: &str, topics: &Topics) -> (String, String) {
    let id = format!("scened_{}", id_safe(camera));
    let config = serde_json::json!({
        "name": "Scene",
        "unique_id": format!("{id}_label"),
        "state_topic": topics.label,
        "value_template": "{{ value_json.label }}",
        "json_attributes_topic": topics.label,
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "icon": "mdi:image-search",
        "device": {
            "identifiers": [id],
            "name": format!("scened {camera}"),
            "model": "scened",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
    });
    (
        format!("{prefix}/sensor/{id}/label/config"),
        config.to_string(),
    )
}

/// A client ready to connect.
pub struct MqttClient {
    broker: Broker,
    options: MqttOptions,
    topics: Topics,
    qos: QoS,
    outbox: usize,
    discovery: Option<(String, String)>,
}

impl MqttClient {
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Subscribes to `events` and starts the thread, which connects in the background.
    /// Register the metrics here, on the thread with the recorder.
    pub fn start(self, events: &Events) -> Result<Mqtt, MqttError> {
        let tally = Arc::new(Tally::default());
        let meters = Meters::new();
        let evicted = meters.evicted.clone();
        let outbox = events.subscribe(Subscriber::dropping_oldest(self.outbox, evicted));
        let outbox = Arc::new(outbox);
        let stop = Shutdown::new();
        let broker = self.broker.clone();
        let worker = Worker {
            client: self,
            outbox: Arc::clone(&outbox),
            stop: stop.clone(),
            tally: Arc::clone(&tally),
            meters,
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

/// A publish waiting for room in the client's queue.
struct Pending {
    topic: String,
    retain: bool,
    payload: Vec<u8>,
    /// An event on the `events` topic, which the tally counts.
    counted: bool,
}

/// The thread: moves events from the outbox to the client, drives the connection.
struct Worker {
    client: MqttClient,
    outbox: Arc<Subscription>,
    stop: Shutdown,
    tally: Arc<Tally>,
    meters: Meters,
}

/// The connection's state on the thread.
struct Session {
    client: Client,
    connection: Connection,
    connected: bool,
    /// Taken from the outbox, not yet accepted by the client.
    pending: VecDeque<Pending>,
    /// Accepted by the client, not yet written, in order: whether each is counted.
    queued: VecDeque<bool>,
    /// QoS 1: written, not yet acknowledged, by packet id.
    unacked: HashMap<u16, bool>,
    /// The last label's JSON, republished (retained) on each connection.
    label: Option<String>,
    retry_in: Duration,
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
            label: None,
            retry_in: RETRY_FIRST,
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

    /// Moves events from the outbox into the client until it is full or the outbox empty.
    fn hand_over(&mut self, session: &mut Session) {
        loop {
            if session.pending.is_empty() {
                match self.outbox.try_recv() {
                    Ok(event) => self.pend(session, &event),
                    Err(NoEvent::Empty | NoEvent::Closed) => return,
                }
            }
            while let Some(publish) = session.pending.front() {
                let qos = self.client.qos;
                let sent = session.client.try_publish(
                    publish.topic.as_str(),
                    qos,
                    publish.retain,
                    publish.payload.clone(),
                );
                match sent {
                    Ok(()) => {
                        session.queued.push_back(publish.counted);
                        session.pending.pop_front();
                    }
                    // Full (the topics are checked, so not invalid): the eventloop takes
                    // them as it writes.
                    Err(_) => return,
                }
            }
        }
    }

    /// Queues the publishes of one event: on `events`, and a label also on `label`.
    fn pend(&self, session: &mut Session, event: &Event) {
        let json = event.to_json();
        let topics = &self.client.topics;
        if matches!(event, Event::Label(_)) {
            session.label = Some(json.clone());
            session.pending.push_back(Pending {
                topic: topics.label.clone(),
                retain: true,
                payload: json.clone().into_bytes(),
                counted: false,
            });
        }
        session.pending.push_back(Pending {
            topic: topics.events.clone(),
            retain: false,
            payload: json.into_bytes(),
            counted: true,
        });
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

    /// Connected: availability, discovery and the current label go first, retained.
    fn on_connected(&self, session: &mut Session) {
        session.connected = true;
        session.retry_in = RETRY_FIRST;
        self.tally.connections.fetch_add(1, Ordering::AcqRel);
        self.meters.connections.increment(1);
        self.meters.connected.set(1.0);
        info!(broker = %self.client.broker, "mqtt: connected");
        let retained = |topic: &str, payload: &str| Pending {
            topic: topic.to_owned(),
            retain: true,
            payload: payload.as_bytes().to_vec(),
            counted: false,
        };
        let topics = &self.client.topics;
        let mut first = vec![retained(&topics.availability, ONLINE)];
        if let Some((topic, config)) = &self.client.discovery {
            first.push(retained(topic, config));
        }
        if let Some(label) = &session.label {
            first.push(retained(&topics.label, label));
        }
        for publish in first.into_iter().rev() {
            session.pending.push_front(publish);
        }
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
        // A retained copy may be among them; it goes again first on reconnecting.
        session.pending.retain(|publish| publish.counted);
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
            let offline = Pending {
                topic: self.client.topics.availability.clone(),
                retain: true,
                payload: OFFLINE.as_bytes().to_vec(),
                counted: false,
            };
            let mut offline = Some(offline);
            let mut disconnecting = false;
            while Instant::now() < deadline && session.connected {
                // Whatever is still pending did not fit in the client; else the outbox is empty.
                self.hand_over(&mut session);
                if session.pending.is_empty() {
                    if let Some(offline) = offline.take() {
                        session.pending.push_back(offline);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<MqttConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn broker_addresses_parse_with_default_ports() {
        let broker = |url| Broker::parse(url).map(|b| (b.host, b.port, b.tls));
        let host = |h: &str, p, t| Some((h.to_owned(), p, t));
        assert_eq!(broker("mqtt://10.0.0.5"), host("10.0.0.5", 1883, false));
        assert_eq!(
            broker("mqtt://broker.lan:1884/"),
            host("broker.lan", 1884, false)
        );
        assert_eq!(broker("mqtts://broker.lan"), host("broker.lan", 8883, true));
        assert_eq!(broker("mqtt://[::1]:1999"), host("::1", 1999, false));
        assert_eq!(broker("mqtts://[fe80::1]"), host("fe80::1", 8883, true));
        for bad in [
            "",
            "broker.lan:1883",
            "http://broker.lan",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://host:0",
            "mqtt://host:65536",
            "mqtt://host:port",
            "mqtt://user@host",
            "mqtt://host/topic",
            "mqtt://[::1",
            "mqtt://[::1]x",
            "mqtt://a b",
        ] {
            assert_eq!(Broker::parse(bad), None, "{bad:?}");
        }
        let v6 = Broker::parse("mqtt://[::1]:1999").unwrap();
        assert_eq!(v6.to_string(), "mqtt://[::1]:1999");
    }

    #[test]
    fn a_table_needs_the_broker_and_takes_the_defaults_for_the_rest() {
        let parsed = config("broker = \"mqtt://127.0.0.1\"").unwrap();
        assert_eq!(parsed, MqttConfig::new("mqtt://127.0.0.1"));
        let missing = config("qos = 1").unwrap_err();
        assert!(missing.contains("missing field `broker`"), "{missing}");
        let typo = config("broker = \"mqtt://h\"\npassword = \"x\"").unwrap_err();
        assert!(typo.contains("unknown field `password`"), "{typo}");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let check = |edit: fn(&mut MqttConfig), camera: &str| {
            let mut config = MqttConfig::new("mqtt://127.0.0.1");
            edit(&mut config);
            config.check(camera).map(|_| ()).map_err(|e| e.to_string())
        };
        assert_eq!(check(|_| {}, "porch"), Ok(()));
        for (edit, camera, error) in [
            (
                (|c: &mut MqttConfig| c.broker = "tcp://h".into()) as fn(&mut MqttConfig),
                "porch",
                "output.mqtt.broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got \"tcp://h\"",
            ),
            (
                |c| c.keep_alive_seconds = 0,
                "porch",
                "output.mqtt.keep_alive_seconds must be 1 to 65535, got 0",
            ),
            (|c| c.qos = 2, "porch", "output.mqtt.qos must be 0 or 1, got 2"),
            (
                |c| c.outbox = 0,
                "porch",
                "output.mqtt.outbox must be 1 to 100000, got 0",
            ),
            (
                |c| c.topic_prefix = "home/#".into(),
                "porch",
                "output.mqtt.topic_prefix must be a topic without +, # or a leading $, not empty, got \"home/#\"",
            ),
            (
                |_| {},
                "front/door",
                "telemetry.camera must be one topic level (no /, + or #) for MQTT, not empty, got \"front/door\"",
            ),
            (
                |c| c.password_env = Some("PW".into()),
                "porch",
                "output.mqtt.username must be set when password_env is, got nothing",
            ),
        ] {
            assert_eq!(check(edit, camera), Err(error.to_owned()));
        }
    }

    #[test]
    fn an_unset_password_variable_and_an_unreadable_ca_file_fail_the_build() {
        let mut config = MqttConfig::new("mqtts://127.0.0.1");
        config.username = Some("scened".into());
        config.password_env = Some("SCENED_TEST_UNSET_PASSWORD_VARIABLE".into());
        let err = config.build("porch").err().expect("refused").to_string();
        assert_eq!(
            err,
            "output.mqtt.password_env: the environment variable \
             SCENED_TEST_UNSET_PASSWORD_VARIABLE is not set"
        );
        config.password_env = None;
        let dir = tempfile::tempdir().unwrap();
        for (name, text, reason) in [
            ("missing.pem", None, "No such file"),
            (
                "empty.pem",
                Some("not a certificate\n"),
                "no certificate in it",
            ),
        ] {
            let path = dir.path().join(name);
            if let Some(text) = text {
                std::fs::write(&path, text).unwrap();
            }
            config.ca_file = Some(path.clone());
            let err = config.build("porch").err().expect("refused").to_string();
            let start = format!("output.mqtt.ca_file: cannot use {}: ", path.display());
            assert!(err.starts_with(&start) && err.contains(reason), "{err}");
        }
    }

    #[test]
    fn topics_and_discovery_name_the_camera() {
        let topics = Topics::new("home/scened", "porch");
        assert_eq!(topics.label, "home/scened/porch/label");
        assert_eq!(topics.events, "home/scened/porch/events");
        assert_eq!(topics.availability, "home/scened/porch/availability");
        let (topic, config) = discovery("homeassistant", "front door", &topics);
        assert_eq!(topic, "homeassistant/sensor/scened_front_door/label/config");
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["state_topic"], "home/scened/porch/label");
        assert_eq!(config["availability_topic"], topics.availability);
        assert_eq!(config["unique_id"], "scened_front_door_label");
        assert_eq!(config["value_template"], "{{ value_json.label }}");
    }
}
