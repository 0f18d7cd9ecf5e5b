//! The config file: one TOML table per part of scened — where frames come from, each stage,
//! the queues, when to stop, the output, telemetry and `scened bench`'s thresholds. Every key is
//! checked (`deny_unknown_fields`) and every default is written out in `config/scened.toml`.
//!
//! [`Config::load`] reads a file; a parse error is one line naming the file, the key and the
//! line. Paths in a file are relative to the file. [`Config::check`] is the one place every
//! setting is checked before anything is built; a bad value is an [`Invalid`]:
//! `<table>.<key> must be <expected>, got <value>`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Invalid, TomlError};
use crate::infer::stage::InferConfig;
use crate::labels::LabelsConfig;
use crate::mqtt::MqttConfig;
use crate::queue::{EdgeConfig, WhenFull};
use crate::resize::ResizeConfig;
use crate::smooth::SmoothConfig;
use crate::source::SourceConfig;
use crate::telemetry::TelemetryConfig;
use crate::verdict::BenchConfig;

/// A whole config file; every table has defaults, so an empty file plays the demo clip.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where frames come from.
    pub source: SourceConfig,
    /// How frames are fitted to the model's input.
    pub resize: ResizeConfig,
    /// The model and how it runs.
    pub infer: InferConfig,
    /// How per-frame scores become a steady label.
    pub smooth: SmoothConfig,
    /// What a label is: the model's classes or groups of them, and when it is `unknown`.
    pub labels: LabelsConfig,
    /// The bounded queues between stages.
    pub edges: EdgesConfig,
    /// When to stop, besides the end of the source and a shutdown.
    pub stop: StopConfig,
    /// Which labels reach the output.
    pub output: OutputConfig,
    /// Metrics and status over HTTP.
    pub telemetry: TelemetryConfig,
    /// `scened bench`'s thresholds.
    pub bench: BenchConfig,
    /// Several cameras through one model, by name, instead of `[source]`'s one.
    pub cameras: BTreeMap<String, CameraConfig>,
}

/// One of several cameras: its own source, and its own resize, smoothing and labels where
/// given (a region per camera, say); everything else is shared.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Where its frames come from: the keys of `[source]`.
    pub source: SourceConfig,
    /// Overrides `[resize]` for this camera.
    pub resize: Option<ResizeConfig>,
    /// Overrides `[smooth]` for this camera.
    pub smooth: Option<SmoothConfig>,
    /// Overrides `[labels]` for this camera.
    pub labels: Option<LabelsConfig>,
}

/// A camera as the pipeline builds it: its name and the settings that may differ per camera.
#[derive(Debug, Clone)]
pub struct Camera<'a> {
    pub name: Cow<'a, str>,
    /// One of `[cameras]`, rather than `[source]`'s one.
    pub several: bool,
    pub source: &'a SourceConfig,
    pub resize: &'a ResizeConfig,
    pub smooth: &'a SmoothConfig,
    pub labels: &'a LabelsConfig,
}

/// Where camera `name` is named: its table when it is one of several (`cameras.<name>`), else
/// `telemetry.camera`.
pub fn name_key(name: &str, several: bool) -> String {
    if several {
        format!("cameras.{name}")
    } else {
        "telemetry.camera".to_owned()
    }
}

impl Camera<'_> {
    /// `error`, naming this camera's table when it has one.
    pub fn locate(&self, error: Invalid) -> Invalid {
        if self.several {
            error.within(&name_key(&self.name, true))
        } else {
            error
        }
    }

    /// Checks this camera's own settings.
    pub fn check(&self) -> Result<(), Invalid> {
        let checks = || {
            self.source.check()?;
            self.resize.check()?;
            self.smooth.check()?;
            self.labels.check()
        };
        checks().map_err(|error| self.locate(error))
    }
}

/// A camera's name: what metrics, topics and URLs say, so short and plain.
fn valid_camera_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The edges, each named after the stage it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgesConfig {
    /// Capture → resize.
    pub resize: EdgeConfig,
    /// Resize → infer.
    pub infer: EdgeConfig,
    /// Infer → smooth.
    pub smooth: EdgeConfig,
    /// Smooth → the sink.
    pub sink: EdgeConfig,
}

/// Live defaults. In front of inference, the slowest stage, a stale frame is worse than a
/// lost one: keep one frame, the newest.
pub const DEFAULT_EDGE_BEFORE_INFER: EdgeConfig = EdgeConfig {
    capacity: 1,
    when_full: WhenFull::DropOldest,
};
/// After inference every score counts and the stages are cheap: block, so a slow reader of
/// the output holds back inference rather than lose labels.
pub const DEFAULT_EDGE_SMOOTH: EdgeConfig = EdgeConfig {
    capacity: 4,
    when_full: WhenFull::Block,
};
pub const DEFAULT_EDGE_SINK: EdgeConfig = EdgeConfig {
    capacity: 16,
    when_full: WhenFull::Block,
};

impl Default for EdgesConfig {
    fn default() -> Self {
        Self {
            resize: DEFAULT_EDGE_BEFORE_INFER,
            infer: DEFAULT_EDGE_BEFORE_INFER,
            smooth: DEFAULT_EDGE_SMOOTH,
            sink: DEFAULT_EDGE_SINK,
        }
    }
}

impl EdgesConfig {
    pub fn check(&self) -> Result<(), Invalid> {
        self.resize.check("resize")?;
        self.infer.check("infer")?;
        self.smooth.check("smooth")?;
        self.sink.check("sink")
    }
}

/// Limits on a run; without any, it lasts until the source ends or a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StopConfig {
    /// Stop after this many frames from the source, at least 1.
    pub after_frames: Option<u64>,
    /// Stop reading frames after this many seconds, more than 0.
    pub after_seconds: Option<f64>,
    /// A stage busy this many seconds on one item is stalled: the run is aborted and fails.
    pub stall_seconds: f64,
}

/// A frame takes milliseconds; seconds on one is a hang, not a slow machine.
pub const DEFAULT_STALL_SECONDS: f64 = 10.0;

impl Default for StopConfig {
    fn default() -> Self {
        Self {
            after_frames: None,
            after_seconds: None,
            stall_seconds: DEFAULT_STALL_SECONDS,
        }
    }
}

/// Which smoothed labels reach the sink, and where the events go besides stdout.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Every frame's label, not only changes.
    pub every_frame: bool,
    /// The event stream to an MQTT broker; off without the table.
    pub mqtt: Option<MqttConfig>,
}

impl StopConfig {
    /// The run time limit and the stall limit.
    pub fn check(&self) -> Result<(Option<Duration>, Duration), Invalid> {
        let frames = self.after_frames;
        Invalid::check(frames != Some(0), "stop.after_frames", "at least 1", 0)?;
        let run_for = self
            .after_seconds
            .map(|seconds| Invalid::positive_seconds("stop.after_seconds", seconds))
            .transpose()?;
        let stall_after = Invalid::positive_seconds("stop.stall_seconds", self.stall_seconds)?;
        Ok((run_for, stall_after))
    }
}

/// A config file that cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Parse { path: PathBuf, error: ParseError },
}

impl Config {
    /// Reads and parses the config file at `path`, with its paths made relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error,
        })?;
        config.rebase(path.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    /// The config in `text`, as written (paths not rebased).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| ParseError {
            key: None,
            error: TomlError::new(&e, text),
        })?;
        let config: Self =
            serde_path_to_error::deserialize(deserializer).map_err(|e| ParseError {
                key: Some(e.path().to_string()),
                error: TomlError::new(e.inner(), text),
            })?;
        // `[source]` has defaults, so only the text tells whether it was written.
        let has_source = || {
            text.parse::<toml::Table>()
                .is_ok_and(|t| t.contains_key("source"))
        };
        if !config.cameras.is_empty() && has_source() {
            return Err(ParseError {
                key: Some("cameras".into()),
                error: TomlError {
                    line: None,
                    message: "[source] and [cameras] cannot both be set: one camera's \
                              [source], or [cameras.<name>.source] for each of several"
                        .into(),
                },
            });
        }
        Ok(config)
    }

    /// The cameras to run: each of `[cameras]`, in name order, or else `[source]`'s one,
    /// named by `[telemetry] camera`.
    pub fn cameras(&self) -> Vec<Camera<'_>> {
        if self.cameras.is_empty() {
            return vec![Camera {
                name: self.telemetry.camera_name(),
                several: false,
                source: &self.source,
                resize: &self.resize,
                smooth: &self.smooth,
                labels: &self.labels,
            }];
        }
        self.cameras
            .iter()
            .map(|(name, camera)| Camera {
                name: Cow::Borrowed(name),
                several: true,
                source: &camera.source,
                resize: camera.resize.as_ref().unwrap_or(&self.resize),
                smooth: camera.smooth.as_ref().unwrap_or(&self.smooth),
                labels: camera.labels.as_ref().unwrap_or(&self.labels),
            })
            .collect()
    }

    /// `count` cameras named `cam0`, `cam1`…, each with `[source]` and the shared settings:
    /// what `scened bench --cameras N` runs.
    pub fn copies_of_source(&self, count: usize) -> BTreeMap<String, CameraConfig> {
        (0..count)
            .map(|i| {
                let camera = CameraConfig {
                    source: self.source.clone(),
                    resize: None,
                    smooth: None,
                    labels: None,
                };
                (format!("cam{i}"), camera)
            })
            .collect()
    }

    /// Every camera's source, for flags that set them all.
    pub fn sources_mut(&mut self) -> Vec<&mut SourceConfig> {
        if self.cameras.is_empty() {
            return vec![&mut self.source];
        }
        self.cameras.values_mut().map(|c| &mut c.source).collect()
    }

    /// Makes the relative paths in the config relative to `dir`.
    pub fn rebase(&mut self, dir: &Path) {
        let mut paths: Vec<&mut PathBuf> = self.infer.model.iter_mut().collect();
        paths.extend(self.infer.labels.as_mut());
        paths.extend(self.labels.groups.as_mut());
        let mut sources = vec![&mut self.source];
        for camera in self.cameras.values_mut() {
            sources.push(&mut camera.source);
            paths.extend(camera.labels.as_mut().and_then(|l| l.groups.as_mut()));
        }
        for source in sources {
            match source {
                SourceConfig::Clip(clip) => paths.extend(clip.path.as_mut()),
                SourceConfig::Images(images) => paths.push(&mut images.dir),
                SourceConfig::Synthetic(_)
                | SourceConfig::Camera(_)
                | SourceConfig::Http(_)
                | SourceConfig::Rtsp(_) => {}
            }
        }
        if let Some(mqtt) = &mut self.output.mqtt {
            paths.extend(mqtt.ca_file.as_mut());
        }
        for path in paths {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// Checks every setting that can be checked without touching a file, a device or the
    /// network, so `scened validate` and a start-up fail on the first bad value before any
    /// work. The pipeline's `build()` steps check their own parts again as they build them.
    pub fn check(&self) -> Result<(), Invalid> {
        for name in self.cameras.keys() {
            let expected = "named with 1 to 32 of a-z, 0-9, _ and -";
            Invalid::check(valid_camera_name(name), "cameras", expected, name)?;
        }
        for camera in self.cameras() {
            camera.check()?;
        }
        self.infer.check()?;
        // Shared settings are checked once, whether or not a camera overrides them.
        self.resize.check()?;
        self.smooth.check()?;
        self.labels.check()?;
        self.edges.check()?;
        self.stop.check()?;
        self.telemetry.check()?;
        if let Some(mqtt) = &self.output.mqtt {
            for camera in self.cameras() {
                mqtt.check(&camera.name)?;
            }
        }
        self.bench.check()?;
        Ok(())
    }
}

/// A config's text that does not parse: `key: line N: what is wrong`.
#[derive(Debug)]
pub struct ParseError {
    /// The key at fault, e.g. `edges.infer.capacity`; `None` for a syntax error.
    pub key: Option<String>,
    pub error: TomlError,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::stage::DEFAULT_MODEL;
    use crate::mqtt::MqttConfig;
    use crate::source::camera::CameraConfig;
    use crate::source::http::HttpConfig;
    use crate::source::images::ImagesConfig;
    use crate::source::rtsp::RtspConfig;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn stop_limits_are_checked_naming_the_key() {
        let check = |after_frames, after_seconds, stall_seconds| {
            StopConfig {
                after_frames,
                after_seconds,
                stall_seconds,
            }
            .check()
            .map_err(|e| e.to_string())
        };
        let stall = DEFAULT_STALL_SECONDS;
        let stall_after = Duration::from_secs(10);
        assert_eq!(check(None, None, stall), Ok((None, stall_after)));
        assert_eq!(
            check(Some(5), Some(1.5), 0.25),
            Ok((
                Some(Duration::from_millis(1500)),
                Duration::from_millis(250)
            ))
        );
        assert_eq!(
            check(Some(0), None, stall),
            Err("stop.after_frames must be at least 1, got 0".into())
        );
        for seconds in [0.0, -1.0, f64::NAN] {
            let err = check(None, Some(seconds), stall).expect_err("refused");
            assert!(
                err.starts_with("stop.after_seconds must be more than 0"),
                "{err}"
            );
            let err = check(None, None, seconds).expect_err("refused");
            assert!(
                err.starts_with("stop.stall_seconds must be more than 0"),
                "{err}"
            );
        }
    }

    #[test]
    fn every_shipped_config_parses_and_passes_its_checks() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(repo().join("config")).unwrap() {
            let path = entry.unwrap().path();
            // config/groups/ holds groups files, which configs name.
            if path.is_dir() {
                continue;
            }
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            config
                .check()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(
            names,
            [
                "benchmark.toml",
                "capacity.toml",
                "live-camera.toml",
                "replay.toml",
                "scened.toml",
                "scenes.toml",
                "soak.toml"
            ]
        );
    }

    /// scened.toml documents the defaults; it must say what the code does.
    #[test]
    fn scened_toml_is_exactly_the_built_in_defaults() {
        let mut from_file = Config::load(&repo().join("config/scened.toml")).unwrap();
        let mut defaults = Config::default();
        // The file names the model relative to itself; the default is relative to the current
        // directory, which the README says is the repository root.
        defaults.infer.model = Some(repo().join(DEFAULT_MODEL));
        for config in [&mut from_file, &mut defaults] {
            config.infer.model = Some(config.infer.model().canonicalize().unwrap());
        }
        assert_eq!(from_file, defaults);
    }

    /// The other kinds of source and smoother are written out commented; each block, read
    /// as a config, must be that kind's defaults.
    #[test]
    fn scened_toml_comments_the_other_kinds_at_their_defaults() {
        let text = std::fs::read_to_string(repo().join("config/scened.toml")).unwrap();
        // A block: a commented `kind = …` and the commented settings right after it.
        let mut blocks: Vec<String> = Vec::new();
        let mut in_block = false;
        for line in text.lines() {
            let Some(setting) = line.strip_prefix("# ").filter(|l| l.contains(" = ")) else {
                in_block = false;
                continue;
            };
            // Trailing comments explain; no value here holds a `#`.
            let setting = setting.split('#').next().unwrap().trim();
            if setting.starts_with("kind = ") {
                blocks.push(String::new());
                in_block = true;
            }
            if in_block {
                blocks.last_mut().unwrap().push_str(&format!("{setting}\n"));
            }
        }
        let source = |text: &str| toml::from_str::<SourceConfig>(text).unwrap();
        let smooth = |text: &str| toml::from_str::<SmoothConfig>(text).unwrap();
        assert_eq!(blocks.len(), 7, "{blocks:#?}");
        assert_eq!(
            source(&blocks[0]),
            SourceConfig::Camera(CameraConfig::default())
        );
        assert_eq!(
            source(&blocks[1]),
            SourceConfig::Images(ImagesConfig {
                dir: "../tests/data/photos/full".into(),
                ..ImagesConfig::default()
            })
        );
        // The network cameras' blocks show an example URL and credentials.
        assert_eq!(
            source(&blocks[2]),
            SourceConfig::Rtsp(RtspConfig {
                url: "rtsp://cam.local:554/stream1".into(),
                username: Some("viewer".into()),
                password_env: Some("CAMERA_PASSWORD".into()),
                ..RtspConfig::default()
            })
        );
        assert_eq!(
            source(&blocks[3]),
            SourceConfig::Http(HttpConfig {
                url: "http://cam.local/video.mjpg".into(),
                username: Some("viewer".into()),
                password_env: Some("CAMERA_PASSWORD".into()),
                ..HttpConfig::default()
            })
        );
        assert_eq!(
            source(&blocks[4]),
            SourceConfig::Synthetic(Default::default())
        );
        let ema: SmoothConfig = toml::from_str("kind = \"ema\"").unwrap();
        let window: SmoothConfig = toml::from_str("kind = \"window\"").unwrap();
        assert_eq!(smooth(&blocks[5]), ema);
        assert_eq!(smooth(&blocks[6]), window);
    }

    /// The `[output.mqtt]` table is written out commented: its settings, read as a table, are
    /// the defaults but for the ones it shows as examples.
    #[test]
    fn scened_toml_comments_the_mqtt_table_at_its_defaults() {
        let text = std::fs::read_to_string(repo().join("config/scened.toml")).unwrap();
        let after = text
            .split("# [output.mqtt]\n")
            .nth(1)
            .expect("the commented table");
        let table: String = after
            .lines()
            .map_while(|line| line.strip_prefix("# ").filter(|l| l.contains(" = ")))
            .map(|setting| format!("{}\n", setting.split('#').next().unwrap().trim()))
            .collect();
        let shown: MqttConfig = toml::from_str(&table).unwrap();
        let examples = MqttConfig {
            username: shown.username.clone(),
            password_env: shown.password_env.clone(),
            ca_file: shown.ca_file.clone(),
            ..MqttConfig::new(&shown.broker)
        };
        assert_eq!(shown, examples);
        assert!(shown.username.is_some() && shown.password_env.is_some());
        assert!(shown.ca_file.is_some());
    }

    /// The commented `[cameras]` example, read as a config, is two cameras with the shared
    /// settings but for the one it overrides.
    #[test]
    fn scened_toml_comments_a_cameras_example_that_parses() {
        let text = std::fs::read_to_string(repo().join("config/scened.toml")).unwrap();
        let example: String = text
            .split("\n# [cameras.porch]\n")
            .nth(1)
            .expect("the commented example")
            .lines()
            .map_while(|line| line.strip_prefix("# "))
            .map(|line| format!("{}\n", line.split("   #").next().unwrap()))
            .collect();
        let config = Config::parse(&format!("[cameras.porch]\n{example}")).unwrap();
        config.check().unwrap();
        let cameras = config.cameras();
        let names: Vec<&str> = cameras.iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["garden", "porch"]);
        assert_ne!(cameras[0].resize, &config.resize);
        assert_eq!(cameras[1].resize, &config.resize);
        assert_eq!(cameras[0].smooth, &config.smooth);
    }

    #[test]
    fn paths_in_a_file_are_relative_to_the_file() {
        let text = r#"
            [source]
            kind = "images"
            dir = "photos"
            [infer]
            model = "m.tflite"
            labels = "/abs/labels.txt"
            [output.mqtt]
            broker = "mqtts://broker.lan"
            ca_file = "ca.pem"
            [labels]
            groups = "groups/scenes.toml"
        "#;
        let mut config = Config::parse(text).unwrap();
        config.rebase(Path::new("/etc/scened"));
        assert_eq!(config.infer.model(), Path::new("/etc/scened/m.tflite"));
        assert_eq!(config.infer.labels.unwrap(), Path::new("/abs/labels.txt"));
        assert_eq!(
            config.labels.groups.unwrap(),
            Path::new("/etc/scened/groups/scenes.toml")
        );
        let ca_file = config.output.mqtt.unwrap().ca_file.unwrap();
        assert_eq!(ca_file, Path::new("/etc/scened/ca.pem"));
        let SourceConfig::Images(images) = config.source else {
            panic!("images source expected")
        };
        assert_eq!(images.dir, Path::new("/etc/scened/photos"));
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let cases = [
            (
                "[edges.infer]\ncapacity = \"two\"\nwhen_full = \"block\"",
                "edges.infer.capacity: line 2: invalid type: string \"two\", expected usize",
            ),
            (
                "[infer]\nmodle = \"m.tflite\"",
                "infer.modle: line 2: unknown field `modle`, expected one of `model`, `threads`, `labels`, `workers`",
            ),
            (
                "[infer]\nworkers = \"all\"",
                "infer.workers: line 2: invalid value: string \"all\", expected a number of workers or \"auto\"",
            ),
            (
                "[infer]\nworkers = -2",
                "infer.workers: line 2: invalid value: integer `-2`, expected a number of workers or \"auto\"",
            ),
            (
                "[edges.sink]\ncapacity = 2\nwhen_full = \"drop_all\"",
                "edges.sink.when_full: line 3: unknown variant `drop_all`, expected one of `block`, `drop_newest`, `drop_oldest`",
            ),
            (
                "[smooth]\nkind = \"median\"",
                "smooth.kind: line 2: unknown variant `median`, expected one of `ema`, `window`, `hysteresis`",
            ),
            (
                "[source]\nkind = \"webcam\"",
                "source.kind: line 2: unknown variant `webcam`, expected one of `synthetic`, `images`, `clip`, `camera`, `http`, `rtsp`",
            ),
            (
                "[sauce]\nkind = \"clip\"",
                "sauce: line 1: unknown field `sauce`, expected one of `source`, `resize`, `infer`, `smooth`, `labels`, `edges`, `stop`, `output`, `telemetry`, `bench`, `cameras`",
            ),
            (
                "[stop]\nafter_frames = -3",
                "stop.after_frames: line 2: invalid value: integer `-3`, expected u64",
            ),
            (
                "[telemetry]\nlisten = \"localhost\"",
                "telemetry.listen: line 2: invalid socket address syntax",
            ),
            ("[infer\nmodel = 1", "line 1: unclosed table, expected `]`"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(text).expect_err(text).to_string();
            assert_eq!(error, expected, "{text:?}");
        }
    }
}
