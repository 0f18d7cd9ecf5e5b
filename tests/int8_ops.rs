//! Each int8 kernel against LiteRT on the single-op models `models/recipe/int8_ops.py` made
//! (`tests/data/ops/`): bit-exact with LiteRT's builtin optimized kernels, in every version
//! this CPU runs.

use std::path::Path;

use scened_pipeline::infer::int8::{self, Isa, Path as OpPath};
use scened_pipeline::infer::values;
use scened_pipeline::npy;
use tract_tflite::prelude::*;

use crate::util::data;

fn read_npy(path: &Path) -> Option<Tensor> {
    let bytes = std::fs::read(path).ok()?;
    Some(npy::from_npy(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Sample `s` of a `[samples, …]` array, in the datum type the graph's input takes.
fn sample(stack: &Tensor, s: usize, dt: DatumType) -> Tensor {
    let mut t = stack.slice(0, s, s + 1).unwrap();
    t.remove_axis(0).unwrap();
    // SAFETY: the graph's input is int8 with quantization parameters attached; the bytes are
    // the same int8 values.
    unsafe { t.set_datum_type(dt) };
    t
}

fn steps(a: &[i8], b: &[i8]) -> (i32, usize) {
    let d: Vec<i32> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).abs())
        .collect();
    (
        d.iter().copied().max().unwrap_or(0),
        d.iter().filter(|&&v| v > 0).count(),
    )
}

/// The single-op models, by name.
fn op_models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data("ops"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "tflite").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 16,
        "expected the committed op models, found {names:?}"
    );
    names
}

#[test]
fn every_int8_kernel_matches_litert_builtin_bit_for_bit() {
    let mut failures = vec![];
    for isa in Isa::available() {
        for name in op_models() {
            let bytes = std::fs::read(data(&format!("ops/{name}.tflite"))).unwrap();
            let built = int8::build(&bytes, isa).unwrap_or_else(|e| panic!("{name}: {e}"));
            for p in &built.paths {
                assert!(matches!(p.path, OpPath::Int8(_)), "{name}: {p}");
            }
            let plan = built
                .model
                .into_optimized()
                .unwrap()
                .into_runnable_with_options(&RunOptions::default())
                .unwrap();
            let input_dts: Vec<DatumType> = plan
                .model()
                .input_outlets()
                .unwrap()
                .iter()
                .map(|&o| plan.model().outlet_fact(o).unwrap().datum_type)
                .collect();
            let inputs: Vec<Tensor> = (0..input_dts.len())
                .map(|i| read_npy(&data(&format!("ops/{name}.input{i}.npy"))).unwrap())
                .collect();
            let want =
                |kernels: &str| read_npy(&data(&format!("ops/{name}.{kernels}.npy"))).unwrap();
            let (builtin, xnnpack, reference) =
                (want("builtin"), want("xnnpack"), want("reference"));
            for s in 0..inputs[0].shape()[0] {
                let feed = inputs
                    .iter()
                    .zip(&input_dts)
                    .map(|(x, &dt)| sample(x, s, dt).into_tvalue())
                    .collect();
                let got = plan
                    .spawn()
                    .unwrap()
                    .run(feed)
                    .unwrap()
                    .remove(0)
                    .into_tensor();
                let got = values::<i8>(&got).unwrap();
                let slice = |t: &Tensor| sample(t, s, DatumType::I8);
                let [b, x, r] = [&builtin, &xnnpack, &reference].map(slice);
                let vs = |t: &Tensor| steps(got, values::<i8>(t).unwrap());
                eprintln!(
                    "{:11} {name} #{s}: vs builtin {:?}, xnnpack {:?}, reference {:?} (max steps, values differing)",
                    isa.name(),
                    vs(&b),
                    vs(&x),
                    vs(&r)
                );
                if vs(&b).0 != 0 {
                    failures.push(format!("{} {name} sample {s}: {:?}", isa.name(), vs(&b)));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "not bit-exact with LiteRT builtin: {failures:#?}"
    );
}
