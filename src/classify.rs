//! `scened classify`: still images through the library's [`Classifier`], one JSON line each
//! ([`Line`]).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use scened_pipeline::classify::{Classified, Classifier, Line};
use scened_pipeline::infer::EngineOptions;
use scened_pipeline::npy;

use crate::cli::ClassifyArgs;

pub fn run(args: &ClassifyArgs) -> anyhow::Result<ExitCode> {
    let options = EngineOptions {
        threads: args.threads,
        labels: args.labels.clone(),
        ..Default::default()
    };
    let mut classifier = Classifier::load(&args.model, &options, args.fit.into())?;
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    // One bad image is reported and skipped; the exit code still says something failed.
    for path in &args.images {
        let line = classifier
            .classify_file(path)
            .map_err(anyhow::Error::from)
            .and_then(|classified| {
                if let Some(dir) = &args.dump {
                    dump(dir, path, &classified)?;
                }
                let line = Line::new(classifier.engine(), path, &classified, args.top);
                Ok(serde_json::to_string(&line)?)
            });
        match line {
            Ok(line) => writeln!(out, "{line}").context("cannot write to stdout")?,
            Err(err) => {
                eprintln!("error: {err:#}");
                failed += 1;
            }
        }
    }
    Ok(crate::exit_for(failed))
}

/// `<stem>.input.npy` (the exact tensor given to tract) and `<stem>.output.npy` (the raw
/// output, in the model's own type) in `dir`.
fn dump(dir: &Path, image: &Path, classified: &Classified) -> anyhow::Result<()> {
    let stem = image.file_stem().unwrap_or_default().to_string_lossy();
    for (suffix, tensor) in [
        ("input", &classified.input),
        ("output", &classified.inference.raw),
    ] {
        let file = dir.join(format!("{stem}.{suffix}.npy"));
        std::fs::write(&file, npy::to_npy(tensor)?)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}
