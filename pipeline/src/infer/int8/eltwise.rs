//! ADD of two int8 tensors of the same shape, each with its own grid, as LiteRT's builtin
//! kernel computes it (`add.cc`, `optimized_integer_ops::AddElementwiseInt8`): both inputs are
//! shifted left 20 bits, rescaled to twice the larger input scale, summed, and rescaled to the
//! output, each step with gemmlowp's double rounding.

use super::quant::{Grid, Multiplier};
use super::requant::double;
use super::threads;

const LEFT_SHIFT: i32 = 20;
/// Elements per unit of the split between threads.
const RUN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Add {
    offsets: [i32; 2],
    inputs: [Multiplier; 2],
    output: Multiplier,
    zero_point: i32,
    range: (i32, i32),
}

impl Add {
    /// `None` where TFLite's rescaling does not apply (a factor outside (0, 1)).
    pub fn new(a: Grid, b: Grid, out: Grid, range: (i32, i32)) -> Option<Add> {
        // The same mixture of f32 and f64 as add.cc's Prepare.
        let twice_max = (2.0 * a.scale.max(b.scale)) as f64;
        let below_one =
            |real: f64| Multiplier::new(real).filter(|m| real < 1.0 && real > 0.0 && m.shift <= 0);
        Some(Add {
            offsets: [-a.zero_point, -b.zero_point],
            inputs: [
                below_one(a.scale as f64 / twice_max)?,
                below_one(b.scale as f64 / twice_max)?,
            ],
            output: below_one(twice_max / ((1 << LEFT_SHIFT) as f32 * out.scale) as f64)?,
            zero_point: out.zero_point,
            range,
        })
    }

    /// `a`, `b` and `out` have the same length; runs of elements are split between the
    /// session's threads.
    pub fn run(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        assert!(a.len() == out.len() && b.len() == out.len(), "ADD sizes");
        // Every shift is a right shift (checked in `new`), in the branch-free form that
        // vectorizes.
        let apply = |m: Multiplier, x: i32| double(x, m.mult, 0, -m.shift);
        let scaled =
            |x: i8, i: usize| apply(self.inputs[i], (x as i32 + self.offsets[i]) << LEFT_SHIFT);
        let whole = out.len() - out.len() % RUN;
        let (body, tail) = out.split_at_mut(whole);
        let part = |first: usize, out: &mut [i8]| {
            let (a, b) = (&a[first..][..out.len()], &b[first..][..out.len()]);
            for i in 0..out.len() {
                let sum = scaled(a[i], 0) + scaled(b[i], 1);
                let v = apply(self.output, sum) + self.zero_point;
                out[i] = v.clamp(self.range.0, self.range.1) as i8;
            }
        };
        threads::split_mut(body, RUN, whole, |first, out| part(first * RUN, out));
        part(whole, tail);
    }
}
