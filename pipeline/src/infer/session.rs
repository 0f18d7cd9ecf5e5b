//! One inference thread's state ([`Engine::session`](super::Engine::session)): a frame's
//! tensor in, the raw output and the class probabilities out, with the conversions a model
//! lowered to float needs on either side.

use tract_tflite::internal::{EvalContext, OpState, TypedNode};
use tract_tflite::prelude::*;

use super::{
    datum_type, first_line, int8, values, ElemType, InferError, Lowered, OutputSpec, Quant,
};
use crate::contain;

/// One inference thread's state.
pub struct Session {
    pub(super) state: TypedSimpleState,
    pub(super) output: OutputSpec,
    pub(super) lowered: Lowered,
    /// The int8 kernels' threads, installed for each run.
    pub(super) pool: Option<int8::threads::Pool>,
}

/// The model's raw output (in the model's declared type) and the class probabilities.
#[derive(Debug, Clone)]
pub struct Inference {
    pub raw: Tensor,
    pub probs: Vec<f32>,
}

impl Session {
    pub fn run(&mut self, input: Tensor) -> Result<Inference, InferError> {
        let input = self.tract_input(input)?;
        let (state, pool) = (&mut self.state, self.pool.as_ref());
        let outputs =
            contain::catch(|| int8::threads::scope(pool, || state.run(tvec![input.into_tvalue()])))
                .map_err(InferError::Panic)?
                .map_err(|e| InferError::Tract(first_line(&e)))?;
        let raw = outputs[0].clone().into_tensor();
        let raw = match self.lowered.output {
            Some((elem, q)) => requantize(&raw, elem, q)?,
            None => raw,
        };
        let probs = self.output.probs(&raw)?;
        Ok(Inference { raw, probs })
    }

    /// Runs `input` once, timing each node: `(op name, node name, seconds)` in execution order.
    /// For `scened models bench --profile`: where a model's time goes inside tract.
    pub fn profile(&mut self, input: Tensor) -> Result<Vec<(String, String, f64)>, InferError> {
        let input = self.tract_input(input)?;
        let mut times = vec![];
        let timed = |ctx: &EvalContext<'_>,
                     state: Option<&mut (dyn OpState + 'static)>,
                     node: &TypedNode,
                     inputs| {
            let started = std::time::Instant::now();
            let out = tract_tflite::internal::tract_core::plan::eval(ctx, state, node, inputs);
            times.push((
                node.op().name().to_string(),
                node.name.clone(),
                started.elapsed().as_secs_f64(),
            ));
            out
        };
        let (state, pool) = (&mut self.state, self.pool.as_ref());
        int8::threads::scope(pool, || {
            state.run_plan_with_eval(tvec![input.into_tvalue()], timed)
        })
        .map_err(|e| InferError::Tract(first_line(&e)))?;
        Ok(times)
    }

    /// The model's declared input as tract's (possibly lowered) graph takes it.
    fn tract_input(&self, input: Tensor) -> Result<Tensor, InferError> {
        match self.lowered.input {
            Some(q) => dequantize(&input, q),
            None => Ok(input),
        }
    }
}

fn dequantize(t: &Tensor, q: Quant) -> Result<Tensor, InferError> {
    let real: Vec<f32> = match t.datum_type().unquantized() {
        DatumType::I8 => values::<i8>(t)?.iter().map(|&v| q.real(v as i32)).collect(),
        DatumType::U8 => values::<u8>(t)?.iter().map(|&v| q.real(v as i32)).collect(),
        other => {
            return Err(InferError::Tract(format!(
                "expected a quantized input, got {other:?}"
            )))
        }
    };
    Tensor::from_shape(t.shape(), &real).map_err(|e| InferError::Tract(e.to_string()))
}

/// tract's float output back onto the declared 8-bit grid.
fn requantize(t: &Tensor, elem: ElemType, q: Quant) -> Result<Tensor, InferError> {
    let range = elem.grid_range().expect("requantized outputs are 8-bit");
    let bytes: Vec<u8> = values::<f32>(t)?
        .iter()
        .map(|&x| q.quantize(x, range) as u8)
        .collect();
    // SAFETY: one byte per element of an 8-bit type, in the shape of `t`.
    unsafe { Tensor::from_raw_dt(datum_type(elem, Some(q)), t.shape(), &bytes) }
        .map_err(|e| InferError::Tract(e.to_string()))
}
