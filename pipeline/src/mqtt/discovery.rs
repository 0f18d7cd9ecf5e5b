//! Home Assistant's MQTT discovery: the configs, retained under its discovery prefix, that make
//! a camera a device with its entities — the label (a sensor), three diagnostic sensors (fps,
//! capture→label p50, score) and, with `image_every_seconds`, the picture (an `image`).
//!
//! Home Assistant drops keys its schemas do not know without a word, so the test below checks
//! every key sent against the schemas as its source has them (see there).

use serde_json::{json, Value};

use super::topics::{id_safe, Topics, OFFLINE, ONLINE};

/// The longest state Home Assistant keeps (`MAX_LENGTH_STATE_STATE`); a longer one is refused
/// and the sensor shows `unknown`. The whole label stays in the attributes.
pub(super) const MAX_STATE_CHARS: usize = 255;

/// What the daemon serves besides MQTT, for the configs.
#[derive(Debug, Clone, Default)]
pub(super) struct Served {
    /// The live view's address: the device's `configuration_url`.
    pub(super) url: Option<String>,
    /// The `diagnostics` topic is published: the diagnostic sensors exist.
    pub(super) diagnostics: bool,
    /// The `image` topic is published: the picture entity exists.
    pub(super) picture: bool,
}

/// Every discovery topic and its config, for `camera` under Home Assistant's `prefix`.
pub(super) fn configs(
    prefix: &str,
    camera: &str,
    topics: &Topics,
    served: &Served,
) -> Vec<(String, String)> {
    let id = format!("scened_{}", id_safe(camera));
    let mut device = json!({
        "identifiers": [id],
        "name": format!("scened {camera}"),
        "manufacturer": "scened",
        "model": "scene labeller",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(url) = &served.url {
        device["configuration_url"] = json!(url);
    }
    let common = |object: &str, name: &str| {
        json!({
            "name": name,
            "unique_id": format!("{id}_{object}"),
            "availability_topic": topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
            "origin": {"name": "scened", "sw_version": env!("CARGO_PKG_VERSION")},
        })
    };
    let entity = |component: &str, object: &str, name: &str, keys: Value| {
        let mut config = common(object, name);
        let (Value::Object(config_map), Value::Object(keys)) = (&mut config, keys) else {
            unreachable!("both are objects");
        };
        config_map.extend(keys);
        (
            format!("{prefix}/{component}/{id}/{object}/config"),
            config.to_string(),
        )
    };
    let mut configs = vec![entity(
        "sensor",
        "label",
        "Scene",
        json!({
            "state_topic": topics.label,
            // Cut to what Home Assistant keeps; the attributes keep the whole label.
            "value_template": format!("{{{{ value_json.label[:{MAX_STATE_CHARS}] }}}}"),
            "json_attributes_topic": topics.label,
            "icon": "mdi:image-search",
        }),
    )];
    if served.diagnostics {
        let diagnostic = |object: &str, name: &str, field: &str, more: Value| {
            let mut keys = json!({
                "state_topic": topics.diagnostics,
                "value_template": format!("{{{{ value_json.{field} }}}}"),
                "state_class": "measurement",
                "entity_category": "diagnostic",
            });
            if let (Value::Object(keys), Value::Object(more)) = (&mut keys, more) {
                keys.extend(more);
            }
            entity("sensor", object, name, keys)
        };
        configs.extend([
            diagnostic(
                "fps",
                "Frames per second",
                "fps",
                json!({"unit_of_measurement": "fps", "suggested_display_precision": 1, "icon": "mdi:speedometer"}),
            ),
            diagnostic(
                "latency_p50",
                "Capture to label, median",
                "latency_p50_ms",
                json!({"unit_of_measurement": "ms", "device_class": "duration", "suggested_display_precision": 1}),
            ),
            diagnostic(
                "score",
                "Score",
                "score",
                json!({"suggested_display_precision": 3, "icon": "mdi:percent"}),
            ),
        ]);
    }
    if served.picture {
        configs.push(entity(
            "image",
            "picture",
            "Picture",
            json!({"image_topic": topics.image, "content_type": "image/jpeg"}),
        ));
    }
    configs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    // The keys Home Assistant's MQTT discovery accepts, written down from its source
    // (home-assistant/core, read 2026-12; the schemas as of Home Assistant 2024.8 and later,
    // whose device schema has `model_id`):
    // - homeassistant/components/mqtt/schemas.py (commit c6ca7f5f416326437e8e652a5623aa5eff7b3d00):
    //   MQTT_AVAILABILITY_SCHEMA, MQTT_ENTITY_DEVICE_INFO_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA,
    //   MQTT_ENTITY_COMMON_SCHEMA;
    // - homeassistant/components/mqtt/config.py (commit a5c8209270205b905bb35a9082c39708b0d5f52f):
    //   MQTT_BASE_SCHEMA (qos, encoding) and MQTT_RO_SCHEMA (state_topic required,
    //   value_template);
    // - homeassistant/components/mqtt/sensor.py: _PLATFORM_SCHEMA_BASE (MQTT_RO_SCHEMA plus
    //   device_class, expire_after, force_update, last_reset_value_template, name, options,
    //   suggested_display_precision, state_class, unit_of_measurement);
    // - homeassistant/components/mqtt/image.py (commit 7fd78000bf36b68eecd267abc1488f17f7e277e0):
    //   PLATFORM_SCHEMA_BASE (MQTT_BASE_SCHEMA plus content_type, name, url_topic | image_topic,
    //   image_encoding, url_template), and one of image_topic / url_topic required.
    // Both discovery schemas are built with `extra=vol.REMOVE_EXTRA`: an unknown key is dropped
    // silently, which is why the keys are checked here rather than trusted.
    const COMMON: &[&str] = &[
        // MQTT_AVAILABILITY_SCHEMA
        "availability_topic",
        "availability_template",
        "payload_available",
        "payload_not_available",
        "availability_mode",
        "availability",
        // MQTT_ENTITY_COMMON_SCHEMA
        "device",
        "origin",
        "enabled_by_default",
        "entity_category",
        "icon",
        "json_attributes_topic",
        "json_attributes_template",
        "object_id",
        "unique_id",
        // MQTT_BASE_SCHEMA
        "qos",
        "encoding",
    ];
    const SENSOR: &[&str] = &[
        "state_topic",
        "value_template",
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "name",
        "options",
        "suggested_display_precision",
        "state_class",
        "unit_of_measurement",
    ];
    const IMAGE: &[&str] = &[
        "content_type",
        "name",
        "url_topic",
        "image_topic",
        "image_encoding",
        "url_template",
    ];
    const DEVICE: &[&str] = &[
        "identifiers",
        "connections",
        "manufacturer",
        "model",
        "model_id",
        "name",
        "hw_version",
        "serial_number",
        "sw_version",
        "via_device",
        "suggested_area",
        "configuration_url",
    ];
    const ORIGIN: &[&str] = &["name", "sw_version", "support_url"];
    /// homeassistant/helpers/entity.py's EntityCategory.
    const ENTITY_CATEGORIES: &[&str] = &["config", "diagnostic"];
    /// SensorStateClass.
    const STATE_CLASSES: &[&str] = &["measurement", "total", "total_increasing"];

    fn keys(value: &Value) -> BTreeSet<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn unknown<'a>(value: &'a Value, known: &[&[&str]]) -> BTreeSet<&'a str> {
        let known: BTreeSet<&str> = known.iter().flat_map(|k| k.iter().copied()).collect();
        keys(value)
            .into_iter()
            .filter(|k| !known.contains(k))
            .collect()
    }

    /// `cv.configuration_url`: http or https with a host (or `homeassistant://`).
    fn is_configuration_url(url: &str) -> bool {
        let Some((scheme, rest)) = url.split_once("://") else {
            return false;
        };
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
    }

    fn all(served: &Served) -> Vec<(String, Value)> {
        let topics = Topics::new("scened", "porch");
        configs("homeassistant", "porch", &topics, served)
            .into_iter()
            .map(|(topic, config)| (topic, serde_json::from_str(&config).unwrap()))
            .collect()
    }

    #[test]
    fn every_key_sent_is_one_home_assistant_accepts() {
        let served = Served {
            url: Some("http://camera-box:9898/".into()),
            diagnostics: true,
            picture: true,
        };
        let configs = all(&served);
        assert_eq!(configs.len(), 5);
        for (topic, config) in &configs {
            let component = topic.split('/').nth(1).unwrap();
            let platform = match component {
                "sensor" => {
                    assert!(
                        config["state_topic"].is_string(),
                        "{topic}: state_topic is required"
                    );
                    SENSOR
                }
                "image" => {
                    assert!(
                        config["image_topic"].is_string(),
                        "{topic}: image_topic or url_topic"
                    );
                    IMAGE
                }
                other => panic!("{other}: not a component scened publishes"),
            };
            assert_eq!(
                unknown(config, &[COMMON, platform]),
                BTreeSet::new(),
                "{topic}"
            );
            let device = &config["device"];
            assert_eq!(unknown(device, &[DEVICE]), BTreeSet::new(), "{topic}");
            assert_eq!(device["identifiers"], json!(["scened_porch"]), "{topic}");
            for key in ["manufacturer", "model", "sw_version"] {
                assert!(device[key].is_string(), "{topic}: device.{key}");
            }
            assert!(is_configuration_url(
                device["configuration_url"].as_str().unwrap()
            ));
            assert_eq!(
                unknown(&config["origin"], &[ORIGIN]),
                BTreeSet::new(),
                "{topic}"
            );
            assert!(
                config["origin"]["name"].is_string(),
                "{topic}: origin.name is required"
            );
            if let Some(category) = config.get("entity_category") {
                assert!(
                    ENTITY_CATEGORIES.contains(&category.as_str().unwrap()),
                    "{topic}"
                );
            }
            if let Some(class) = config.get("state_class") {
                assert!(STATE_CLASSES.contains(&class.as_str().unwrap()), "{topic}");
            }
            if let Some(precision) = config.get("suggested_display_precision") {
                assert!(precision.is_u64(), "{topic}: a positive int");
            }
            assert!(topic.ends_with("/config") && topic.starts_with("homeassistant/"));
            let id = config["unique_id"].as_str().unwrap();
            assert!(topic.contains(&format!("/scened_porch/{}", &id["scened_porch_".len()..])));
        }
    }

    #[test]
    fn the_label_sensor_cuts_its_state_and_the_diagnostics_are_diagnostic() {
        let configs = all(&Served {
            diagnostics: true,
            ..Served::default()
        });
        let (topic, label) = &configs[0];
        assert_eq!(topic, "homeassistant/sensor/scened_porch/label/config");
        assert_eq!(label["state_topic"], "scened/porch/label");
        assert_eq!(label["json_attributes_topic"], "scened/porch/label");
        assert_eq!(label["value_template"], "{{ value_json.label[:255] }}");
        assert_eq!(label.get("entity_category"), None);
        // Not served: no configuration_url, and no picture entity.
        assert_eq!(label["device"].get("configuration_url"), None);
        let diagnostic: Vec<_> = configs[1..]
            .iter()
            .map(|(_, c)| {
                (
                    c["unique_id"].as_str().unwrap(),
                    c["entity_category"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            diagnostic,
            [
                ("scened_porch_fps", "diagnostic"),
                ("scened_porch_latency_p50", "diagnostic"),
                ("scened_porch_score", "diagnostic"),
            ]
        );
        assert_eq!(
            configs[2].1["value_template"],
            "{{ value_json.latency_p50_ms }}"
        );
        assert_eq!(all(&Served::default()).len(), 1);
    }
}
