//! CONV_2D as int8 GEMM: a 1×1 stride-1 convolution multiplies the input rows as they are;
//! any other (the 3×3 stride-2 stem) gathers each output pixel's patch (im2col), padding
//! with the input's zero point — a real zero, as TFLite pads.

use super::gemm::Gemm;
use super::isa::Isa;
use super::requant::Requant;
use super::window::Window;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conv {
    pub window: Window,
    pub input_zero_point: i8,
    /// `[out channels][kh][kw][in channels]` as a GEMM over patches.
    pub gemm: Gemm,
}

impl Conv {
    /// `weights` is the filter as TFLite stores it, `[out channels][kh][kw][in channels]`;
    /// the output channels are `bias.len()`.
    pub fn new(
        window: Window,
        input_zero_point: i8,
        weights: &[i8],
        bias: &[i32],
        requant: Requant,
        isa: Isa,
    ) -> Conv {
        let k = window.filter[0] * window.filter[1] * window.input[2];
        let zp = input_zero_point as i32;
        Conv {
            window,
            input_zero_point,
            gemm: Gemm::new(weights, bias.len(), k, bias, zp, requant, isa),
        }
    }

    /// Whether the input rows are the GEMM's rows as they lie in memory.
    fn pointwise(&self) -> bool {
        let w = &self.window;
        w.filter == [1, 1] && w.stride == [1, 1] && w.pad == [0, 0]
    }

    /// `x` is the input image, `out` the output image, both NHWC as the window says.
    pub fn run(&self, x: &[i8], out: &mut [i8]) {
        let w = self.window;
        let [in_h, in_w, cin] = w.input;
        assert_eq!(x.len(), in_h * in_w * cin, "convolution input size");
        let [out_h, out_w] = w.output;
        let rows = out_h * out_w;
        if self.pointwise() {
            return self.gemm.run(
                rows,
                &|r, dst| dst.copy_from_slice(&x[r * cin..][..cin]),
                out,
            );
        }
        let zero = self.input_zero_point;
        let im2col = |r: usize, dst: &mut [i8]| {
            let (oy, ox) = (r / out_w, r % out_w);
            for (ky, dst) in dst.chunks_exact_mut(w.filter[1] * cin).enumerate() {
                for (kx, dst) in dst.chunks_exact_mut(cin).enumerate() {
                    match (w.source(0, oy, ky), w.source(1, ox, kx)) {
                        (Some(iy), Some(ix)) => {
                            dst.copy_from_slice(&x[(iy * in_w + ix) * cin..][..cin])
                        }
                        _ => dst.fill(zero),
                    }
                }
            }
        };
        self.gemm.run(rows, &im2col, out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use tract_tflite::tflite::Padding;

    use super::super::isa::Isa;
    use super::super::quant::Multiplier;
    use super::super::requant::Requant;
    use super::*;

    /// A deterministic stream of test values.
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn i8s(&mut self, n: usize) -> Vec<i8> {
            (0..n).map(|_| self.next() as i8).collect()
        }
        pub fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    /// A convolution written out: every tap inside the input, `(x − zp) · w`, the bias, the
    /// requantization LiteRT's builtin kernel uses, the zero point, the clamp.
    fn reference(
        w: &Window,
        x: &[i8],
        zp: i32,
        weights: &[i8],
        bias: &[i32],
        rq: &Requant,
    ) -> Vec<i8> {
        let [_, in_w, cin] = w.input;
        let [kh, kw] = w.filter;
        let cout = bias.len();
        let mut out = vec![];
        for oy in 0..w.output[0] {
            for ox in 0..w.output[1] {
                for co in 0..cout {
                    let mut acc = bias[co];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            if let (Some(iy), Some(ix)) = (w.source(0, oy, ky), w.source(1, ox, kx))
                            {
                                for ci in 0..cin {
                                    let v = x[(iy * in_w + ix) * cin + ci] as i32 - zp;
                                    acc +=
                                        v * weights[((co * kh + ky) * kw + kx) * cin + ci] as i32;
                                }
                            }
                        }
                    }
                    let v = rq.multiplier(co).apply_double_up(acc) + rq.zero_point;
                    out.push(v.clamp(rq.min, rq.max) as i8);
                }
            }
        }
        out
    }

    pub fn multipliers(rng: &mut Rng, n: usize) -> Vec<Multiplier> {
        (0..n)
            .map(|_| Multiplier::new(1e-4 * (1 + rng.below(300)) as f64).unwrap())
            .collect()
    }

    #[test]
    fn every_gemm_version_matches_the_scalar_reference() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        // Shapes that leave partial row tiles, channel blocks and k groups.
        let cases = [
            ([5, 7, 13], [1, 1], [1, 1], 37),
            ([13, 3, 32], [1, 1], [1, 1], 64),
            ([12, 12, 3], [3, 3], [2, 2], 16),
            ([11, 9, 5], [3, 3], [2, 2], 33),
            ([6, 6, 8], [3, 3], [1, 1], 8),
            ([1, 1, 96], [1, 1], [1, 1], 100),
            ([5, 7, 1], [3, 3], [1, 1], 1),
            ([1, 1, 3], [3, 3], [2, 2], 5),
            ([4, 4, 1], [1, 1], [1, 1], 3),
        ];
        for (input, filter, stride, cout) in cases {
            let w = Window::new(input, filter, stride, Padding::SAME).unwrap();
            let k = filter[0] * filter[1] * input[2];
            let x = rng.i8s(input.iter().product());
            let weights: Vec<i8> = rng.i8s(cout * k).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..cout).map(|_| rng.next() as i32 >> 16).collect();
            let zp = rng.next() as i8 as i32;
            let rq = Requant::new(&multipliers(&mut rng, cout), -3, (-128, 100));
            let want = reference(&w, &x, zp, &weights, &bias, &rq);
            for isa in Isa::available() {
                let conv = Conv::new(w, zp as i8, &weights, &bias, rq.clone(), isa);
                let mut got = vec![0; want.len()];
                conv.run(&x, &mut got);
                assert_eq!(
                    got, want,
                    "{isa:?} {input:?} {filter:?}/{stride:?} → {cout}"
                );
            }
        }
    }
}
