//! `scened classify`: still images through the same resize and engine the pipeline uses.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use scened_pipeline::infer::{self, Engine, EngineOptions, Session};
use scened_pipeline::resize::Preprocessor;
use scened_pipeline::{decode, npy};
use serde::Serialize;

use crate::cli::ClassifyArgs;

#[derive(Serialize)]
struct Classified<'a> {
    image: &'a Path,
    top: Vec<Ranked>,
    infer_ms: f64,
}

#[derive(Serialize)]
struct Ranked {
    index: usize,
    label: String,
    score: f32,
}

pub fn run(args: &ClassifyArgs) -> anyhow::Result<ExitCode> {
    let options = EngineOptions {
        threads: args.threads,
        labels: args.labels.clone(),
    };
    let engine = Engine::load(&args.model, &options)?;
    let mut session = engine.session()?;
    let mut pre = Preprocessor::new(engine.input().clone(), args.fit.into());
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    // One bad image is reported and skipped; the exit code still says something failed.
    for path in &args.images {
        match classify(&engine, &mut session, &mut pre, path, args) {
            Ok(line) => writeln!(out, "{line}").context("cannot write to stdout")?,
            Err(err) => {
                eprintln!("error: {err:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn classify(
    engine: &Engine,
    session: &mut Session,
    pre: &mut Preprocessor,
    path: &Path,
    args: &ClassifyArgs,
) -> anyhow::Result<String> {
    let image = decode::load_rgb(path)?;
    let input = pre
        .process(&image)
        .with_context(|| path.display().to_string())?;
    let dump_input = args.dump.as_ref().map(|_| input.clone());
    let started = Instant::now();
    let result = session
        .run(input)
        .with_context(|| path.display().to_string())?;
    let infer_ms = started.elapsed().as_secs_f64() * 1e3;
    if let (Some(dir), Some(input)) = (&args.dump, dump_input) {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        for (suffix, tensor) in [("input", &input), ("output", &result.raw)] {
            let file = dir.join(format!("{stem}.{suffix}.npy"));
            let bytes = npy::to_npy(tensor).map_err(anyhow::Error::msg)?;
            std::fs::write(&file, bytes)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
    }
    let top = infer::top_k(&result.probs, args.top)
        .into_iter()
        .map(|(index, score)| Ranked {
            index,
            label: engine.label(index),
            score,
        })
        .collect();
    Ok(serde_json::to_string(&Classified {
        image: path,
        top,
        infer_ms,
    })?)
}
