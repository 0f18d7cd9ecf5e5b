//! The int8 GEMM behind CONV_2D: `out[r][c] = requant(bias[c] + Σ_k (x[r][k] − zp) · w[c][k])`,
//! rows being output pixels (an input row for a 1×1 convolution, an im2col patch otherwise) and
//! columns output channels, requantized as LiteRT's builtin CONV_2D does (ties of the final
//! shift upward, [`Multiplier::apply_double_up`](super::quant::Multiplier::apply_double_up)).
//!
//! The weights are packed once at load, in int8, for the kernel this CPU runs, and the input's
//! zero point is folded into the bias then. Two kernels:
//! - portable Rust: a small tile of dot products along `k`, which LLVM turns into `sdot` on
//!   arm64 (Apple M1 and later) and vectorizes on x86-64-v3. Weights stay in the file's
//!   `[c][k]` order.
//! - [`Isa::Avx512Vnni`]: `vpdpbusd` intrinsics, where the CPU has AVX-512 VNNI. It was
//!   measured to pay: Lite0's 33 pointwise convolutions ran at 150–220
//!   GMAC/s per layer against 12 for the plain kernel and 55 for tract-linalg's own VNNI kernel
//!   (which also packs the activations per call and cannot requantize per channel in its
//!   epilogue). `vpdpbusd` multiplies unsigned by signed bytes, so activations are shifted by
//!   128 (`x ^ 0x80`) as they are staged and the extra `128 · Σw` is folded into the bias.

use tract_linalg::multithread::par_chunks_mut;
use tract_tflite::internal::TractResult;

use super::isa::Isa;
use super::requant::{Requant, Rounding};

/// Rows staged per tile; the VNNI kernel keeps ROWS × 2 zmm accumulators in registers.
const ROWS: usize = 12;

/// One convolution's weights, packed, with its folded bias and requantization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gemm {
    /// Output channels.
    m: usize,
    /// Reduction length (kh · kw · input channels), and it rounded up to a multiple of 4.
    k: usize,
    kp: usize,
    /// [`Isa::Avx512Vnni`] or [`Isa::Portable`].
    isa: Isa,
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Requant,
    /// The VNNI epilogue's per-channel constants; empty for the plain kernel.
    epilogue: Vec<i64>,
}

impl Gemm {
    /// `weights` is `[m][k]` as TFLite stores a convolution's filter (`[m][kh][kw][cin]`),
    /// `bias` its int32 bias, `input_zero_point` the activations' zero point.
    pub fn new(
        weights: &[i8],
        m: usize,
        k: usize,
        bias: &[i32],
        input_zero_point: i32,
        requant: Requant,
        isa: Isa,
    ) -> Gemm {
        #[cfg(target_arch = "x86_64")]
        let vnni = isa >= Isa::Avx512Vnni;
        #[cfg(not(target_arch = "x86_64"))]
        let vnni = false;
        let isa = if vnni { isa } else { Isa::Portable };
        assert_eq!(weights.len(), m * k);
        let sums = weights
            .chunks_exact(k)
            .map(|w| w.iter().map(|&v| v as i32).sum::<i32>());
        let offset = input_zero_point + if vnni { 128 } else { 0 };
        let bias = bias
            .iter()
            .zip(sums)
            .map(|(&b, s)| b - offset * s)
            .collect();
        let kp = k.div_ceil(4) * 4;
        let (weights, epilogue) = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => (
                avx512::pack(weights, m, k, kp),
                avx512::epilogue(&requant, m),
            ),
            _ => (weights.to_vec(), vec![]),
        };
        Gemm {
            m,
            k,
            kp,
            isa,
            weights,
            bias,
            requant,
            epilogue,
        }
    }

    /// The instruction set the kernel was packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Computes `out` (`rows × m`, row-major): `fill(r, dst)` writes input row `r` (`k` values)
    /// into `dst`. Rows are split between tract's threads when it runs with more than one.
    pub fn run(
        &self,
        rows: usize,
        fill: &(dyn Fn(usize, &mut [i8]) + Sync),
        out: &mut [i8],
    ) -> TractResult<()> {
        debug_assert_eq!(out.len(), rows * self.m);
        par_chunks_mut(out, self.m, rows * self.m * self.k, |first, chunk| {
            let mut staged = vec![0i8; ROWS * self.kp];
            let mut acc = vec![0i32; ROWS * self.m];
            let count = chunk.len() / self.m;
            for r0 in (0..count).step_by(ROWS) {
                let n = ROWS.min(count - r0);
                for r in 0..n {
                    fill(first + r0 + r, &mut staged[r * self.kp..][..self.k]);
                }
                let out = &mut chunk[r0 * self.m..][..n * self.m];
                match self.isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: this level is only chosen where the CPU has AVX-512 VNNI.
                    Isa::Avx512Vnni => unsafe {
                        avx512::tile(self, &mut staged[..n * self.kp], n, out)
                    },
                    _ => self.portable_tile(&staged, n, &mut acc, out),
                }
            }
            Ok(())
        })
    }

    fn portable_tile(&self, staged: &[i8], n: usize, acc: &mut [i32], out: &mut [i8]) {
        let (k, kp, m) = (self.k, self.kp, self.m);
        let row = |r: usize| &staged[r * kp..][..k];
        let filter = |c: usize| &self.weights[c * k..][..k];
        let mut r = 0;
        while r < n {
            let pair = n - r >= 2;
            let mut c = 0;
            while c < m {
                if pair && m - c >= 4 {
                    let d =
                        dots::<2, 4>([row(r), row(r + 1)], std::array::from_fn(|i| filter(c + i)));
                    for (i, d) in d.iter().enumerate() {
                        acc[(r + i) * m + c..][..4].copy_from_slice(d);
                    }
                    c += 4;
                } else {
                    for i in 0..if pair { 2 } else { 1 } {
                        acc[(r + i) * m + c] = dots::<1, 1>([row(r + i)], [filter(c)])[0][0];
                    }
                    c += 1;
                }
            }
            r += if pair { 2 } else { 1 };
        }
        for (acc, out) in acc.chunks_exact_mut(m).zip(out.chunks_exact_mut(m)) {
            acc.iter_mut().zip(&self.bias).for_each(|(a, b)| *a += b);
            self.requant.row(Rounding::Up, acc, out);
        }
    }
}

/// `R × C` dot products of length `k`, in one loop so each is a vector reduction (`sdot` on
/// arm64 with the dot-product extension).
#[inline(always)]
fn dots<const R: usize, const C: usize>(x: [&[i8]; R], w: [&[i8]; C]) -> [[i32; C]; R] {
    let k = x[0].len();
    let x = x.map(|x| &x[..k]);
    let w = w.map(|w| &w[..k]);
    let mut s = [[0i32; C]; R];
    for i in 0..k {
        for r in 0..R {
            for c in 0..C {
                s[r][c] += x[r][i] as i32 * w[c][i] as i32;
            }
        }
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Gemm, Requant, ROWS};

    /// Output channels per block: two zmm registers of int32.
    const BLOCK: usize = 32;

    /// `[block][k / 4][32 channels][4 k]`: one 64-byte row per 16 channels and 4 steps of `k`,
    /// as `vpdpbusd` consumes them; padding channels and steps are zero.
    pub fn pack(w: &[i8], m: usize, k: usize, kp: usize) -> Vec<i8> {
        let blocks = m.div_ceil(BLOCK);
        let mut packed = vec![0i8; blocks * kp * BLOCK];
        for c in 0..m {
            let (b, lane) = (c / BLOCK, c % BLOCK);
            for (i, &v) in w[c * k..][..k].iter().enumerate() {
                packed[b * kp * BLOCK + (i / 4) * BLOCK * 4 + lane * 4 + i % 4] = v;
            }
        }
        packed
    }

    /// Per 16 channels, as int64: the 16 left shifts and the 16 multipliers as int32 pairs in
    /// lane order, then the final rounding addend and right shift of the even lanes and of the
    /// odd lanes (`vpmuldq` multiplies the even int32 lanes): 48 int64.
    pub fn epilogue(rq: &Requant, m: usize) -> Vec<i64> {
        let groups = m.div_ceil(BLOCK) * BLOCK / 16;
        let mut e = vec![0i64; groups * 48];
        for g in 0..groups {
            let at = &mut e[g * 48..][..48];
            for lane in 0..16 {
                let c = g * 16 + lane;
                let m = if c < m {
                    rq.multiplier(c)
                } else {
                    Default::default()
                };
                let (left, right) = (m.shift.max(0), (-m.shift).max(0) as i64);
                let pair = |v: i32| ((v as u32 as u64) << (32 * (lane % 2))) as i64;
                at[lane / 2] |= pair(left);
                at[8 + lane / 2] |= pair(m.mult);
                let half = lane / 2 + if lane % 2 == 0 { 0 } else { 8 };
                at[16 + half] = (1 << right) >> 1;
                at[32 + half] = right;
            }
        }
        e
    }

    /// One tile of `n` rows staged in `x` (signed; shifted to unsigned here), all channel
    /// blocks, requantized into `out` (`n × m`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn tile(g: &Gemm, x: &mut [i8], n: usize, out: &mut [i8]) {
        for v in x.iter_mut() {
            *v ^= i8::MIN;
        }
        let blocks = g.m.div_ceil(BLOCK);
        for b in 0..blocks {
            if n == ROWS {
                block::<ROWS>(g, x, b, out);
            } else {
                for r in 0..n {
                    block::<1>(g, &x[r * g.kp..], b, &mut out[r * g.m..]);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn block<const R: usize>(g: &Gemm, x: &[i8], b: usize, out: &mut [i8]) {
        let kp = g.kp;
        let w = g.weights.as_ptr().add(b * kp * BLOCK);
        let x = x.as_ptr();
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for q in 0..kp / 4 {
            let w0 = _mm512_loadu_si512(w.add(q * 4 * BLOCK) as *const _);
            let w1 = _mm512_loadu_si512(w.add(q * 4 * BLOCK + 64) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let xq = _mm512_set1_epi32((x.add(r * kp + q * 4) as *const i32).read_unaligned());
                acc[0] = _mm512_dpbusd_epi32(acc[0], xq, w0);
                acc[1] = _mm512_dpbusd_epi32(acc[1], xq, w1);
            }
        }
        for half in 0..2 {
            let c0 = b * BLOCK + half * 16;
            if c0 >= g.m {
                break;
            }
            let lanes = (g.m - c0).min(16);
            let mask: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
            let e = g.epilogue.as_ptr().add(c0 / 16 * 48);
            let bias = _mm512_maskz_loadu_epi32(mask, g.bias.as_ptr().add(c0) as *const _);
            for (r, acc) in acc.iter().enumerate() {
                let v = requantize(_mm512_add_epi32(acc[half], bias), e, &g.requant);
                _mm_mask_storeu_epi8(out.as_mut_ptr().add(r * g.m + c0) as *mut _, mask, v);
            }
        }
    }

    /// [`Multiplier::apply_double_up`](super::super::quant::Multiplier::apply_double_up) on 16
    /// lanes in int64 halves, then the zero point, the clamp and a saturating narrowing to int8.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn requantize(v: __m512i, e: *const i64, rq: &Requant) -> __m128i {
        let [left, mult, round_even, round_odd, right_even, right_odd] =
            [0, 1, 2, 3, 4, 5].map(|i| _mm512_loadu_si512(e.add(i * 8) as *const _));
        let v = _mm512_sllv_epi32(v, left);
        let even = _mm512_mul_epi32(v, mult);
        let odd = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(mult, 32));
        let finish = |ab: __m512i, round: __m512i, right: __m512i| {
            // SaturatingRoundingDoublingHighMul: + 2^30, or + 1 − 2^30 below zero, then ÷ 2^31
            // truncating toward zero.
            let negative = _mm512_srai_epi64(ab, 63);
            let nudge = _mm512_add_epi64(
                _mm512_set1_epi64(1 << 30),
                _mm512_and_si512(negative, _mm512_set1_epi64(1 - (1 << 31))),
            );
            let q = _mm512_add_epi64(ab, nudge);
            let toward_zero =
                _mm512_and_si512(_mm512_srai_epi64(q, 63), _mm512_set1_epi64((1 << 31) - 1));
            let high = _mm512_srai_epi64(_mm512_add_epi64(q, toward_zero), 31);
            _mm512_srav_epi64(_mm512_add_epi64(high, round), right)
        };
        let even = finish(even, round_even, right_even);
        let odd = finish(odd, round_odd, right_odd);
        let v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
        let v = _mm512_add_epi32(v, _mm512_set1_epi32(rq.zero_point));
        let v = _mm512_max_epi32(v, _mm512_set1_epi32(rq.min));
        let v = _mm512_min_epi32(v, _mm512_set1_epi32(rq.max));
        _mm512_cvtsepi32_epi8(v)
    }
}
