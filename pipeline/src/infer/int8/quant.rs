//! TFLite's integer requantization, bit for bit (`tflite/kernels/internal/common.h`,
//! `quantization_util.cc`, `kernel_util.cc`).
//!
//! A real factor such as `input_scale · weight_scale / output_scale` becomes a 31-bit fixed-point
//! multiplier and a power-of-two shift, applied in two roundings: the high half of the doubled
//! product rounded to nearest (gemmlowp's `SaturatingRoundingDoublingHighMul`), then a rounding
//! right shift. Which way that last shift breaks ties depends on the kernel, and decides
//! bit-exactness, so both are here (found against LiteRT 2.3's builtin kernels on x86, whose
//! SSE4.1 build runs TFLite's NEON code paths through `NEON_2_SSE`):
//! - [`Multiplier::apply_double`]: ties away from zero (gemmlowp's `RoundingDivideByPOT`,
//!   TFLite's portable `MultiplyByQuantizedMultiplier`) — builtin ADD, every reference kernel.
//! - [`Multiplier::apply_double_up`]: ties upward (NEON `vrshl`) — builtin CONV_2D and
//!   DEPTHWISE_CONV_2D. (XNNPACK rounds once, ties upward, and so differs from both by a step
//!   now and then.)

use tract_tflite::tflite::ActivationFunctionType;

/// `real ≈ mult · 2^(shift − 31)`, `mult` in [2^30, 2^31) (or 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Multiplier {
    pub mult: i32,
    pub shift: i32,
}

impl Multiplier {
    /// TFLite's `QuantizeMultiplier`: `frexp`, the mantissa rounded half away from zero to 31
    /// bits; too small a factor flushes to zero. `None` for a negative or non-finite factor, or
    /// one of 2^31 or more (no TFLite kernel accepts them).
    pub fn new(real: f64) -> Option<Multiplier> {
        if !real.is_finite() || real < 0.0 {
            return None;
        }
        if real == 0.0 {
            return Some(Multiplier { mult: 0, shift: 0 });
        }
        let (q, mut shift) = frexp(real);
        let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
        if q_fixed == 1 << 31 {
            q_fixed /= 2;
            shift += 1;
        }
        if shift < -31 {
            return Some(Multiplier { mult: 0, shift: 0 });
        }
        (shift <= 30).then_some(Multiplier {
            mult: q_fixed as i32,
            shift,
        })
    }

    /// gemmlowp's double rounding (TFLite's default `MultiplyByQuantizedMultiplier`).
    pub fn apply_double(self, x: i32) -> i32 {
        rounding_divide_by_pot(self.high(x), (-self.shift).max(0))
    }

    /// The same, the final shift rounding ties upward.
    pub fn apply_double_up(self, x: i32) -> i32 {
        let right = (-self.shift).max(0);
        ((self.high(x) as i64 + ((1i64 << right) >> 1)) >> right) as i32
    }

    fn high(self, x: i32) -> i32 {
        saturating_rounding_doubling_high_mul(x.wrapping_shl(self.shift.max(0) as u32), self.mult)
    }
}

/// `(q, e)` with `x = q · 2^e`, `q` in [0.5, 1), for a positive finite `x`.
fn frexp(x: f64) -> (f64, i32) {
    // Scale subnormals into the normal range first; their exponent is corrected below.
    let (x, bias) = if x < f64::MIN_POSITIVE {
        (x * 2f64.powi(64), -64)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
    let mantissa = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (mantissa, exp + bias)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2·a·b`, rounded half away
/// from zero; the one overflowing case saturates.
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // C++ integer division truncates toward zero, and so does Rust's.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT`: `x / 2^exponent`, rounded half away from zero.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask = (1i32 << exponent).wrapping_sub(1);
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// The output clamp of a quantized op: its type's range narrowed by the fused activation,
/// computed as TFLite's `CalculateActivationRangeQuantized` does (`zp + round(f / scale)` in
/// f32). `None` for an activation no integer kernel applies (TANH, SIGN_BIT).
pub fn activation_range(
    act: ActivationFunctionType,
    scale: f32,
    zero_point: i32,
) -> Option<(i32, i32)> {
    let q = |f: f32| zero_point + (f / scale).round() as i32;
    let (lo, hi) = (i8::MIN as i32, i8::MAX as i32);
    Some(match act {
        ActivationFunctionType::NONE => (lo, hi),
        ActivationFunctionType::RELU => (lo.max(q(0.0)), hi),
        ActivationFunctionType::RELU6 => (lo.max(q(0.0)), hi.min(q(6.0))),
        ActivationFunctionType::RELU_N1_TO_1 => (lo.max(q(-1.0)), hi.min(q(1.0))),
        _ => return None,
    })
}

/// An op's per-tensor quantization: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub scale: f32,
    pub zero_point: i32,
}

impl Eq for Grid {}
impl std::hash::Hash for Grid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.scale.to_bits(), self.zero_point).hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_match_tflite_quantize_multiplier() {
        // Worked by hand from QuantizeMultiplier: 0.5 = 0.5·2^0 → 2^30, shift 0.
        assert_eq!(
            Multiplier::new(0.5),
            Some(Multiplier {
                mult: 1 << 30,
                shift: 0
            })
        );
        // 0.75·2^-3: mantissa 0.75 → 0.75·2^31.
        assert_eq!(
            Multiplier::new(0.09375),
            Some(Multiplier {
                mult: 3 << 29,
                shift: -3
            })
        );
        // A mantissa that rounds up to 2^31 is halved and the shift bumped.
        let just_below_one = 1.0 - 1e-12;
        assert_eq!(
            Multiplier::new(just_below_one),
            Some(Multiplier {
                mult: 1 << 30,
                shift: 1
            })
        );
        assert_eq!(
            Multiplier::new(1e-12),
            Some(Multiplier { mult: 0, shift: 0 })
        );
        assert_eq!(Multiplier::new(-0.5), None);
        assert_eq!(Multiplier::new(f64::NAN), None);
    }

    #[test]
    fn frexp_splits_like_libm() {
        for x in [1.0, 0.3, 1e-300, 5e-324, 123456.0, 0.5] {
            let (q, e) = frexp(x);
            assert!((0.5..1.0).contains(&q), "{x}: {q}");
            assert_eq!(q * 2f64.powi(e), x, "{x}");
        }
    }

    #[test]
    fn rounding_divide_by_pot_rounds_ties_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(7, 0), 7);
    }

    #[test]
    fn the_two_roundings_differ_on_negative_ties() {
        let m = Multiplier {
            mult: 1 << 30,
            shift: -1,
        }; // × 0.25
        assert_eq!(m.apply_double(6), 2); // 1.5 → 2
        assert_eq!(m.apply_double_up(6), 2);
        assert_eq!(m.apply_double(-6), -2); // −1.5 → −2 (away from zero)
        assert_eq!(m.apply_double_up(-6), -1); // −1.5 → −1 (upward)
                                               // −1.25 → −1 either way (the high half is exactly −2.5 → −2: gemmlowp's first
                                               // rounding breaks its own ties upward).
        assert_eq!((m.apply_double(-5), m.apply_double_up(-5)), (-1, -1));
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
    }

    #[test]
    fn relu6_clamps_on_the_output_grid() {
        let (lo, hi) = activation_range(ActivationFunctionType::RELU6, 6.0 / 255.0, -128).unwrap();
        assert_eq!((lo, hi), (-128, 127));
        let (lo, hi) = activation_range(ActivationFunctionType::RELU6, 0.05, -10).unwrap();
        assert_eq!((lo, hi), (-10, 110));
        assert!(activation_range(ActivationFunctionType::TANH, 0.1, 0).is_none());
    }
}
