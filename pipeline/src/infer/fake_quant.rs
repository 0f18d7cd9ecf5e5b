//! Fake quantization: rounds a float activation onto the int8 grid an int8 runtime would store
//! it on, so a quantized model lowered to float (see [`prepare`](super::prepare)) tracks the
//! int8 reference instead of an idealised float model.
//!
//! Preparation marks each point with a clamp (`MAXIMUM` against the grid's lowest value), which
//! is correct on its own, so the prepared `.tflite` stays a valid model for any runtime; here,
//! after tract has read the graph, each marker is replaced by one element-wise op doing
//! clamp + round in a single pass.

use tract_tflite::internal::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_tflite::internal::*;

use super::Quant;

/// Where to fake-quantize: the name of the marker's output tensor and its grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub tensor: String,
    pub quant: Quant,
    /// Grid bounds in quantized units, e.g. −128..127 for int8.
    pub range: (i32, i32),
}

#[derive(Debug, Clone, Copy)]
struct FakeQuant {
    scale: f32,
    /// Bounds of `round(x / scale)`, i.e. the grid's ends minus the zero point.
    lo: f32,
    hi: f32,
}

// tract compares ops for deduplication; bitwise equality is what that needs.
impl PartialEq for FakeQuant {
    fn eq(&self, other: &Self) -> bool {
        [self.scale, self.lo, self.hi].map(f32::to_bits)
            == [other.scale, other.lo, other.hi].map(f32::to_bits)
    }
}
impl Eq for FakeQuant {}

impl ElementWiseMiniOp for FakeQuant {
    fn name(&self) -> String {
        "FakeQuant".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, _out_dt: Option<DatumType>) -> TractResult<()> {
        let mut view = t.try_as_plain_ram_mut()?;
        let values = view.as_slice_mut::<f32>()?;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { round_to_grid_avx2(values, *self) };
            return Ok(());
        }
        round_to_grid(values, *self);
        Ok(())
    }
}

/// tract's matmul kernels leave the upper halves of the vector registers dirty, and plain SSE
/// code run after them pays a state-transition penalty per instruction: this loop took 3.2 ms
/// for 1.2 M values compiled for the x86-64 baseline, 0.24 ms compiled with AVX2 (VEX-encoded).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn round_to_grid_avx2(values: &mut [f32], grid: FakeQuant) {
    round_to_grid(values, grid)
}

#[inline(always)]
fn round_to_grid(values: &mut [f32], FakeQuant { scale, lo, hi }: FakeQuant) {
    for x in values {
        // Rounds half away from zero, like TFLite's requantization, in a form that vectorizes
        // (`f32::round` + `clamp` + a saturating cast does not): max/min clamp and map NaN to
        // `lo`, so |v| ≤ 2^8, adding ±0.5 is exact and the truncation cannot overflow.
        let v = (*x / scale).max(lo).min(hi);
        // SAFETY: `v ± 0.5` is finite and within ±2^8, well inside i32.
        let q = unsafe { (v + 0.5f32.copysign(v)).to_int_unchecked::<i32>() };
        *x = q as f32 * scale;
    }
}

/// Replaces each marker node by a fake-quantization of its first input. Returns how many.
pub fn insert(model: &mut TypedModel, points: &[Point]) -> TractResult<usize> {
    for point in points {
        let node = model
            .nodes()
            .iter()
            .find(|n| n.name == point.tensor)
            .with_context(|| format!("fake-quantization marker {} not found", point.tensor))?;
        ensure!(
            node.inputs.len() == 2,
            "marker {} is not a binary op",
            point.tensor
        );
        let op = FakeQuant {
            scale: point.quant.scale,
            lo: (point.range.0 - point.quant.zero_point) as f32,
            hi: (point.range.1 - point.quant.zero_point) as f32,
        };
        let input = node.inputs[0];
        let patch = TypedModelPatch::replace_single_op(
            model,
            node,
            &[input],
            ElementWiseOp(Box::new(op), None),
        )?;
        patch.apply(model)?;
    }
    Ok(points.len())
}
