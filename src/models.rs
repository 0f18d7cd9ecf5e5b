//! `scened models check`: what a model file holds and whether scened can run it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scened_pipeline::classify::Classifier;
use scened_pipeline::infer::int8::Path;
use scened_pipeline::infer::{inspect::TensorInfo, Engine, EngineOptions};
use scened_pipeline::resize::Fit;
use scened_pipeline::source::DEFAULT_MAX_PIXELS;
use scened_pipeline::{decode, stats};
use serde::Serialize;

use crate::cli::ModelsBenchArgs;

/// Loads each model exactly as `run` would and reports; non-zero exit if any is refused.
pub fn check(models: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut refused = 0;
    for path in models {
        match Engine::load(path, &EngineOptions::default()) {
            Ok(engine) => {
                let i = engine.inspection();
                let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
                for op in &i.ops {
                    *ops.entry(op.name.as_str()).or_default() += 1;
                }
                let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op}×{n}")).collect();
                println!("{}: ok", path.display());
                println!("  input  {}", describe(&i.inputs[0]));
                println!(
                    "  output {}{}",
                    describe(&i.outputs[0]),
                    if engine.output().probabilities {
                        " (softmax)"
                    } else {
                        " (logits; softmax applied by scened)"
                    }
                );
                println!("  ops    {} in all: {}", i.ops.len(), ops.join(" "));
                for change in engine.changes() {
                    println!("  prepared for tract: {change}");
                }
                let paths = engine.op_paths();
                if !paths.is_empty() {
                    let int8 = paths
                        .iter()
                        .filter(|p| matches!(p.path, Path::Int8(_)))
                        .count();
                    println!(
                        "  int8   {int8} of {} ops on int8 kernels, {} lowered to float on their own:",
                        paths.len(),
                        paths.len() - int8
                    );
                    for path in paths {
                        println!("    {path}");
                    }
                }
                if let Some(meta) = engine.meta() {
                    println!(
                        "  meta   {} {}, labels: {}",
                        meta.name,
                        meta.precision,
                        engine.labels().map_or(0, <[_]>::len)
                    );
                }
            }
            Err(err) => {
                println!("{err}");
                refused += 1;
            }
        }
    }
    Ok(crate::exit_for(refused))
}

fn describe(t: &TensorInfo) -> String {
    let quant = t
        .quant
        .map(|q| format!(" scale={} zero_point={}", q.scale, q.zero_point))
        .unwrap_or_default();
    format!("{} {:?}{quant}", t.elem.name(), t.shape)
}

/// One model's timing, shaped like `models/recipe/litert_bench.py`'s so the two compare directly.
#[derive(Serialize)]
struct BenchLine<'a> {
    model: &'a str,
    runtime: &'static str,
    threads: usize,
    median_ms: f64,
    p90_ms: f64,
    runs: usize,
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
        let mut ms = Vec::with_capacity(args.runs);
        for i in 0..args.warmup + args.runs {
            let (_, took) = classifier
                .infer(input.clone())
                .with_context(|| path.display().to_string())?;
            if i >= args.warmup {
                ms.push(took.as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(f64::total_cmp);
        let at = |q| stats::quantile(&ms, q).expect("--runs is at least 1");
        let line = BenchLine {
            model: &path.file_name().unwrap_or_default().to_string_lossy(),
            runtime: if args.lowered {
                "tract-lowered"
            } else {
                "tract"
            },
            threads: args.threads,
            median_ms: at(0.5),
            p90_ms: at(0.9),
            runs: args.runs,
        };
        println!("{}", serde_json::to_string(&line)?);
        if args.profile {
            print_profile(&classifier.profile(input)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-op totals, largest first, with the slowest node of each.
fn print_profile(times: &[(String, String, f64)]) {
    let mut by_op: BTreeMap<&str, (f64, usize, &str, f64)> = BTreeMap::new();
    for (op, node, secs) in times {
        let entry = by_op.entry(op).or_insert((0.0, 0, node, 0.0));
        entry.0 += secs;
        entry.1 += 1;
        if *secs > entry.3 {
            (entry.2, entry.3) = (node, *secs);
        }
    }
    let total: f64 = times.iter().map(|t| t.2).sum();
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    eprintln!(
        "{:>9} {:>6} {:>5}  op (slowest node)",
        "ms", "share", "nodes"
    );
    for (op, (secs, n, slowest, slowest_secs)) in rows {
        eprintln!(
            "{:>9.3} {:>5.1}% {:>5}  {op} ({slowest}: {:.3} ms)",
            secs * 1e3,
            secs / total * 100.0,
            n,
            slowest_secs * 1e3
        );
    }
    eprintln!("{:>9.3} total", total * 1e3);
}
