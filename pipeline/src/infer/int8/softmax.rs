//! SOFTMAX on int8 as LiteRT's builtin kernel computes it on x86 (`optimized_ops::Softmax`
//! with `PopulateSoftmaxLookupTable`): `exp` of every possible distance below the row's maximum
//! tabulated in f32 at load, summed in f32 in order, each probability rounded half away from
//! zero onto the output grid. (Built for arm64 with clang, LiteRT uses a uint16 table instead,
//! with slightly different results.)

use super::quant::Grid;

#[derive(Debug, Clone, PartialEq)]
pub struct Softmax {
    /// `table[255 − d] = exp(−input_scale · beta · d)` for `d` in 0..=255.
    table: Vec<f32>,
    output: Grid,
}

impl Eq for Softmax {}
impl std::hash::Hash for Softmax {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.table.iter().for_each(|v| v.to_bits().hash(state));
        self.output.hash(state);
    }
}

impl Softmax {
    pub fn new(input_scale: f32, beta: f32, output: Grid) -> Softmax {
        let scale = -input_scale * beta;
        let mut table = vec![0f32; 256];
        for d in 0..256 {
            table[255 - d] = (scale * d as f32).exp();
        }
        Softmax { table, output }
    }

    /// Softmax over each `row_len` values of `x`.
    pub fn run(&self, x: &[i8], row_len: usize, out: &mut [i8]) {
        for (x, out) in x.chunks_exact(row_len).zip(out.chunks_exact_mut(row_len)) {
            let max = x.iter().copied().max().unwrap_or(0) as i32;
            // `table[255 − max + v]`: exp of `v − max`, `v` at most `max`.
            let exp = |v: i8| self.table[(255 - max + v as i32) as usize];
            let sum: f32 = x.iter().fold(0.0, |s, &v| s + exp(v));
            let inv = 1.0 / (sum * self.output.scale);
            for (o, &v) in out.iter_mut().zip(x) {
                let q = (exp(v) * inv).round() as i32 + self.output.zero_point;
                *o = q.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
            }
        }
    }
}
