//! `scened models check` and `scened models bench`: the library's model report and timing
//! ([`scened_pipeline::models`]) for each model named.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scened_pipeline::classify::Classifier;
use scened_pipeline::decode;
use scened_pipeline::infer::{Engine, EngineOptions};
use scened_pipeline::models::{time_runs, BenchLine, Profile, Report};
use scened_pipeline::resize::Fit;
use scened_pipeline::source::DEFAULT_MAX_PIXELS;

use crate::cli::ModelsBenchArgs;

/// Loads each model exactly as `run` would and reports; non-zero exit if any is refused.
pub fn check(models: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut refused = 0;
    for path in models {
        match Engine::load(path, &EngineOptions::default()) {
            Ok(engine) => print!("{}: ok\n{}", path.display(), Report(&engine)),
            Err(err) => {
                println!("{err}");
                refused += 1;
            }
        }
    }
    Ok(crate::exit_for(refused))
}

pub fn bench(args: &ModelsBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let image = match &args.image {
        Some(path) => decode::load_rgb(path, DEFAULT_MAX_PIXELS)?,
        None => image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128])),
    };
    for path in &args.models {
        let options = EngineOptions {
            threads: args.threads,
            labels: None,
            lowered: args.lowered,
        };
        let mut classifier = Classifier::load(path, &options, Fit::CenterCrop)?;
        let input = classifier.input(&image)?;
        let ms = time_runs(&mut classifier, &input, args.warmup, args.runs)
            .with_context(|| path.display().to_string())?;
        let model = path.file_name().unwrap_or_default().to_string_lossy();
        let line = BenchLine::new(&model, args.lowered, args.threads, &ms);
        println!("{}", serde_json::to_string(&line)?);
        if args.profile {
            eprint!("{}", Profile(&classifier.profile(input)?));
        }
    }
    Ok(ExitCode::SUCCESS)
}
