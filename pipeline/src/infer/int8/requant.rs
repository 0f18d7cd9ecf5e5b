//! Per-channel requantization of a row of int32 accumulators to int8, in the loop shape the
//! compiler vectorizes (no branches, one 64-bit product per lane), checked against the literal
//! definitions in [`super::quant`].

use super::quant::Multiplier;

/// What the per-channel parameters are padded to a multiple of.
const PAD: usize = 32;

/// Per-output-channel multipliers and the output grid's zero point and clamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requant {
    /// The fixed-point multiplier of each channel.
    mult: Vec<i32>,
    /// Per channel: the left shift before and the right shift after the multiply (one is 0).
    left: Vec<i32>,
    right: Vec<i32>,
    /// For vector code: `max(right − 1, 0)`, and 1 where `right > 0` (else 0).
    below: Vec<i32>,
    rounds: Vec<i32>,
    pub zero_point: i32,
    pub min: i32,
    pub max: i32,
}

/// How an op's LiteRT kernel breaks ties in the final shift (see [`super::quant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Away from zero: [`Multiplier::apply_double`].
    Away,
    /// Upward: [`Multiplier::apply_double_up`].
    Up,
}

impl Requant {
    pub fn new(multipliers: &[Multiplier], zero_point: i32, (min, max): (i32, i32)) -> Requant {
        // Padded to whole blocks of 32 channels (with a multiplier of 0), so vector code may
        // load a full vector at any block's last channels.
        let padded = |f: fn(&Multiplier) -> i32| {
            let mut v: Vec<i32> = multipliers.iter().map(f).collect();
            v.resize(multipliers.len().div_ceil(PAD) * PAD, 0);
            v
        };
        Requant {
            mult: padded(|m| m.mult),
            left: padded(|m| m.shift.max(0)),
            right: padded(|m| (-m.shift).max(0)),
            below: padded(|m| (-m.shift - 1).max(0)),
            rounds: padded(|m| (m.shift < 0) as i32),
            zero_point,
            min,
            max,
        }
    }

    /// The per-channel multipliers, left shifts, right shifts, and the rounding's shift and
    /// mask, for vector code: each at least the channel count rounded up to a multiple of 32.
    pub fn params(&self) -> [&[i32]; 5] {
        [
            &self.mult,
            &self.left,
            &self.right,
            &self.below,
            &self.rounds,
        ]
    }

    /// Whether any channel shifts left before its multiply (a factor of 1 or more).
    pub fn shifts_left(&self) -> bool {
        self.left.iter().any(|&l| l != 0)
    }

    /// The multiplier of channel `c`, as [`Multiplier`] holds it.
    pub fn multiplier(&self, c: usize) -> Multiplier {
        Multiplier {
            mult: self.mult[c],
            shift: self.left[c] - self.right[c],
        }
    }

    /// `out[i] = clamp(round(acc[i] · m_c) + zero_point)` for channels `c = first + i` of one
    /// pixel.
    #[inline(always)]
    pub fn row(&self, rounding: Rounding, first: usize, acc: &[i32], out: &mut [i8]) {
        match rounding {
            Rounding::Away => self.row_with(first, acc, out, double),
            Rounding::Up => self.row_with(first, acc, out, double_up),
        }
    }

    #[inline(always)]
    fn row_with(
        &self,
        first: usize,
        acc: &[i32],
        out: &mut [i8],
        f: impl Fn(i32, i32, i32, i32) -> i32,
    ) {
        let n = out.len();
        let (acc, mult, left, right) = (
            &acc[..n],
            &self.mult[first..][..n],
            &self.left[first..][..n],
            &self.right[first..][..n],
        );
        for i in 0..n {
            let v = f(acc[i], mult[i], left[i], right[i]) + self.zero_point;
            out[i] = v.clamp(self.min, self.max) as i8;
        }
    }
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`, branch-free: its nudge (`2^30`, or
/// `1 − 2^30` below zero) and truncating division add up to rounding half upward,
/// `(x · mult + 2^30) >> 31`, whose low 32 bits are all that is kept. `mult` is below 2^31 by
/// construction, so the one saturating case cannot arise.
#[inline(always)]
fn high(x: i32, mult: i32, left: i32) -> i32 {
    (((x << left) as i64 * mult as i64 + (1i64 << 30)) as u64 >> 31) as u32 as i32
}

/// [`Multiplier::apply_double`] with the shift split in two, branch-free.
#[inline(always)]
pub(super) fn double(x: i32, mult: i32, left: i32, right: i32) -> i32 {
    let high = high(x, mult, left);
    let mask = (1i32 << right).wrapping_sub(1);
    let threshold = (mask >> 1) + (high < 0) as i32;
    (high >> right) + ((high & mask) > threshold) as i32
}

/// [`Multiplier::apply_double_up`], branch-free: `(h + 2^(r−1)) >> r` is `h >> r` plus bit
/// `r − 1` of `h`, which cannot overflow.
#[inline(always)]
fn double_up(x: i32, mult: i32, left: i32, right: i32) -> i32 {
    let h = high(x, mult, left);
    (h >> right) + ((h >> (right - 1).max(0)) & (right > 0) as i32)
}

/// The requantization on 8 lanes of AVX2, shared by the GEMM and the depthwise kernel: the
/// parameters of 8 channels loaded once ([`params8`]) and applied to any number of pixels
/// ([`apply8`]), then 16 channels narrowed to int8 with the zero point and the clamp
/// ([`narrow16`]).
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::Requant;

    /// The multipliers of 8 channels as `vpmuldq` wants them (even lanes, odd lanes moved
    /// down), their shifts, and the rounding's shift and mask.
    #[derive(Clone, Copy)]
    pub struct Params8 {
        mult: __m256i,
        mult_odd: __m256i,
        left: __m256i,
        right: __m256i,
        /// `max(right − 1, 0)`, and all ones where `right > 0`.
        below: __m256i,
        rounds: __m256i,
    }

    /// The parameters of channels `ch..ch + 8`.
    ///
    /// # Safety
    /// The CPU must have AVX2; `ch + 8` must not pass the padded parameters
    /// ([`Requant::params`]), which holds for any `ch` below the channel count.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn params8(rq: &Requant, ch: usize) -> Params8 {
        let [mult, left, right, below, rounds] = rq.params().map(|p| {
            debug_assert!(ch + 8 <= p.len());
            _mm256_loadu_si256(p.as_ptr().add(ch) as *const _)
        });
        Params8 {
            mult,
            mult_odd: _mm256_srli_epi64(mult, 32),
            left,
            right,
            below,
            rounds,
        }
    }

    /// [`Multiplier::apply_double_up`](super::Multiplier::apply_double_up) on 8 lanes, lane `i`
    /// holding the channel `p` was loaded for at `ch + i`; `LEFT` false skips the left shift,
    /// for requantizations that have none ([`Requant::shifts_left`]).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn apply8<const LEFT: bool>(p: &Params8, v: __m256i) -> __m256i {
        let v = if LEFT {
            _mm256_sllv_epi32(v, p.left)
        } else {
            v
        };
        // The high half of the doubled product, rounded half up: (v · mult + 2^30) >> 31; its
        // low 32 bits are all that is kept, so logical shifts do: the even lanes' down by 31,
        // the odd lanes' up by 1 (into the high half, where they belong).
        let half = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_add_epi64(_mm256_mul_epi32(v, p.mult), half);
        let odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(v, 32), p.mult_odd), half);
        let high = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(odd, 1), 0xAA);
        // Rounding right shift, ties upward: (h >> r) + bit r − 1 of h (none when r = 0).
        let round = _mm256_and_si256(_mm256_srav_epi32(high, p.below), p.rounds);
        _mm256_add_epi32(_mm256_srav_epi32(high, p.right), round)
    }

    /// Channels `0..8` in `a` and `8..16` in `b` plus the zero point, clamped, as 16 int8 in
    /// channel order. Narrowing to int16 first saturates, which the clamp to int8 then
    /// absorbs (a zero point is within ±128), so the zero point and the clamp run on 16 lanes
    /// at once.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn narrow16(rq: &Requant, a: __m256i, b: __m256i) -> __m128i {
        let words = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
        let words = _mm256_adds_epi16(words, _mm256_set1_epi16(rq.zero_point as i16));
        let words = _mm256_max_epi16(words, _mm256_set1_epi16(rq.min.clamp(-128, 127) as i16));
        let words = _mm256_min_epi16(words, _mm256_set1_epi16(rq.max.clamp(-128, 127) as i16));
        let bytes = _mm256_packs_epi16(words, words);
        _mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, 0x08))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_forms_equal_the_scalar_definitions() {
        let multipliers: Vec<Multiplier> = [0.3, 0.0017, 1.7, 0.5, 3.1e-6, 0.999]
            .iter()
            .map(|&r| Multiplier::new(r).unwrap())
            .collect();
        let rq = Requant::new(&multipliers, 0, (i32::MIN, i32::MAX));
        let mut state = 12345u64;
        for _ in 0..20000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = (state >> 33) as i32 >> (state % 12) as i32;
            for (c, m) in multipliers.iter().enumerate() {
                let (mult, left, right) = (rq.mult[c], rq.left[c], rq.right[c]);
                if m.shift > 0 && (x as i64) << m.shift != ((x << m.shift) as i64) {
                    continue; // out of int32 after the left shift: undefined in TFLite too
                }
                assert_eq!(double(x, mult, left, right), m.apply_double(x), "{x} {m:?}");
                assert_eq!(
                    double_up(x, mult, left, right),
                    m.apply_double_up(x),
                    "{x} {m:?}"
                );
            }
        }
    }
}
