//! MQTT: the event stream published to a broker, with availability, for home automation.
//!
//! With an `[output.mqtt]` table, scened connects to the broker and publishes under
//! `<topic_prefix>/<camera>/` the topics [`topics`] lists — the label of now (retained), every
//! event, availability with a last will, a marker of the instance publishing — and, with
//! `discovery = true`, Home Assistant discovery configs ([`discovery`]).
//!
//! Rooms: this file is the config and its checks; [`topics`] the topics and payloads, pure;
//! [`discovery`] Home Assistant's configs; [`claim`] the look, at start, at who else
//! publishes as the camera (a second daemon as the same camera refuses to start and never
//! touches the first's availability); [`client`] the thread, which owns rumqttc's blocking
//! client: nothing there waits on the pipeline, nor it on that. Events reach it through a
//! subscription to the event stream, the outbox: bounded, dropping its oldest when the broker
//! is away for long. Every event is either published or counted dropped
//! (`scened_mqtt_events_dropped_total`, by reason). A broker that is down at start or goes away
//! is retried with backoff, each failure counted and logged; on every (re)connection the
//! marker, availability and discovery configs are published again, since a restarted broker
//! may have lost its retained messages, and the label of now once caught up.

mod claim;
mod client;
mod discovery;
mod topics;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use serde::Deserialize;

use crate::error::Invalid;
pub use client::{Live, Mqtt, MqttClient, MqttReport};
pub use topics::Topics;
use topics::{id_safe, Marker, OFFLINE};

pub const DEFAULT_TOPIC_PREFIX: &str = "scened";
pub const DEFAULT_KEEP_ALIVE_SECONDS: u64 = 30;
pub const DEFAULT_QOS: u8 = 0;
/// At 30 labels a second (`--every-frame`), half a minute of the broker away; a few hundred KB.
pub const DEFAULT_OUTBOX: usize = 1000;
pub const DEFAULT_DISCOVERY: bool = false;
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";
/// Off: a picture is a few dozen KB a time, sent only when asked for.
pub const DEFAULT_IMAGE_EVERY_SECONDS: u64 = 0;
const MAX_OUTBOX: usize = 100_000;
const MAX_IMAGE_EVERY_SECONDS: u64 = 86_400;

/// Longest a connection attempt (TCP, TLS, CONNECT/CONNACK) may take.
const CONNECT_TIMEOUT_SECONDS: u64 = 5;

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
    /// Publish the picture (JPEG, retained, on `<topic_prefix>/<camera>/image`; with
    /// `discovery`, a Home Assistant `image` entity) when the label changes, at most once every
    /// this many seconds. 0 (off) to 86400; needs telemetry, whose live view makes the JPEGs.
    #[serde(default = "default_image_every_seconds")]
    pub image_every_seconds: u64,
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
fn default_image_every_seconds() -> u64 {
    DEFAULT_IMAGE_EVERY_SECONDS
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
            image_every_seconds: DEFAULT_IMAGE_EVERY_SECONDS,
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
        let every = self.image_every_seconds;
        let key = "output.mqtt.image_every_seconds";
        Invalid::check(
            every <= MAX_IMAGE_EVERY_SECONDS,
            key,
            "0 (off) to 86400",
            every,
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
        let password = match (&self.username, &self.password_env) {
            (Some(_), Some(var)) => {
                std::env::var(var).map_err(|_| MqttError::PasswordUnset { var: var.clone() })?
            }
            _ => String::new(),
        };
        let tls = broker.tls.then(|| self.tls()).transpose()?;
        let options = |role: &str| {
            let pid = std::process::id();
            let client_id = format!("scened-{}-{pid}{role}", id_safe(camera));
            let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
            options.set_keep_alive(Duration::from_secs(self.keep_alive_seconds));
            if let Some(username) = &self.username {
                options.set_credentials(username, password.clone());
            }
            if let Some(tls) = &tls {
                options.set_transport(Transport::tls_with_config(tls.clone()));
            }
            options
        };
        // The look at who else publishes as the camera goes without the will: see `claim`.
        let probe = options("-look");
        let mut options = options("");
        options.set_last_will(LastWill::new(&topics.availability, OFFLINE, qos, true));
        Ok(MqttClient {
            broker,
            options,
            probe,
            topics,
            camera: camera.to_owned(),
            qos,
            outbox: self.outbox,
            discovery_prefix: self.discovery.then(|| self.discovery_prefix.clone()),
            image_every: (self.image_every_seconds > 0)
                .then(|| Duration::from_secs(self.image_every_seconds)),
            marker: Marker::ours(&crate::telemetry::host_name().unwrap_or_default()),
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
    #[error(
        "{key}: {camera:?} is already online at {broker}, published by another scened \
         ({other}); stop that one, or give this one another name"
    )]
    CameraTaken {
        /// Where the name is given: `telemetry.camera`, or `cameras.<name>`.
        key: String,
        camera: String,
        broker: String,
        other: String,
    },
    #[error(
        "output.mqtt.image_every_seconds: the picture comes from the live view; set \
         telemetry.enabled = true, or image_every_seconds = 0"
    )]
    ImageWithoutTelemetry,
    #[error("output.mqtt: cannot start its thread")]
    Thread(#[source] io::Error),
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
                |c| c.image_every_seconds = 86_401,
                "porch",
                "output.mqtt.image_every_seconds must be 0 (off) to 86400, got 86401",
            ),
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
}
