//! Before publishing as a camera, a look at who already does: on a connection of its own,
//! without the last will (which would mark the other instance `offline` if this process died
//! mid-look), scened reads what the camera's `availability` and `instance` topics retain. A
//! camera `online` under another instance is refused; the other is never touched.

use std::time::{Duration, Instant};

use rumqttc::{
    Client, Event as MqttEvent, Incoming, MqttOptions, QoS, RecvTimeoutError, SubscribeFilter,
};
use tracing::{debug, warn};

use super::topics::{taken_by, Topics};
use super::{Broker, MqttError, CONNECT_TIMEOUT_SECONDS};

/// The whole look, connecting included: within the 15 s a second daemon has to say no.
const LOOK_LIMIT: Duration = Duration::from_secs(CONNECT_TIMEOUT_SECONDS + 3);

/// Refuses to go on when `camera`'s topics say another instance publishes as it, naming the
/// camera and `key`, where its name is given. A broker that cannot be reached cannot say: the
/// run goes on, and its client keeps trying.
pub(super) fn claim(
    options: MqttOptions,
    broker: &Broker,
    topics: &Topics,
    (key, camera): (&str, &str),
    ours: &str,
) -> Result<(), MqttError> {
    let Some((availability, marker)) = look(options, topics) else {
        return Ok(());
    };
    match taken_by(availability.as_deref(), marker.as_deref(), ours) {
        Some(other) => Err(MqttError::CameraTaken {
            key: key.to_owned(),
            camera: camera.to_owned(),
            broker: broker.to_string(),
            other,
        }),
        None => Ok(()),
    }
}

/// What a topic retains, if anything.
type Retained = Option<Vec<u8>>;

/// What `availability` and `instance` retain; `None` when the broker could not be asked.
fn look(mut options: MqttOptions, topics: &Topics) -> Option<(Retained, Retained)> {
    options.set_clean_session(true);
    let (client, mut connection) = Client::new(options, 8);
    let mut network = connection.eventloop.network_options();
    network.set_connection_timeout(CONNECT_TIMEOUT_SECONDS);
    connection.eventloop.set_network_options(network);
    // Retained messages come after the subscription; a message of our own on a third topic,
    // published once it is acknowledged, comes after them (the broker keeps one order per
    // client): then everything retained is in.
    let probe = format!("{}/probe", topics.instance);
    let filters = [&topics.availability, &topics.instance, &probe]
        .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtMostOnce));
    client.subscribe_many(filters).ok()?;
    let (mut availability, mut marker) = (None, None);
    let deadline = Instant::now() + LOOK_LIMIT;
    let done = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match connection.recv_timeout(left) {
            Ok(Ok(MqttEvent::Incoming(Incoming::SubAck(_)))) => {
                let _ = client.try_publish(probe.as_str(), QoS::AtMostOnce, false, "");
            }
            Ok(Ok(MqttEvent::Incoming(Incoming::Publish(publish)))) => {
                let payload = Some(publish.payload.to_vec());
                match publish.topic.as_str() {
                    topic if topic == topics.availability => availability = payload,
                    topic if topic == topics.instance => marker = payload,
                    _ => break true,
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                debug!(%error, "mqtt: cannot look at who publishes as this camera");
                return None;
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break false,
        }
    };
    if !done {
        warn!("mqtt: the broker did not answer in time; going on without knowing who else publishes as this camera");
    }
    let _ = client.try_disconnect();
    // Lets the disconnect go out; the connection closes with `connection`.
    let _ = connection.recv_timeout(Duration::from_millis(100));
    Some((availability, marker))
}
