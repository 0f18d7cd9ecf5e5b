//! The flags of `scened run` and `scened bench` that override their config file.
//!
//! Paths given as flags are relative to the current directory, as usual (paths in a file are
//! relative to the file: [`Config::load`]).

use scened_pipeline::config::Config;
use scened_pipeline::source::camera::choice::Selector;
use scened_pipeline::source::camera::CameraConfig;
use scened_pipeline::source::clip::ClipConfig;
use scened_pipeline::source::http::HttpConfig;
use scened_pipeline::source::images::ImagesConfig;
use scened_pipeline::source::rtsp::RtspConfig;
use scened_pipeline::source::SourceConfig;

use crate::cli::{PipelineArgs, SourceArg};

/// The config a `scened run` or `bench` uses: its file (or the defaults), then its flags.
pub fn for_args(args: &PipelineArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // With several cameras, the source flags set each camera's.
    for current in config.sources_mut() {
        if let Some(source) = &args.source {
            *current = with_source(current.clone(), source);
        }
        if let Some(fps) = args.fps {
            set_fps(current, fps);
        }
    }
    if let Some(model) = &args.model {
        config.infer.model = Some(model.clone());
    }
    if let Some(workers) = args.workers {
        config.infer.workers = workers;
    }
    if let Some(threads) = args.threads {
        config.infer.threads = threads;
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
            ..ImagesConfig::default()
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
        // Another camera's URL keeps the config's other settings (credentials, fps, limits).
        (SourceConfig::Http(http), SourceArg::Http(url)) => SourceConfig::Http(HttpConfig {
            url: url.clone(),
            ..http
        }),
        (_, SourceArg::Http(url)) => SourceConfig::Http(HttpConfig {
            url: url.clone(),
            ..HttpConfig::default()
        }),
        (SourceConfig::Rtsp(rtsp), SourceArg::Rtsp(url)) => SourceConfig::Rtsp(RtspConfig {
            url: url.clone(),
            ..rtsp
        }),
        (_, SourceArg::Rtsp(url)) => SourceConfig::Rtsp(RtspConfig {
            url: url.clone(),
            ..RtspConfig::default()
        }),
    }
}

fn set_fps(source: &mut SourceConfig, fps: f64) {
    match source {
        SourceConfig::Synthetic(config) => config.fps = fps,
        SourceConfig::Images(config) => config.fps = fps,
        SourceConfig::Clip(config) => config.fps = fps,
        // A camera is asked for whole frame rates; the source checks the range.
        SourceConfig::Camera(config) => config.fps = fps.round() as u32,
        SourceConfig::Http(config) => config.fps = fps,
        SourceConfig::Rtsp(config) => config.fps = fps,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use scened_pipeline::infer::stage::Workers;
    use scened_pipeline::queue::WhenFull;
    use scened_pipeline::smooth::SmoothConfig;

    use super::*;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
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
            "--workers",
            "3",
            "--threads",
            "2",
        ]);
        let config = for_args(&args.pipeline).unwrap();
        let replay = Config::load(&repo().join("config/replay.toml")).unwrap();
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
        assert_eq!(config.infer.workers, Workers::Count(3));
        assert_eq!(config.infer.threads, 2);
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
        assert_eq!(config, Config::default());
        assert_eq!(config.source, SourceConfig::Clip(ClipConfig::default()));
        assert_eq!(config.smooth, SmoothConfig::default());
        assert_eq!(config.edges.infer.when_full, WhenFull::DropOldest);
    }
}
