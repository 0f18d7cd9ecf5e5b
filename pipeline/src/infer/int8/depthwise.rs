//! DEPTHWISE_CONV_2D (depth multiplier 1), any filter size and stride.
//!
//! Per output pixel: the bias, one multiply-add per filter tap over the channels, then the
//! requantization as LiteRT's builtin kernel does it (ties of the final shift upward). The
//! input's zero point is folded into the bias for all taps at load; a tap in the padding reads
//! a row of zero points instead of being skipped, which adds back exactly what the folding took
//! away, so every pixel runs the same loop.
//!
//! Two versions, the same arithmetic:
//! - portable Rust whose inner loops run along the channels (`smull`/`saddw` on aarch64 NEON,
//!   16-bit multiplies on x86-64-v3);
//! - AVX2 intrinsics for channel counts that are multiples of 16: two taps per `vpmaddwd`,
//!   the accumulators kept in registers across all taps, the requantization in registers too.
//!   Measured on Lite0's 16 depthwise layers (thread CPU time, same sitting): 2.3 ms against
//!   4.0 ms for the portable version, whose 32-bit multiplies LLVM cannot turn into
//!   `vpmaddwd` pairs on its own.

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::Level;
use super::requant::{Requant, Rounding};
use super::threads;
use super::window::Window;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Depthwise {
    window: Window,
    input_zero_point: i8,
    /// Widened to int16 (an int8 product fits int16, so the multiplies run on 16-bit lanes).
    /// Portable: `[kh][kw][channels]`, as TFLite stores the filter. AVX2: see [`avx2::pack`].
    weights: Vec<i16>,
    /// Per filter tap, the offset of its input pixel from the window's first, in values.
    offsets: Vec<usize>,
    /// `bias − zero_point · Σ_taps w`, per channel (AVX2: in its lane order).
    bias: Vec<i32>,
    requant: Requant,
    isa: Isa,
}

impl Depthwise {
    pub fn new(
        window: Window,
        input_zero_point: i8,
        weights: &[i8],
        bias: &[i32],
        requant: Requant,
        // Only x86-64 has a kernel to choose (an aarch64 build, checked by check_macos.sh).
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))] isa: Isa,
    ) -> Depthwise {
        let c = window.input[2];
        let [kh, kw] = window.filter;
        let offsets = (0..kh * kw)
            .map(|t| ((t / kw) * window.input[1] + t % kw) * c)
            .collect();
        let bias: Vec<i32> = (0..c)
            .map(|ch| {
                let sum: i32 = weights.iter().skip(ch).step_by(c).map(|&w| w as i32).sum();
                bias[ch] - input_zero_point as i32 * sum
            })
            .collect();
        #[cfg(target_arch = "x86_64")]
        if c.is_multiple_of(16) {
            let isa = isa.best_of(&[Level::Avx2]);
            if isa.level() == Level::Avx2 {
                let taps = window.filter[0] * window.filter[1];
                return Depthwise {
                    window,
                    input_zero_point,
                    weights: avx2::pack(weights, c, taps),
                    offsets,
                    bias: avx2::permute(&bias),
                    requant,
                    isa,
                };
            }
        }
        let _ = isa;
        Depthwise {
            window,
            input_zero_point,
            weights: weights.iter().map(|&w| w as i16).collect(),
            offsets,
            bias,
            requant,
            isa: Isa::portable(),
        }
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The instruction set of the version that runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `x` is the input image, `out` the output image, both NHWC as the window says. Output
    /// pixels are split between the session's threads.
    pub fn run(&self, x: &[i8], out: &mut [i8]) {
        let w = self.window;
        let [in_h, in_w, c] = w.input;
        let [out_h, out_w] = w.output;
        let [kh, kw] = w.filter;
        assert_eq!(x.len(), in_h * in_w * c, "depthwise input size");
        assert_eq!(out.len(), out_h * out_w * c, "depthwise output size");
        threads::split_mut(out, c, out.len() * kh * kw, |first, pixels| {
            let zeros = vec![self.input_zero_point; c];
            let mut acc = vec![0i32; c];
            let mut taps = vec![&zeros[..]; kh * kw + 1];
            for (i, pixel) in pixels.chunks_exact_mut(c).enumerate() {
                let (oy, ox) = ((first + i) / out_w, (first + i) % out_w);
                match (w.inside(0, oy), w.inside(1, ox)) {
                    // The whole window on the image: every tap at its fixed offset.
                    (Some(iy), Some(ix)) => {
                        let at = &x[(iy * in_w + ix) * c..];
                        for (tap, &offset) in taps.iter_mut().zip(&self.offsets) {
                            *tap = &at[offset..][..c];
                        }
                    }
                    _ => {
                        for ky in 0..kh {
                            let iy = w.source(0, oy, ky);
                            for kx in 0..kw {
                                taps[ky * kw + kx] = match (iy, w.source(1, ox, kx)) {
                                    (Some(iy), Some(ix)) => &x[(iy * in_w + ix) * c..][..c],
                                    _ => &zeros[..],
                                };
                            }
                        }
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if self.isa.level() == Level::Avx2 {
                    // SAFETY: this version is only chosen where the CPU has AVX2, for a
                    // channel count that is a multiple of 16; `taps` holds one more row (of
                    // zero points) for an odd tap count, as the pairs read.
                    unsafe { avx2::pixel(self, &taps, pixel) };
                    continue;
                }
                acc.copy_from_slice(&self.bias);
                for (tap, src) in taps[..kh * kw].iter().enumerate() {
                    multiply_add(&mut acc, src, &self.weights[tap * c..][..c]);
                }
                self.requant.row(Rounding::Up, 0, &acc, pixel);
            }
        });
    }
}

/// `acc[i] += x[i] · w[i]`; an int8 product fits int16, so the multiply can run on 16-bit
/// lanes.
#[inline(always)]
fn multiply_add(acc: &mut [i32], x: &[i8], w: &[i16]) {
    let n = acc.len();
    let (x, w) = (&x[..n], &w[..n]);
    for i in 0..n {
        acc[i] += (x[i] as i16 * w[i]) as i32;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::requant::avx2::{apply8, narrow16, params8};
    use super::Depthwise;

    /// `vpunpcklwd` / `vpunpckhwd` interleave within 128-bit lanes: the low half of a block's
    /// products holds channels 0–3 and 8–11, the high half 4–7 and 12–15.
    const LANES: [usize; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];

    /// `[16-channel block][tap pair][32 bytes]`: per pair, the two taps' weights of each
    /// channel side by side in [`LANES`] order, so that widening each 16 bytes gives what
    /// `vpmaddwd` multiplies the interleaved inputs by. An odd tap count gets a zero tap.
    pub fn pack(w: &[i8], c: usize, taps: usize) -> Vec<i16> {
        let pairs = taps.div_ceil(2);
        let mut packed = vec![0i16; c / 16 * pairs * 32];
        for b in 0..c / 16 {
            for p in 0..pairs {
                for (i, &lane) in LANES.iter().enumerate() {
                    for t in 0..2 {
                        let tap = 2 * p + t;
                        if tap < taps {
                            packed[(b * pairs + p) * 32 + i * 2 + t] =
                                w[tap * c + b * 16 + lane] as i16;
                        }
                    }
                }
            }
        }
        packed
    }

    /// Per-channel values in [`LANES`] order, block by block.
    pub fn permute(v: &[i32]) -> Vec<i32> {
        v.chunks_exact(16)
            .flat_map(|block| LANES.map(|lane| block[lane]))
            .collect()
    }

    /// One output pixel, all channels.
    ///
    /// # Safety
    /// The CPU must have AVX2; the channel count is a multiple of 16; `taps` holds an even
    /// number of rows (the tap count rounded up, the extra one of zero points) of at least the
    /// channel count each; `out` holds the channel count.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pixel(d: &Depthwise, taps: &[&[i8]], out: &mut [i8]) {
        let c = d.window.input[2];
        let pairs = taps.len() / 2;
        for b in 0..c / 16 {
            let ch = b * 16;
            let mut lo = _mm256_loadu_si256(d.bias.as_ptr().add(ch) as *const _);
            let mut hi = _mm256_loadu_si256(d.bias.as_ptr().add(ch + 8) as *const _);
            let w = d.weights.as_ptr().add(b * pairs * 32);
            for p in 0..pairs {
                let load = |src: &[i8]| {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(src.as_ptr().add(ch) as *const _))
                };
                let (x0, x1) = (load(taps[2 * p]), load(taps[2 * p + 1]));
                let w0 = _mm256_loadu_si256(w.add(p * 32) as *const _);
                let w1 = _mm256_loadu_si256(w.add(p * 32 + 16) as *const _);
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w0));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w1));
            }
            // Back to channel order: 0–7, then 8–15.
            let rq = &d.requant;
            let q0 = apply8::<true>(&params8(rq, ch), _mm256_permute2x128_si256(lo, hi, 0x20));
            let q1 = apply8::<true>(
                &params8(rq, ch + 8),
                _mm256_permute2x128_si256(lo, hi, 0x31),
            );
            _mm_storeu_si128(out.as_mut_ptr().add(ch) as *mut _, narrow16(rq, q0, q1));
        }
    }
}

#[cfg(test)]
mod tests {
    use tract_tflite::tflite::Padding;

    use super::super::conv::tests::{multipliers, Rng};
    use super::super::threads::{scope, Pool};
    use super::*;

    /// Edge shapes (1 channel, channels off the vector width, a 1×1 image, windows larger
    /// than the image) and the committed models' kinds, in every version this CPU runs, inline
    /// and split between 2 and 3 threads.
    #[test]
    fn every_version_and_split_matches_tflite_reference_loops() {
        let mut rng = Rng(0x2545f4914f6cdd1d);
        let pools: Vec<Option<Pool>> = [1, 2, 3].map(|t| Pool::with_min_work(t, 0).unwrap()).into();
        for (input, filter, stride) in [
            ([10, 10, 32], [3, 3], [1, 1]),
            ([12, 12, 19], [3, 3], [2, 2]),
            ([9, 9, 48], [5, 5], [1, 1]),
            ([13, 13, 7], [5, 5], [2, 2]),
            ([6, 6, 16], [3, 3], [2, 2]),
            ([5, 4, 1], [3, 3], [1, 1]),
            ([1, 1, 1], [3, 3], [1, 1]),
            ([1, 1, 32], [5, 5], [2, 2]),
            ([2, 3, 17], [3, 3], [2, 2]),
            ([7, 7, 1152], [5, 5], [1, 1]),
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
                                let iy = w.source(0, oy, ky).unwrap();
                                let ix = w.source(1, ox, kx).unwrap();
                                let v = x[(iy * input[1] + ix) * c + ch] as i32 - zp as i32;
                                acc += v * weights[(ky * filter[1] + kx) * c + ch] as i32;
                            }
                        }
                        let v = rq.multiplier(ch).apply_double_up(acc) + rq.zero_point;
                        want.push(v.clamp(rq.min, rq.max) as i8);
                    }
                }
            }
            for isa in Isa::available() {
                let dw = Depthwise::new(w, zp, &weights, &bias, rq.clone(), isa);
                for pool in &pools {
                    let mut got = vec![0; want.len()];
                    scope(pool.as_ref(), || dw.run(&x, &mut got));
                    let threads = pool.as_ref().map_or(1, Pool::threads);
                    assert_eq!(
                        got, want,
                        "{isa:?} {input:?} {filter:?}/{stride:?} {threads}"
                    );
                }
            }
        }
    }
}
