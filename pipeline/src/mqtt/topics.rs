//! What scened publishes, where: the topics of a camera and the payloads that go on them, as
//! pure functions of the config and the events, so they are tested without a broker.
//!
//! | topic | what | retained |
//! |---|---|---|
//! | `label` | the label of now: the `label` event's JSON object, published when the label changes (caught up after an outage: once, the label of now) | yes |
//! | `events` | every event, as on stdout, in order; after an outage the ones held, with their own `ts` | no |
//! | `availability` | `online` / `offline`, and `offline` as the last will | yes |
//! | `instance` | who publishes as this camera: `{"instance","host","pid","since"}`; cleared at a clean stop | yes |
//! | `diagnostics` | `{"fps","latency_p50_ms","score"}`, every few seconds | no |
//! | `image` | the picture, JPEG, with `image_every_seconds` | yes |

use serde::{Deserialize, Serialize};

use crate::events::{timestamp, Event};
use crate::telemetry::Status;

pub(super) const ONLINE: &str = "online";
pub(super) const OFFLINE: &str = "offline";

/// `text` with what Home Assistant ids and client ids do not take replaced by `_`.
pub(super) fn id_safe(text: &str) -> String {
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

/// The topics of one camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub label: String,
    pub events: String,
    pub availability: String,
    pub instance: String,
    pub diagnostics: String,
    pub image: String,
}

impl Topics {
    pub fn new(prefix: &str, camera: &str) -> Self {
        let topic = |name| format!("{prefix}/{camera}/{name}");
        Self {
            label: topic("label"),
            events: topic("events"),
            availability: topic("availability"),
            instance: topic("instance"),
            diagnostics: topic("diagnostics"),
            image: topic("image"),
        }
    }

    /// An event on `events`, counted.
    pub(super) fn event(&self, json: &str) -> Publish {
        Publish {
            topic: self.events.clone(),
            retain: false,
            payload: json.as_bytes().to_vec(),
            counted: true,
        }
    }

    /// What goes first on each connection, retained, since a restarted broker may have lost
    /// its retained messages: who publishes, availability, the discovery configs.
    pub(super) fn on_connect(&self, marker: &str, discovery: &[(String, String)]) -> Vec<Publish> {
        let mut first = vec![
            Publish::retained(&self.instance, marker),
            Publish::retained(&self.availability, ONLINE),
        ];
        first.extend(
            discovery
                .iter()
                .map(|(topic, config)| Publish::retained(topic, config)),
        );
        first
    }

    /// The clean stop's last words: `offline`, then the instance marker cleared (an empty
    /// retained message deletes it), so the next daemon finds the camera free.
    pub(super) fn at_stop(&self) -> [Publish; 2] {
        [
            Publish::retained(&self.availability, OFFLINE),
            Publish::retained(&self.instance, ""),
        ]
    }

    pub(super) fn picture(&self, jpeg: &[u8]) -> Publish {
        Publish::retained(&self.image, jpeg)
    }

    /// The figures Home Assistant's diagnostic sensors show.
    pub(super) fn diagnostics(&self, status: &Status) -> Publish {
        let round = |x: f64, scale: f64| (x * scale).round() / scale;
        let json = serde_json::json!({
            "fps": round(status.fps, 10.0),
            "latency_p50_ms": status.latency_p50_ms.map(|ms| round(ms, 10.0)),
            "score": status.score.map(|s| round(f64::from(s), 1e4)),
        });
        Publish {
            topic: self.diagnostics.clone(),
            retain: false,
            payload: json.to_string().into_bytes(),
            counted: false,
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Publish {
    pub(super) topic: String,
    pub(super) retain: bool,
    pub(super) payload: Vec<u8>,
    /// An event on the `events` topic, which the tally counts.
    pub(super) counted: bool,
}

impl Publish {
    /// A retained message that is not an event.
    pub(super) fn retained(topic: &str, payload: impl AsRef<[u8]>) -> Self {
        Self {
            topic: topic.to_owned(),
            retain: true,
            payload: payload.as_ref().to_vec(),
            counted: false,
        }
    }
}

/// The retained `label` topic on one connection: it gets the label of now, and only when the
/// label differs from what it got last. Events taken from the outbox are history being caught
/// up with; only once the outbox is empty is the newest label "now" ([`State::due`]). So after
/// an outage the topic gets one message, not the labels of the outage in a burst, and with
/// `--every-frame` it changes only when the label does.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The newest label event taken: its label and its JSON.
    now: Option<(String, String)>,
    /// The label the topic got last on this connection.
    sent: Option<String>,
}

impl State {
    /// An event taken from the outbox.
    pub(super) fn saw(&mut self, event: &Event, json: &str) {
        if let Event::Label(label) = event {
            self.now = Some((label.label.clone(), json.to_owned()));
        }
    }

    /// A new connection: the topic gets the label of now again, once caught up (a restarted
    /// broker may have lost it).
    pub(super) fn reconnected(&mut self) {
        self.sent = None;
    }

    /// Called with the outbox empty: the `label` topic's publish, if its label is not the
    /// label of now.
    pub(super) fn due(&mut self, topics: &Topics) -> Option<Publish> {
        let (label, json) = self.now.as_ref()?;
        if self.sent.as_ref() == Some(label) {
            return None;
        }
        self.sent = Some(label.clone());
        Some(Publish::retained(&topics.label, json))
    }
}

/// The retained marker of the instance publishing as a camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Marker {
    /// Host, process and start time: unique to one run.
    pub(super) instance: String,
    pub(super) host: String,
    pub(super) pid: u32,
    /// When it started publishing, RFC 3339.
    pub(super) since: String,
}

impl Marker {
    /// This process's.
    pub(super) fn ours(host: &str) -> Self {
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let pid = std::process::id();
        Self {
            instance: format!("{host}:{pid}:{ms}"),
            host: host.to_owned(),
            pid,
            since: timestamp(now),
        }
    }

    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and a number serialize")
    }
}

/// Who else publishes as the camera, from what its topics retain: `Some` when its
/// availability says `online` and the marker is not `ours`. The description names them for
/// the error. `online` without a marker is another instance too (one that predates markers).
pub(super) fn taken_by(
    availability: Option<&[u8]>,
    marker: Option<&[u8]>,
    ours: &str,
) -> Option<String> {
    if availability != Some(ONLINE.as_bytes()) {
        return None;
    }
    match marker.map(serde_json::from_slice::<Marker>) {
        Some(Ok(other)) if other.instance == ours => None,
        Some(Ok(other)) => Some(format!(
            "host {}, pid {}, since {}",
            other.host, other.pid, other.since
        )),
        _ => Some("an instance that left no marker".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Label;

    fn label(name: &str, frame: u64) -> Event {
        Event::Label(Label {
            frame,
            ts: "2026-01-01T12:00:00.000Z".into(),
            label: name.into(),
            score: 0.9,
            latency_ms: 12.5,
            camera: None,
        })
    }

    #[test]
    fn topics_name_the_camera() {
        let topics = Topics::new("home/scened", "porch");
        assert_eq!(topics.label, "home/scened/porch/label");
        assert_eq!(topics.events, "home/scened/porch/events");
        assert_eq!(topics.availability, "home/scened/porch/availability");
        assert_eq!(topics.instance, "home/scened/porch/instance");
        assert_eq!(topics.diagnostics, "home/scened/porch/diagnostics");
        assert_eq!(topics.image, "home/scened/porch/image");
        assert_eq!(id_safe("front door/1"), "front_door_1");
    }

    #[test]
    fn every_event_goes_counted_on_events() {
        let topics = Topics::new("scened", "porch");
        let event = Event::started("m.tflite", "int8", "synthetic".into(), "porch", (1, 1));
        let publish = topics.event(&event.to_json());
        assert_eq!(publish.topic, "scened/porch/events");
        assert!(publish.counted && !publish.retain);
        assert_eq!(publish.payload, event.to_json().into_bytes());
    }

    #[test]
    fn the_state_topic_gets_the_label_of_now_once_per_change() {
        let topics = Topics::new("scened", "porch");
        let mut state = State::default();
        assert_eq!(state.due(&topics), None);
        // Caught up after each event: a change publishes, a repeat (every frame) does not.
        let mut published = Vec::new();
        for (name, frame) in [("kitchen", 1), ("kitchen", 2), ("hall", 3), ("hall", 4)] {
            let event = label(name, frame);
            state.saw(&event, &event.to_json());
            published.extend(state.due(&topics));
        }
        let frames: Vec<_> = published
            .iter()
            .map(|p| {
                serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["frame"].clone()
            })
            .collect();
        assert_eq!(frames, [1, 3]);
        assert!(published
            .iter()
            .all(|p| p.retain && p.topic == "scened/porch/label"));
        // An outage: a backlog of labels is taken, then the outbox is empty: one publish, the
        // newest, even though its label is the one published before the outage.
        state.reconnected();
        for (name, frame) in [("porch", 5), ("garden", 6), ("hall", 7)] {
            let event = label(name, frame);
            state.saw(&event, &event.to_json());
        }
        let now = state.due(&topics).expect("the label of now");
        assert!(String::from_utf8(now.payload)
            .unwrap()
            .contains("\"frame\":7"));
        assert_eq!(state.due(&topics), None);
        // Other events do not touch it.
        let other = Event::started("m", "int8", "s".into(), "porch", (1, 1));
        state.saw(&other, &other.to_json());
        assert_eq!(state.due(&topics), None);
    }

    #[test]
    fn a_connection_starts_with_the_marker_availability_and_discovery_and_a_stop_clears_them() {
        let topics = Topics::new("scened", "porch");
        let discovery = [("homeassistant/sensor/x/config".to_owned(), "{}".to_owned())];
        let first = topics.on_connect("{\"instance\":\"h:1:2\"}", &discovery);
        let seen: Vec<_> = first
            .iter()
            .map(|p| (p.topic.as_str(), p.retain, p.counted))
            .collect();
        assert_eq!(
            seen,
            [
                ("scened/porch/instance", true, false),
                ("scened/porch/availability", true, false),
                ("homeassistant/sensor/x/config", true, false),
            ]
        );
        assert_eq!(first[1].payload, b"online");
        let [offline, unmark] = topics.at_stop();
        assert_eq!(
            (offline.topic.as_str(), offline.payload.as_slice()),
            ("scened/porch/availability", &b"offline"[..])
        );
        assert_eq!(
            (unmark.topic.as_str(), unmark.payload.len(), unmark.retain),
            ("scened/porch/instance", 0, true)
        );
    }

    #[test]
    fn a_camera_is_taken_when_online_under_another_instance() {
        let ours = Marker::ours("here");
        let other = Marker {
            instance: "there:42:1".into(),
            host: "there".into(),
            pid: 42,
            since: "2026-01-01T12:00:00.000Z".into(),
        };
        let (ours_json, other_json) = (ours.to_json(), other.to_json());
        let online = Some(&b"online"[..]);
        assert_eq!(
            taken_by(online, Some(other_json.as_bytes()), &ours.instance).as_deref(),
            Some("host there, pid 42, since 2026-01-01T12:00:00.000Z")
        );
        assert_eq!(
            taken_by(online, None, &ours.instance).as_deref(),
            Some("an instance that left no marker")
        );
        assert_eq!(
            taken_by(online, Some(ours_json.as_bytes()), &ours.instance),
            None
        );
        // Offline (a clean stop, or the will of one that died) or never seen: free.
        assert_eq!(
            taken_by(
                Some(b"offline"),
                Some(other_json.as_bytes()),
                &ours.instance
            ),
            None
        );
        assert_eq!(taken_by(None, None, &ours.instance), None);
        assert!(ours
            .instance
            .starts_with(&format!("here:{}:", std::process::id())));
    }

    #[test]
    fn diagnostics_round_and_say_null_for_what_is_not_known_yet() {
        let topics = Topics::new("scened", "porch");
        let status = Status {
            fps: 14.96,
            latency_p50_ms: Some(31.249),
            score: Some(0.876_54),
            ..Status::default()
        };
        let publish = topics.diagnostics(&status);
        assert_eq!(publish.topic, "scened/porch/diagnostics");
        assert_eq!(
            String::from_utf8(publish.payload).unwrap(),
            r#"{"fps":15.0,"latency_p50_ms":31.2,"score":0.8765}"#
        );
        let empty = topics.diagnostics(&Status::default()).payload;
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            r#"{"fps":0.0,"latency_p50_ms":null,"score":null}"#
        );
    }
}
