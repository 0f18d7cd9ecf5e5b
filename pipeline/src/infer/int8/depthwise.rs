//! DEPTHWISE_CONV_2D (depth multiplier 1), any filter size and stride, in plain Rust whose
//! inner loops run along the channels so they vectorize (x86-64-v3, aarch64 NEON).
//!
//! Per output pixel: the bias, then one multiply-add per filter tap over all channels, then the
//! requantization as LiteRT's builtin kernel does it (ties of the final shift upward).
//! The input's zero point is folded into the bias for all taps at load; a tap in the padding
//! reads a row of zero points instead of being skipped, which adds back exactly what the
//! folding took away, so every pixel runs the same loop.

use tract_linalg::multithread::par_chunks_mut;
use tract_tflite::internal::TractResult;

use super::requant::{Requant, Rounding};
use super::window::Window;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Depthwise {
    window: Window,
    input_zero_point: i8,
    /// `[kh][kw][channels]`, as TFLite stores the filter (`[1][kh][kw][channels]`).
    weights: Vec<i8>,
    /// `bias − zero_point · Σ_taps w`, per channel.
    bias: Vec<i32>,
    requant: Requant,
}

impl Depthwise {
    pub fn new(
        window: Window,
        input_zero_point: i8,
        weights: Vec<i8>,
        bias: &[i32],
        requant: Requant,
    ) -> Depthwise {
        let c = window.input[2];
        let bias = (0..c)
            .map(|ch| {
                let sum: i32 = weights.iter().skip(ch).step_by(c).map(|&w| w as i32).sum();
                bias[ch] - input_zero_point as i32 * sum
            })
            .collect();
        Depthwise {
            window,
            input_zero_point,
            weights,
            bias,
            requant,
        }
    }

    pub fn run(&self, x: &[i8], out: &mut [i8]) -> TractResult<()> {
        let w = self.window;
        let [_, in_w, c] = w.input;
        let [_, out_w] = w.output;
        let [kh, kw] = w.filter;
        let work = out.len() * kh * kw;
        par_chunks_mut(out, out_w * c, work, |first_row, rows| {
            let zeros = vec![self.input_zero_point; c];
            let mut acc = vec![0i32; c];
            for (i, row) in rows.chunks_exact_mut(out_w * c).enumerate() {
                let oy = first_row + i;
                for (ox, pixel) in row.chunks_exact_mut(c).enumerate() {
                    acc.copy_from_slice(&self.bias);
                    for ky in 0..kh {
                        let iy = w.source(0, oy, ky);
                        for kx in 0..kw {
                            let src = match (iy, w.source(1, ox, kx)) {
                                (Some(iy), Some(ix)) => &x[(iy * in_w + ix) * c..][..c],
                                _ => &zeros[..],
                            };
                            multiply_add(&mut acc, src, &self.weights[(ky * kw + kx) * c..][..c]);
                        }
                    }
                    self.requant.row(Rounding::Up, &acc, pixel);
                }
            }
            Ok(())
        })
    }
}

/// `acc[i] += x[i] · w[i]`; an int8 product fits int16, so the multiply runs on 16-bit lanes.
#[inline(always)]
fn multiply_add(acc: &mut [i32], x: &[i8], w: &[i8]) {
    let n = acc.len();
    let (x, w) = (&x[..n], &w[..n]);
    for i in 0..n {
        acc[i] += (x[i] as i16 * w[i] as i16) as i32;
    }
}

#[cfg(test)]
mod tests {
    use tract_tflite::tflite::Padding;

    use super::super::conv::tests::{multipliers, Rng};
    use super::*;

    #[test]
    fn depthwise_matches_tflite_reference_loops() {
        let mut rng = Rng(0x2545f4914f6cdd1d);
        for (input, filter, stride) in [
            ([10, 10, 24], [3, 3], [1, 1]),
            ([12, 12, 19], [3, 3], [2, 2]),
            ([9, 9, 40], [5, 5], [1, 1]),
            ([13, 13, 7], [5, 5], [2, 2]),
        ] {
            let w = Window::new(input, filter, stride, Padding::SAME).unwrap();
            let c = input[2];
            let x = rng.i8s(input.iter().product());
            let weights = rng.i8s(filter[0] * filter[1] * c);
            let bias: Vec<i32> = (0..c).map(|_| rng.next() as i32 >> 18).collect();
            let zp = rng.next() as i8;
            let rq = Requant::new(&multipliers(&mut rng, c), 5, (-128, 127));
            // TFLite's DepthwiseConv: taps outside the input skipped, `(x − zp) · w`.
            let mut want = vec![];
            for oy in 0..w.output[0] {
                for ox in 0..w.output[1] {
                    for ch in 0..c {
                        let mut acc = bias[ch];
                        for ky in w.taps(0, oy) {
                            for kx in w.taps(1, ox) {
                                let (iy, ix) =
                                    (w.source(0, oy, ky).unwrap(), w.source(1, ox, kx).unwrap());
                                let v = x[(iy * input[1] + ix) * c + ch] as i32 - zp as i32;
                                acc += v * weights[(ky * filter[1] + kx) * c + ch] as i32;
                            }
                        }
                        let v = rq.multiplier(ch).apply_double_up(acc) + rq.zero_point;
                        want.push(v.clamp(rq.min, rq.max) as i8);
                    }
                }
            }
            let dw = Depthwise::new(w, zp, weights, &bias, rq);
            let mut got = vec![0; want.len()];
            dw.run(&x, &mut got).unwrap();
            assert_eq!(got, want, "{input:?} {filter:?}/{stride:?}");
        }
    }
}
