//! The flags of `scened run` and `scened bench` that override their config file.
//!
//! Paths given as flags are relative to the current directory, as usual (paths in a file are
//! relative to the file: [`Config::load`]).

use scened_pipeline::config::Config;

use crate::cli::PipelineArgs;

/// The config a `scened run` or `bench` uses: its file (or the defaults), then its flags.
pub fn for_args(args: &PipelineArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // With several cameras, the source flags set each camera's.
    for current in config.sources_mut() {
        if let Some(source) = &args.source {
            *current = current.clone().with_flag(source);
        }
        if let Some(fps) = args.fps {
            current.set_fps(fps);
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use scened_pipeline::infer::stage::Workers;
    use scened_pipeline::queue::WhenFull;
    use scened_pipeline::smooth::SmoothConfig;

    use scened_pipeline::source::camera::CameraConfig;
    use scened_pipeline::source::clip::ClipConfig;
    use scened_pipeline::source::SourceConfig;

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
