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

    /// The element count each input must have for an output of `out` elements.
    pub(super) fn input_len(&self, out: usize) -> usize {
        match self {
            Kernel::Conv(Conv { window, .. }) | Kernel::AvgPool(AvgPool { window, .. }) => {
                window.input.iter().product()
            }
            Kernel::Depthwise(d) => d.window().input.iter().product(),
            Kernel::Add(_) | Kernel::Softmax(_) | Kernel::Quantize(_) | Kernel::Dequantize(_) => {
                out
            }
        }
    }

    pub(super) fn inputs(&self) -> usize {
        match self {
            Kernel::Add(_) => 2,
            _ => 1,
        }
    }

    pub(super) fn input_type(&self) -> DatumType {
        match self {
            Kernel::Quantize(_) => DatumType::F32,
            _ => DatumType::I8,
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
        let inputs: TVec<&Tensor> = inputs.iter().map(|t| &**t).collect();
        Ok(tvec!(self.compute(&inputs)?.into_tvalue()))
    }
}

impl Int8Op {
    /// The output for `inputs`, or an error naming the input whose size or type does not fit
    /// the output (before anything is written).
    pub fn compute(&self, inputs: &[&Tensor]) -> TractResult<Tensor> {
        let kernel = &*self.kernel;
        let len: usize = self.shape.iter().product();
        // Every input checked against the output before anything is written: the kernels
        // index by the output's geometry.
        ensure!(
            inputs.len() == kernel.inputs(),
            "{}: {} inputs, expected {}",
            kernel.name(),
            inputs.len(),
            kernel.inputs()
        );
        for (i, t) in inputs.iter().enumerate() {
            let (want, got) = (kernel.input_len(len), t.len());
            ensure!(
                got == want && t.datum_type().unquantized() == kernel.input_type(),
                "{}: input {i} is {got} × {:?}, expected {want} × {:?} for output {:?}",
                kernel.name(),
                t.datum_type(),
                kernel.input_type(),
                self.shape
            );
        }
        let int8 =
            |i: usize| -> TractResult<&[i8]> { inputs[i].try_as_plain_ram()?.as_slice::<i8>() };
        // SAFETY: every kernel below writes each element of its output.
        let mut out = unsafe { Tensor::uninitialized_dt(kernel.output_type(), &self.shape)? };
        {
            let mut view = out.try_as_plain_ram_mut()?;
            match kernel {
                Kernel::Dequantize(g) => {
                    let out = view.as_slice_mut::<f32>()?;
                    for (o, &q) in out.iter_mut().zip(int8(0)?) {
                        *o = (q as i32 - g.zero_point) as f32 * g.scale;
                    }
                }
                Kernel::Quantize(g) => {
                    let x = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
                    for (o, &v) in view.as_slice_mut::<i8>()?.iter_mut().zip(x) {
                        let q = (v / g.scale).round() as i32 + g.zero_point;
                        *o = q.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
                    }
                }
                Kernel::Conv(k) => k.run(int8(0)?, view.as_slice_mut()?),
                Kernel::Depthwise(k) => k.run(int8(0)?, view.as_slice_mut()?),
                Kernel::Add(k) => k.run(int8(0)?, int8(1)?, view.as_slice_mut()?),
                Kernel::AvgPool(k) => k.run(int8(0)?, view.as_slice_mut()?),
                Kernel::Softmax(k) => {
                    let row = (*self.shape.last().unwrap_or(&1)).max(1);
                    k.run(int8(0)?, row, view.as_slice_mut()?)
                }
            }
        }
        Ok(out)
    }
}

impl TypedOp for Int8Op {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.kernel.output_type().fact(&*self.shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::values;

    fn op(kernel: Kernel, shape: &[usize]) -> Int8Op {
        Int8Op {
            kernel: Arc::new(kernel),
            shape: shape.into(),
        }
    }

    const GRID: Grid = Grid {
        scale: 0.5,
        zero_point: -3,
    };

    #[test]
    fn quantize_and_dequantize_check_their_input_against_the_output() {
        let quantize = op(Kernel::Quantize(GRID), &[1, 4]);
        let x = tensor2(&[[0.0f32, 1.0, -1.25, 300.0]]);
        let q = quantize.compute(&[&x]).unwrap();
        assert_eq!(values::<i8>(&q).unwrap(), [-3, -1, -6, 127]);
        let dequantize = op(Kernel::Dequantize(GRID), &[1, 4]);
        let back = dequantize.compute(&[&q]).unwrap();
        assert_eq!(values::<f32>(&back).unwrap(), [0.0, 1.0, -1.5, 65.0]);

        // Fewer or more elements than the output, or the wrong type: refused, named.
        for (op, input) in [
            (&quantize, tensor1(&[0.0f32; 3])),
            (&quantize, tensor1(&[0.0f32; 5])),
            (&quantize, tensor1(&[0i8; 4])),
            (&dequantize, tensor1(&[0i8; 3])),
            (&dequantize, tensor1(&[0i8; 400])),
            (&dequantize, tensor1(&[0f32; 4])),
        ] {
            let err = op.compute(&[&input]).unwrap_err().to_string();
            assert!(err.contains("input 0") && err.contains("[1, 4]"), "{err}");
        }
        assert!(quantize.compute(&[]).is_err());
    }

    #[test]
    fn every_kernel_refuses_inputs_that_do_not_fit_its_output() {
        use super::super::quant::Multiplier;
        use super::super::requant::Requant;
        use tract_tflite::tflite::Padding;
        let window = Window::new([4, 4, 3], [3, 3], [2, 2], Padding::SAME).unwrap();
        let rq = || Requant::new(&[Multiplier::new(0.01).unwrap(); 3], 0, (-128, 127));
        let isa = super::super::isa::Isa::native();
        let kernels = [
            Kernel::Conv(Conv::new(window, 0, &[1; 81], &[0; 3], rq(), isa)),
            Kernel::Depthwise(Depthwise::new(window, 0, &[1; 27], &[0; 3], rq(), isa)),
            Kernel::AvgPool(AvgPool {
                window,
                range: (-128, 127),
            }),
        ];
        for kernel in kernels {
            let op = op(kernel, &[1, 2, 2, 3]);
            assert!(op.compute(&[&tensor1(&[0i8; 48])]).is_ok());
            for wrong in [47, 12, 49] {
                let err = op.compute(&[&tensor1(&vec![0i8; wrong])]).unwrap_err();
                assert!(err.to_string().contains("expected 48"), "{err}");
            }
        }
        let add = Add::new(GRID, GRID, GRID, (-128, 127)).unwrap();
        let op = op(Kernel::Add(add), &[2, 3]);
        let six = tensor1(&[1i8; 6]);
        assert!(op.compute(&[&six, &six]).is_ok());
        assert!(op.compute(&[&six, &tensor1(&[1i8; 5])]).is_err());
        assert!(op.compute(&[&six]).is_err());
    }
}
