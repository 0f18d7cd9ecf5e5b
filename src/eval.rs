//! `scened eval`: the study's table for each model on a labelled folder — size, top-1/top-3,
//! inference-only and end-to-end seconds per frame, peak memory and the Mobile AI 2021 score.
//! The procedure and the table are the library's ([`evaluate`], [`table`]); here are the flags,
//! one child process per model when there are several (so each model's peak RSS is its own)
//! and the progress bars.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use scened_pipeline::decode::ImageError;
use scened_pipeline::eval::{evaluate, table, Dataset, EvalError, LabelMap, Progress, Row};

use crate::cli::EvalArgs;

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let dataset = Dataset::open(&args.data)?;
    let map = match &args.map {
        Some(path) => LabelMap::load(path).map_err(EvalError::Mapping)?,
        None => LabelMap::default(),
    };
    let rows = match args.models.as_slice() {
        [model] => {
            let mut bars = Bars::new(model);
            let row = evaluate(model, &dataset, &map, args.threads, &mut bars)?;
            bars.warn_skipped(model, &dataset);
            vec![row]
        }
        models => models
            .iter()
            .map(|model| in_child(model, args))
            .collect::<anyhow::Result<_>>()?,
    };
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `scened eval` for `model` alone, in a child process; its progress and warnings go to our
/// stderr, its JSON row comes back on its stdout.
fn in_child(model: &Path, args: &EvalArgs) -> anyhow::Result<Row> {
    let exe = std::env::current_exe().context("cannot find the scened executable")?;
    let mut command = Command::new(exe);
    command
        .arg("eval")
        .arg("--data")
        .arg(&args.data)
        .arg("--model")
        .arg(model)
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(map) = &args.map {
        command.arg("--map").arg(map);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot start scened eval for {}", model.display()))?;
    // The child has already printed its error.
    anyhow::ensure!(
        output.status.success(),
        "evaluating {} failed",
        model.display()
    );
    let line = BufReader::new(&output.stdout[..])
        .lines()
        .next()
        .transpose()?
        .unwrap_or_default();
    serde_json::from_str(&line).with_context(|| format!("{}: unexpected output", model.display()))
}

/// A progress bar per pass on stderr (hidden when stderr is not a terminal); skipped images
/// are warned about as they come and counted.
struct Bars {
    model: String,
    bar: ProgressBar,
    skipped: usize,
}

impl Bars {
    fn new(model: &Path) -> Self {
        Self {
            model: model
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            bar: ProgressBar::hidden(),
            skipped: 0,
        }
    }

    fn warn_skipped(&self, model: &Path, dataset: &Dataset) {
        if self.skipped > 0 {
            eprintln!(
                "warning: {}: {} unreadable image(s) skipped in {}",
                model.display(),
                self.skipped,
                dataset.dir.display()
            );
        }
    }
}

impl Progress for Bars {
    fn pass(&mut self, name: &'static str, images: usize) {
        self.bar = ProgressBar::new(images as u64);
        self.bar.set_style(
            ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} {elapsed}")
                .expect("a valid template"),
        );
        self.bar.set_prefix(format!("{} {name}", self.model));
    }

    fn image(&mut self) {
        self.bar.inc(1);
    }

    fn skipped(&mut self, error: &ImageError) {
        self.skipped += 1;
        self.bar.suspend(|| eprintln!("warning: skipped {error}"));
    }

    fn finished(&mut self) {
        self.bar.finish_and_clear();
    }
}
