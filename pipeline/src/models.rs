//! `scened models`: what a model file holds and how scened runs it ([`Report`], for `check`),
//! and its inference timed alone ([`time_runs`], [`BenchLine`], [`Profile`], for `bench`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tract_tflite::prelude::Tensor;

use crate::classify::Classifier;
use crate::infer::int8::Path;
use crate::infer::{inspect::TensorInfo, Engine, InferError};
use crate::stats;

/// A model that loaded, as `scened models check` prints it after its `ok` line: input, output,
/// ops by kind, what was prepared for tract, each op's int8 path, the sidecar's metadata.
pub struct Report<'a>(pub &'a Engine);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = self.0;
        let i = engine.inspection();
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for op in &i.ops {
            *ops.entry(op.name.as_str()).or_default() += 1;
        }
        let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op}×{n}")).collect();
        writeln!(f, "  input  {}", describe(&i.inputs[0]))?;
        writeln!(
            f,
            "  output {}{}",
            describe(&i.outputs[0]),
            if engine.output().probabilities {
                " (softmax)"
            } else {
                " (logits; softmax applied by scened)"
            }
        )?;
        writeln!(f, "  ops    {} in all: {}", i.ops.len(), ops.join(" "))?;
        for change in engine.changes() {
            writeln!(f, "  prepared for tract: {change}")?;
        }
        let paths = engine.op_paths();
        if !paths.is_empty() {
            let int8 = paths
                .iter()
                .filter(|p| matches!(p.path, Path::Int8(_)))
                .count();
            writeln!(
                f,
                "  int8   {int8} of {} ops on int8 kernels, {} lowered to float on their own:",
                paths.len(),
                paths.len() - int8
            )?;
            for path in paths {
                writeln!(f, "    {path}")?;
            }
        }
        if let Some(meta) = engine.meta() {
            writeln!(
                f,
                "  meta   {} {}, labels: {}",
                meta.name,
                meta.precision,
                engine.labels().map_or(0, <[_]>::len)
            )?;
        }
        Ok(())
    }
}

fn describe(t: &TensorInfo) -> String {
    let quant = t
        .quant
        .map(|q| format!(" scale={} zero_point={}", q.scale, q.zero_point))
        .unwrap_or_default();
    format!("{} {:?}{quant}", t.elem.name(), t.shape)
}

/// `warmup` untimed runs of `input`, then `runs` timed ones: their milliseconds, sorted.
pub fn time_runs(
    classifier: &mut Classifier,
    input: &Tensor,
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>, InferError> {
    let mut ms = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let (_, took) = classifier.infer(input.clone())?;
        if i >= warmup {
            ms.push(took.as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// One model's timing, shaped like `models/recipe/litert_bench.py`'s so the two compare directly.
#[derive(Serialize)]
pub struct BenchLine<'a> {
    pub model: &'a str,
    pub runtime: &'static str,
    pub threads: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub runs: usize,
}

impl<'a> BenchLine<'a> {
    /// The line for `model`'s sorted, non-empty run times `ms`, run on `threads` threads,
    /// through the float lowering if `lowered`.
    pub fn new(model: &'a str, lowered: bool, threads: usize, ms: &[f64]) -> Self {
        let at = |q| stats::quantile(ms, q).expect("at least one run");
        Self {
            model,
            runtime: if lowered { "tract-lowered" } else { "tract" },
            threads,
            median_ms: at(0.5),
            p90_ms: at(0.9),
            runs: ms.len(),
        }
    }
}

/// A profile's per-op totals (`(op, node, seconds)` as [`Classifier::profile`] gives them),
/// largest first, with the slowest node of each, and the total.
pub struct Profile<'a>(pub &'a [(String, String, f64)]);

impl fmt::Display for Profile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let times = self.0;
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
        writeln!(
            f,
            "{:>9} {:>6} {:>5}  op (slowest node)",
            "ms", "share", "nodes"
        )?;
        for (op, (secs, n, slowest, slowest_secs)) in rows {
            writeln!(
                f,
                "{:>9.3} {:>5.1}% {:>5}  {op} ({slowest}: {:.3} ms)",
                secs * 1e3,
                secs / total * 100.0,
                n,
                slowest_secs * 1e3
            )?;
        }
        writeln!(f, "{:>9.3} total", total * 1e3)
    }
}
