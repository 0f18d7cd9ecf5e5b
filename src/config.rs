//! Config files (TOML, every key checked) and the flags of `scened run` that override them.
//!
//! Errors are one line naming the file, the key and the line. Paths in a file are relative to
//! the file, so a config works from any directory; paths given as flags are relative to the
//! current directory, as usual.

use std::path::{Path, PathBuf};

use anyhow::Context;
use scened_pipeline::infer::meta::one_line;
use scened_pipeline::pipeline::PipelineConfig;
use scened_pipeline::source::camera::choice::Selector;
use scened_pipeline::source::camera::CameraConfig;
use scened_pipeline::source::clip::ClipConfig;
use scened_pipeline::source::images::{self, ImagesConfig};
use scened_pipeline::source::SourceConfig;

use crate::cli::{PipelineArgs, SourceArg};

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> anyhow::Result<PipelineConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let mut config = parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| path.display().to_string())?;
    rebase(&mut config, path.parent().unwrap_or(Path::new("")));
    Ok(config)
}

/// The config in `text`; an error reads `key: line N: what is wrong`.
fn parse(text: &str) -> Result<PipelineConfig, String> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| one_line(&e, text))?;
    serde_path_to_error::deserialize(deserializer)
        .map_err(|e| format!("{}: {}", e.path(), one_line(e.inner(), text)))
}

/// Makes the relative paths in `config` relative to `dir`.
fn rebase(config: &mut PipelineConfig, dir: &Path) {
    let mut paths: Vec<&mut PathBuf> = config.infer.model.iter_mut().collect();
    paths.extend(config.infer.labels.as_mut());
    match &mut config.source {
        SourceConfig::Clip(clip) => paths.extend(clip.path.as_mut()),
        SourceConfig::Images(images) => paths.push(&mut images.dir),
        SourceConfig::Synthetic(_) | SourceConfig::Camera(_) => {}
    }
    for path in paths {
        if path.is_relative() {
            *path = dir.join(&*path);
        }
    }
}

/// The config a `scened run` or `bench` uses: its file (or the defaults), then its flags.
pub fn for_args(args: &PipelineArgs) -> anyhow::Result<PipelineConfig> {
    let mut config = match &args.config {
        Some(path) => load(path)?,
        None => PipelineConfig::default(),
    };
    if let Some(source) = &args.source {
        config.source = with_source(config.source, source);
    }
    if let Some(fps) = args.fps {
        set_fps(&mut config.source, fps);
    }
    if let Some(model) = &args.model {
        config.infer.model = Some(model.clone());
    }
    if let Some(frames) = args.frames {
        config.stop.after_frames = Some(frames);
    }
    if let Some(seconds) = args.duration {
        config.stop.after_seconds = Some(seconds);
    }
    if let Some(listen) = args.listen {
        config.telemetry.listen = listen;
    }
    config.telemetry.enabled &= !args.no_telemetry;
    Ok(config)
}

/// `--source`: a source of the kind the config already has keeps its other settings, so
/// `--source clip:other.mjpeg` replays another clip the way the config plays its own.
fn with_source(current: SourceConfig, arg: &SourceArg) -> SourceConfig {
    match (current, arg) {
        (SourceConfig::Clip(clip), SourceArg::Clip(path)) => SourceConfig::Clip(ClipConfig {
            path: path.clone(),
            ..clip
        }),
        (_, SourceArg::Clip(path)) => SourceConfig::Clip(ClipConfig {
            path: path.clone(),
            ..ClipConfig::default()
        }),
        (SourceConfig::Images(images), SourceArg::Images(dir)) => {
            SourceConfig::Images(ImagesConfig {
                dir: dir.clone(),
                ..images
            })
        }
        (_, SourceArg::Images(dir)) => SourceConfig::Images(ImagesConfig {
            dir: dir.clone(),
            looping: images::DEFAULT_LOOP,
            fps: images::DEFAULT_FPS,
            recursive: images::DEFAULT_RECURSIVE,
        }),
        (current, SourceArg::Camera(selector)) => {
            let camera = match current {
                SourceConfig::Camera(camera) => camera,
                _ => CameraConfig::default(),
            };
            // A camera named on the command line replaces the config's choice, index or id.
            SourceConfig::Camera(match selector.clone() {
                None => camera,
                Some(Selector::Index(index)) => CameraConfig {
                    index: Some(index),
                    id: None,
                    ..camera
                },
                Some(Selector::Id(id)) => CameraConfig {
                    index: None,
                    id: Some(id),
                    ..camera
                },
            })
        }
        (current @ SourceConfig::Synthetic(_), SourceArg::Synthetic) => current,
        (_, SourceArg::Synthetic) => SourceConfig::Synthetic(Default::default()),
    }
}

fn set_fps(source: &mut SourceConfig, fps: f64) {
    match source {
        SourceConfig::Synthetic(config) => config.fps = fps,
        SourceConfig::Images(config) => config.fps = fps,
        SourceConfig::Clip(config) => config.fps = fps,
        // A camera is asked for whole frame rates; the source checks the range.
        SourceConfig::Camera(config) => config.fps = fps.round() as u32,
    }
}

#[cfg(test)]
mod tests {
    use scened_pipeline::infer::stage::DEFAULT_MODEL;
    use scened_pipeline::queue::WhenFull;
    use scened_pipeline::smooth::SmoothConfig;

    use super::*;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn every_shipped_config_parses() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(repo().join("config")).unwrap() {
            let path = entry.unwrap().path();
            load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(
            names,
            [
                "benchmark.toml",
                "live-camera.toml",
                "replay.toml",
                "scened.toml",
                "soak.toml"
            ]
        );
    }

    /// scened.toml documents the defaults; it must say what the code does.
    #[test]
    fn scened_toml_is_exactly_the_built_in_defaults() {
        let mut from_file = load(&repo().join("config/scened.toml")).unwrap();
        let mut defaults = PipelineConfig::default();
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
        assert_eq!(blocks.len(), 5, "{blocks:#?}");
        assert_eq!(
            source(&blocks[0]),
            SourceConfig::Camera(CameraConfig::default())
        );
        assert_eq!(
            source(&blocks[1]),
            SourceConfig::Images(ImagesConfig {
                dir: "../tests/data/photos/full".into(),
                looping: images::DEFAULT_LOOP,
                fps: images::DEFAULT_FPS,
                recursive: images::DEFAULT_RECURSIVE,
            })
        );
        assert_eq!(
            source(&blocks[2]),
            SourceConfig::Synthetic(Default::default())
        );
        let window: SmoothConfig = toml::from_str("kind = \"window\"").unwrap();
        let hysteresis: SmoothConfig = toml::from_str("kind = \"hysteresis\"").unwrap();
        assert_eq!(smooth(&blocks[3]), window);
        assert_eq!(smooth(&blocks[4]), hysteresis);
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
        "#;
        let mut config = parse(text).unwrap();
        rebase(&mut config, Path::new("/etc/scened"));
        assert_eq!(config.infer.model(), Path::new("/etc/scened/m.tflite"));
        assert_eq!(config.infer.labels.unwrap(), Path::new("/abs/labels.txt"));
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
                "infer.modle: line 2: unknown field `modle`, expected one of `model`, `threads`, `labels`",
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
                "source.kind: line 2: unknown variant `webcam`, expected one of `synthetic`, `images`, `clip`, `camera`",
            ),
            (
                "[sauce]\nkind = \"clip\"",
                "sauce: line 1: unknown field `sauce`, expected one of `source`, `resize`, `infer`, `smooth`, `edges`, `stop`, `output`, `telemetry`, `bench`",
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
            assert_eq!(parse(text).expect_err(text), expected, "{text:?}");
        }
    }

    fn run_args(args: &[&str]) -> crate::cli::RunArgs {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from([&["scened", "run"], args].concat());
        match cli.command {
            crate::cli::Command::Run(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file() {
        let args = run_args(&[
            "--config",
            repo().join("config/replay.toml").to_str().unwrap(),
            "--source",
            "clip:other.mjpeg",
            "--model",
            "m.tflite",
            "--frames",
            "7",
            "--duration",
            "2.5",
            "--fps",
            "30",
        ]);
        let config = for_args(&args.pipeline).unwrap();
        let replay = load(&repo().join("config/replay.toml")).unwrap();
        let SourceConfig::Clip(clip) = &config.source else {
            panic!("clip source expected")
        };
        // The clip changes; the rest of replay.toml's clip settings stay.
        assert_eq!(clip.path.as_deref(), Some(Path::new("other.mjpeg")));
        assert_eq!(clip.fps, 30.0);
        let SourceConfig::Clip(replayed) = &replay.source else {
            panic!("replay.toml plays a clip")
        };
        assert_eq!(clip.looping, replayed.looping);
        assert_eq!(config.infer.model(), Path::new("m.tflite"));
        assert_eq!(config.stop.after_frames, Some(7));
        assert_eq!(config.stop.after_seconds, Some(2.5));
        assert_eq!(config.edges, replay.edges);
    }

    #[test]
    fn a_source_of_another_kind_starts_from_its_defaults() {
        let config = for_args(&run_args(&["--source", "camera:2"]).pipeline).unwrap();
        assert_eq!(
            config.source,
            SourceConfig::Camera(CameraConfig {
                index: Some(2),
                ..CameraConfig::default()
            })
        );
        let config = for_args(&run_args(&["--source", "camera:47B4B64B-7067"]).pipeline).unwrap();
        assert_eq!(
            config.source,
            SourceConfig::Camera(CameraConfig {
                id: Some("47B4B64B-7067".into()),
                ..CameraConfig::default()
            })
        );
        let config = for_args(&run_args(&["--source", "images:photos"]).pipeline).unwrap();
        let SourceConfig::Images(images) = &config.source else {
            panic!("images source expected")
        };
        assert_eq!(images.dir, Path::new("photos"));
        // No flags: the built-in defaults, which play the demo clip.
        let config = for_args(&run_args(&[]).pipeline).unwrap();
        assert_eq!(config, PipelineConfig::default());
        assert_eq!(config.source, SourceConfig::Clip(ClipConfig::default()));
        assert_eq!(config.smooth, SmoothConfig::default());
        assert_eq!(config.edges.infer.when_full, WhenFull::DropOldest);
    }
}
