//! The int8 kernels as one tract op, wired into the graph at load time (as the fake-quant op
//! is): int8 tensors in and out, the packed weights shared by every session through an `Arc`.

use std::sync::Arc;

use tract_tflite::internal::*;

use super::conv::Conv;
use super::depthwise::Depthwise;
use super::eltwise::Add;
use super::pool::AvgPool;
use super::quant::Grid;
use super::softmax::Softmax;
use super::window::Window;

#[derive(Debug)]
pub enum Kernel {
    Conv(Conv),
    Depthwise(Depthwise),
    Add(Add),
    AvgPool(AvgPool),
    Softmax(Softmax),
    /// float32 → int8 on `Grid`, rounding half away from zero (TFLite QUANTIZE).
    Quantize(Grid),
    /// int8 → float32 (TFLite DEQUANTIZE).
    Dequantize(Grid),
}

impl Kernel {
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Conv(_) => "Int8Conv",
            Kernel::Depthwise(_) => "Int8DepthwiseConv",
            Kernel::Add(_) => "Int8Add",
            Kernel::AvgPool(_) => "Int8AvgPool",
            Kernel::Softmax(_) => "Int8Softmax",
            Kernel::Quantize(_) => "Int8Quantize",
            Kernel::Dequantize(_) => "Int8Dequantize",
        }
    }

    /// What runs, for `scened models check`: the kernel, its window, the instruction set.
    pub fn describe(&self) -> String {
        let window = |w: &Window| format!("{}×{}/{}", w.filter[0], w.filter[1], w.stride[0]);
        match self {
            Kernel::Conv(c) => format!(
                "conv {} as GEMM, {}",
                window(&c.window),
                c.gemm.isa().name()
            ),
            Kernel::Depthwise(d) => format!("depthwise {}, {}", window(d.window()), d.isa().name()),
            Kernel::Add(_) => "add".into(),
            Kernel::AvgPool(p) => format!("average pool {}", window(&p.window)),
            Kernel::Softmax(_) => "softmax".into(),
            Kernel::Quantize(_) => "quantize".into(),
            Kernel::Dequantize(_) => "dequantize".into(),
        }
    }

    fn output_type(&self) -> DatumType {
        match self {
            Kernel::Dequantize(_) => DatumType::F32,
            _ => DatumType::I8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Int8Op {
    pub kernel: Arc<Kernel>,
    /// The output's shape (NHWC for images).
    pub shape: TVec<usize>,
}

// Two nodes are the same op only if they share the kernel: comparing packed weights byte for
// byte would cost more than it could ever save.
impl PartialEq for Int8Op {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.kernel, &other.kernel) && self.shape == other.shape
    }
}
impl Eq for Int8Op {}

impl Op for Int8Op {
    fn name(&self) -> StaticName {
        self.kernel.name().into()
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Op {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let dt = self.kernel.output_type();
        // SAFETY: every kernel below writes each element of its output.
        let mut out = unsafe { Tensor::uninitialized_dt(dt, &self.shape)? };
        let int8 = |i: usize| -> TractResult<&[i8]> {
            let t: &Tensor = inputs.get(i).context("missing input")?;
            t.try_as_plain_ram()?.as_slice::<i8>()
        };
        {
            let mut view = out.try_as_plain_ram_mut()?;
            match &*self.kernel {
                Kernel::Dequantize(g) => {
                    let out = view.as_slice_mut::<f32>()?;
                    for (o, &q) in out.iter_mut().zip(int8(0)?) {
                        *o = (q as i32 - g.zero_point) as f32 * g.scale;
                    }
                }
                kernel => {
                    let out = view.as_slice_mut::<i8>()?;
                    match kernel {
                        Kernel::Conv(k) => k.run(int8(0)?, out)?,
                        Kernel::Depthwise(k) => k.run(int8(0)?, out)?,
                        Kernel::Add(k) => k.run(int8(0)?, int8(1)?, out),
                        Kernel::AvgPool(k) => k.run(int8(0)?, out),
                        Kernel::Softmax(k) => {
                            k.run(int8(0)?, *self.shape.last().unwrap_or(&1), out)
                        }
                        Kernel::Quantize(g) => {
                            let x = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
                            for (o, &v) in out.iter_mut().zip(x) {
                                let q = (v / g.scale).round() as i32 + g.zero_point;
                                *o = q.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
                            }
                        }
                        Kernel::Dequantize(_) => unreachable!("handled above"),
                    }
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Op {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.kernel.output_type().fact(&*self.shape)))
    }

    as_op!();
}
