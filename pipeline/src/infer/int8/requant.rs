//! Per-channel requantization of a row of int32 accumulators to int8, in the loop shape the
//! compiler vectorizes (no branches, one 64-bit product per lane), checked against the literal
//! definitions in [`super::quant`].

use super::quant::Multiplier;

/// Per-output-channel multipliers and the output grid's zero point and clamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requant {
    /// The fixed-point multiplier of each channel.
    mult: Vec<i32>,
    /// Per channel: the left shift before and the right shift after the multiply (one is 0).
    left: Vec<i32>,
    right: Vec<i32>,
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
        Requant {
            mult: multipliers.iter().map(|m| m.mult).collect(),
            left: multipliers.iter().map(|m| m.shift.max(0)).collect(),
            right: multipliers.iter().map(|m| (-m.shift).max(0)).collect(),
            zero_point,
            min,
            max,
        }
    }

    /// The per-channel multipliers, left shifts and right shifts, for vector code.
    pub fn params(&self) -> [&[i32]; 3] {
        [&self.mult, &self.left, &self.right]
    }

    /// The multiplier of channel `c`, as [`Multiplier`] holds it.
    pub fn multiplier(&self, c: usize) -> Multiplier {
        Multiplier {
            mult: self.mult[c],
            shift: self.left[c] - self.right[c],
        }
    }

    /// `out[c] = clamp(round(acc[c] · m_c) + zero_point)` for one pixel's channels.
    #[inline(always)]
    pub fn row(&self, rounding: Rounding, acc: &[i32], out: &mut [i8]) {
        match rounding {
            Rounding::Away => self.row_with(acc, out, double),
            Rounding::Up => self.row_with(acc, out, double_up),
        }
    }

    #[inline(always)]
    fn row_with(&self, acc: &[i32], out: &mut [i8], f: impl Fn(i32, i32, i32, i32) -> i32) {
        let n = out.len();
        let (acc, mult, left, right) = (
            &acc[..n],
            &self.mult[..n],
            &self.left[..n],
            &self.right[..n],
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
