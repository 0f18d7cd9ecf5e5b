//! The int8 GEMM and depthwise kernels alone, on EfficientNet-Lite0's shapes, in every
//! instruction set this CPU runs: best of 15 runs per shape, summed per kind.
//!
//!     cargo run --release -p scened-pipeline --example int8_kernels -- [THREADS] [ISA]
//!
//! `V=1` in the environment prints every shape. A measurement of the kernels, not of a model
//! (`scened models bench` and `models/recipe/compare_runtimes.py` time those).

use std::time::Instant;

use scened_pipeline::infer::int8::depthwise::Depthwise;
use scened_pipeline::infer::int8::gemm::Gemm;
use scened_pipeline::infer::int8::isa::Isa;
use scened_pipeline::infer::int8::quant::Multiplier;
use scened_pipeline::infer::int8::requant::Requant;
use scened_pipeline::infer::int8::threads::{scope, Pool};
use scened_pipeline::infer::int8::window::Window;
use tract_tflite::tflite::Padding;

/// Lite0's convolutions as GEMMs: rows (output pixels), k, output channels.
const CONVS: [(usize, usize, usize); 34] = [
    (12544, 27, 32),
    (12544, 32, 16),
    (12544, 16, 96),
    (3136, 96, 24),
    (3136, 24, 144),
    (3136, 144, 24),
    (3136, 24, 144),
    (784, 144, 40),
    (784, 40, 240),
    (784, 240, 40),
    (784, 40, 240),
    (196, 240, 80),
    (196, 80, 480),
    (196, 480, 80),
    (196, 80, 480),
    (196, 480, 80),
    (196, 80, 480),
    (196, 480, 112),
    (196, 112, 672),
    (196, 672, 112),
    (196, 112, 672),
    (196, 672, 112),
    (196, 112, 672),
    (49, 672, 192),
    (49, 192, 1152),
    (49, 1152, 192),
    (49, 192, 1152),
    (49, 1152, 192),
    (49, 192, 1152),
    (49, 1152, 192),
    (49, 192, 1152),
    (49, 1152, 320),
    (49, 320, 1280),
    (1, 1280, 1000),
];

/// Lite0's depthwise convolutions: input (h, w, c), filter size, stride.
const DEPTHWISE: [([usize; 3], usize, usize); 16] = [
    ([112, 112, 32], 3, 1),
    ([112, 112, 96], 3, 2),
    ([56, 56, 144], 3, 1),
    ([56, 56, 144], 5, 2),
    ([28, 28, 240], 5, 1),
    ([28, 28, 240], 3, 2),
    ([14, 14, 480], 3, 1),
    ([14, 14, 480], 3, 1),
    ([14, 14, 480], 5, 1),
    ([14, 14, 672], 5, 1),
    ([14, 14, 672], 5, 1),
    ([14, 14, 672], 5, 2),
    ([7, 7, 1152], 5, 1),
    ([7, 7, 1152], 5, 1),
    ([7, 7, 1152], 5, 1),
    ([7, 7, 1152], 3, 1),
];

fn best_of_15(mut f: impl FnMut()) -> f64 {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn values(n: usize, step: usize) -> Vec<i8> {
    (0..n).map(|i| (i * step % 251) as i8).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(1, |s| s.parse().expect("THREADS"));
    let only = args.next();
    let verbose = std::env::var_os("V").is_some();
    let pool = Pool::new(threads).expect("threads");
    for isa in Isa::available() {
        if only.as_deref().is_some_and(|o| o != isa.name()) {
            continue;
        }
        let requant =
            |c: usize| Requant::new(&vec![Multiplier::new(7e-4).unwrap(); c], -3, (-128, 127));
        let mut gemm_s = 0.0;
        for (rows, k, m) in CONVS {
            let (x, w) = (values(rows * k, 7), values(m * k, 13));
            let gemm = Gemm::new(&w, m, k, &vec![100; m], -5, requant(m), isa);
            let mut out = vec![0i8; rows * m];
            let fill = |r: usize, dst: &mut [i8]| dst.copy_from_slice(&x[r * k..][..k]);
            let s = best_of_15(|| scope(pool.as_ref(), || gemm.run(rows, &fill, &mut out)));
            if verbose {
                let gmacs = (rows * k * m) as f64 / s / 1e9;
                println!(
                    "  conv {rows}×{k}×{m}: {:.0} µs, {gmacs:.0} GMAC/s",
                    s * 1e6
                );
            }
            gemm_s += s;
        }
        let mut depthwise_s = 0.0;
        for (input, f, stride) in DEPTHWISE {
            let window = Window::new(input, [f, f], [stride, stride], Padding::SAME).unwrap();
            let c = input[2];
            let x = values(input.iter().product(), 7);
            let d = Depthwise::new(
                window,
                -5,
                &values(f * f * c, 13),
                &vec![100; c],
                requant(c),
                isa,
            );
            let mut out = vec![0i8; window.output[0] * window.output[1] * c];
            let s = best_of_15(|| scope(pool.as_ref(), || d.run(&x, &mut out)));
            if verbose {
                println!("  depthwise {input:?} {f}×{f}/{stride}: {:.0} µs", s * 1e6);
            }
            depthwise_s += s;
        }
        println!(
            "{} at {threads} thread(s): convolutions {:.2} ms, depthwise {:.2} ms",
            isa.name(),
            gemm_s * 1e3,
            depthwise_s * 1e3
        );
    }
}
