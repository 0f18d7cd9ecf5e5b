//! Quantized models run as int8: each op scened has a kernel for becomes one [`op::Int8Op`] in
//! a tract graph built here straight from the flatbuffer, with int8 tensors between ops and the
//! op's weights packed once, in int8, as the graph is built (no float copy of them is ever
//! made). Every kernel reproduces LiteRT's builtin kernels bit for bit (`tests/int8_ops.rs`).
//!
//! An op without a kernel, or with parameters a kernel does not handle, keeps the float
//! lowering, alone: it is cut out of the file as a one-op model, lowered by
//! [`prepare`](super::prepare) (float weights, fake quantization of its output) and read by
//! tract-tflite; its int8 inputs are dequantized into it and its output quantized back onto
//! its grid, which is what an int8 runtime stores between ops anyway. [`OpPath`] records which
//! path each op took and why, for `scened models check`.

pub mod conv;
pub mod depthwise;
pub mod eltwise;
pub mod gemm;
mod graph;
pub mod isa;
pub mod op;
pub mod pool;
pub mod quant;
pub mod requant;
pub mod softmax;
pub mod threads;
pub mod window;

use std::sync::Arc;

use tract_tflite::internal::*;
use tract_tflite::tflite as fb;

use super::flat;
use super::inspect::Refusal;
use super::{fake_quant, inspect, prepare, FormatError, PrepareError};
use graph::{Graph, Wire};
pub use isa::Isa;
use op::{Int8Op, Kernel};
use quant::Grid;

/// How one op of a quantized model runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    /// On int8 tensors, by the named kernel.
    Int8(String),
    /// Lowered to float on its own, for the reason given.
    Float(Uncovered),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpPath {
    /// Position in the file's operator list.
    pub index: usize,
    pub op: String,
    pub path: Path,
}

impl std::fmt::Display for OpPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Path::Int8(kernel) => write!(f, "#{} {}: int8 ({kernel})", self.index, self.op),
            Path::Float(why) => write!(f, "#{} {}: float lowering ({why})", self.index, self.op),
        }
    }
}

/// Why an op of an int8 model has no int8 kernel here and is lowered to float.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Uncovered {
    #[error("no int8 kernel for {0}")]
    NoKernel(String),
    #[error("{0} outputs")]
    Outputs(usize),
    #[error("input {0} left out")]
    InputLeftOut(usize),
    #[error("{what} is {ty}, not int8 with one scale and zero point")]
    NotInt8 { what: &'static str, ty: String },
    #[error("tensor {0} has a dynamic dimension")]
    Dynamic(String),
    #[error("input shape {0:?}, not one NHWC image")]
    NotImage(Vec<usize>),
    #[error("filter shape {0:?}")]
    Filter(Vec<usize>),
    #[error("grouped convolution ({input} input channels, filter of {filter})")]
    Grouped { input: usize, filter: usize },
    #[error("dilation {0:?}")]
    Dilation([i32; 2]),
    #[error("depth multiplier {0}")]
    DepthMultiplier(i32),
    #[error("window {filter:?} stride {stride:?} on {input:?}")]
    Window {
        input: [usize; 3],
        filter: [usize; 2],
        stride: [i32; 2],
    },
    #[error("output shape {got:?}, expected {expected:?}")]
    OutputShape {
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("inputs broadcast")]
    Broadcast,
    #[error("input and output on different grids")]
    Regrid,
    #[error("scales outside TFLite's rescaling range")]
    Rescale,
    #[error("weights {0}")]
    Weights(&'static str),
    #[error("{scales} weight scales for {channels} channels")]
    WeightScales { scales: usize, channels: usize },
    #[error("bias is not one constant int32 per channel")]
    Bias,
    #[error("rescaling factor {0} out of range")]
    Multiplier(f64),
    #[error("fused activation {0}")]
    Activation(&'static str),
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// An op without an int8 kernel whose float lowering failed too.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("op {op} (operator #{index}) has no int8 kernel ({uncovered}) and cannot be lowered to float: {why}")]
pub struct LoweringError {
    pub op: String,
    pub index: usize,
    pub uncovered: Uncovered,
    pub why: PrepareError,
}

/// What cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("tract cannot run this model correctly: {0}")]
    Refused(Refusal),
    #[error(transparent)]
    Lowering(Box<LoweringError>),
    #[error(transparent)]
    Tract(#[from] TractError),
}

/// The model as tract runs it, and the path each op took.
pub struct Built {
    pub model: TypedModel,
    pub paths: Vec<OpPath>,
}

/// Builds the tract graph of the quantized model in `bytes`, its kernels chosen and their
/// weights packed for `isa` ([`Isa::native`] but in tests).
pub fn build(bytes: &[u8], isa: Isa) -> Result<Built, BuildError> {
    let g = Graph::new(bytes)?;
    let mut model = TypedModel::default();
    let mut outlets: Vec<Option<OutletId>> = vec![None; g.tensors.len()];
    for &t in &g.inputs {
        let tensor = g.tensor(t)?;
        let fact = tensor
            .datum()
            .fact(tensor.shape().map_err(|_| FormatError::TensorIndex(t))?);
        outlets[t] = Some(model.add_source(tensor.name(), fact)?);
    }
    let mut paths = vec![];
    for index in 0..g.ops.len() {
        let fb_op = g.ops.get(index);
        let name = g.op_name(&fb_op);
        let inputs: Vec<OutletId> = activations(&fb_op, &g)
            .iter()
            .map(|&t| outlets[t].with_context(|| format!("tensor {t} read before written")))
            .collect::<TractResult<_>>()?;
        let out_tensors: Vec<usize> = fb_op
            .outputs()
            .into_iter()
            .flatten()
            .map(|t| t as usize)
            .collect();
        let label = format!("#{index} {name}");
        let (wired, path) = match g.kernel(index, isa) {
            Ok(Wire::Kernel(kernel, shape)) => {
                let kernel_name = kernel.describe();
                let op = Int8Op {
                    kernel,
                    shape: shape.into(),
                };
                (
                    model.wire_node(label, op, &inputs)?,
                    Path::Int8(kernel_name),
                )
            }
            Ok(Wire::Reshape(from, to)) => {
                let op = AxisOp::Reshape(
                    0,
                    from.iter().map(|&d| d.to_dim()).collect(),
                    to.iter().map(|&d| d.to_dim()).collect(),
                );
                (
                    model.wire_node(label, op, &inputs)?,
                    Path::Int8("reshape".into()),
                )
            }
            Err(why) => {
                let wired = splice_float(&mut model, bytes, &g, index, &name, &inputs, &why)?;
                (wired, Path::Float(why))
            }
        };
        for (&t, outlet) in out_tensors.iter().zip(wired) {
            outlets[t] = Some(outlet);
        }
        paths.push(OpPath {
            index,
            op: name,
            path,
        });
    }
    let outputs: Vec<OutletId> = g
        .outputs
        .iter()
        .map(|&t| outlets[t].with_context(|| format!("graph output {t} never written")))
        .collect::<TractResult<_>>()?;
    model.select_output_outlets(&outputs)?;
    Ok(Built { model, paths })
}

/// The non-constant inputs of `op`, in order.
fn activations(op: &fb::Operator<'_>, g: &Graph<'_>) -> Vec<usize> {
    op.inputs()
        .into_iter()
        .flatten()
        .filter(|&t| t >= 0)
        .map(|t| t as usize)
        .filter(|&t| g.tensor(t).is_ok_and(|t| t.data.is_none()))
        .collect()
}

/// Wires op `index` lowered to float on its own: dequantize its int8 inputs, the lowered op as
/// tract-tflite reads it, quantize its int8 outputs.
fn splice_float(
    model: &mut TypedModel,
    bytes: &[u8],
    g: &Graph<'_>,
    index: usize,
    name: &str,
    inputs: &[OutletId],
    uncovered: &Uncovered,
) -> Result<TVec<OutletId>, BuildError> {
    let lowering = |why: PrepareError| {
        BuildError::Lowering(Box::new(LoweringError {
            op: name.to_string(),
            index,
            uncovered: uncovered.clone(),
            why,
        }))
    };
    if !inspect::tract_implements(name) {
        return Err(BuildError::Refused(Refusal {
            op: name.to_string(),
            index,
            reason: inspect::UNIMPLEMENTED.into(),
        }));
    }
    let one = flat::Model::single_op(bytes, index)?.into_bytes();
    let prepared = prepare::prepare(one).map_err(lowering)?;
    let run_bytes = prepared.bytes;
    let inspection = inspect::inspect(&run_bytes)?;
    if let Some(refusal) = inspection.refusal() {
        return Err(BuildError::Refused(Refusal { index, ..refusal }));
    }
    let mut sub = tract_tflite::tflite().model_for_read(&mut &run_bytes[..])?;
    fake_quant::insert(&mut sub, &prepared.fake_quant)?;
    let fb_op = g.ops.get(index);
    let activation_inputs = activations(&fb_op, g);
    // Where tensor `t` is int8, `from` goes through `kernel` (a dequantize in, a quantize out).
    let convert = |model: &mut TypedModel,
                   t: usize,
                   kernel: fn(Grid) -> Kernel,
                   label: String,
                   from: OutletId|
     -> Result<OutletId, BuildError> {
        let tensor = g.tensor(t)?;
        let Some(grid) = tensor.grid() else {
            return Ok(from);
        };
        let shape = tensor
            .shape()
            .map_err(|_| FormatError::Missing("static tensor shape"))?;
        let op = Int8Op {
            kernel: Arc::new(kernel(grid)),
            shape: shape.into(),
        };
        Ok(model.wire_node(label, op, &[from])?[0])
    };
    let mut mapped: std::collections::HashMap<OutletId, OutletId> = Default::default();
    for (at, (&source, &outer)) in sub.input_outlets()?.iter().zip(inputs).enumerate() {
        let label = format!("#{index} {name}/dequantize{at}");
        let t = activation_inputs[at];
        mapped.insert(source, convert(model, t, Kernel::Dequantize, label, outer)?);
    }
    for id in sub.eval_order()? {
        let node = sub.node(id);
        if sub.input_outlets()?.contains(&OutletId::new(id, 0)) {
            continue;
        }
        let node_inputs: TVec<OutletId> = node.inputs.iter().map(|i| mapped[i]).collect();
        let label = format!("#{index} {name}/{}", node.name);
        let wired = model.wire_node(label, node.op.clone(), &node_inputs)?;
        for (slot, outlet) in wired.into_iter().enumerate() {
            mapped.insert(OutletId::new(id, slot), outlet);
        }
    }
    let out_tensors: Vec<usize> = fb_op
        .outputs()
        .into_iter()
        .flatten()
        .map(|t| t as usize)
        .collect();
    sub.output_outlets()?
        .iter()
        .zip(out_tensors)
        .enumerate()
        .map(|(at, (outlet, t))| {
            let label = format!("#{index} {name}/quantize{at}");
            convert(model, t, Kernel::Quantize, label, mapped[outlet])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path as FsPath, PathBuf};

    use super::conv::tests::Rng;
    use super::threads::{scope, Pool};
    use super::*;

    fn repo(path: &str) -> PathBuf {
        FsPath::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path)
    }

    fn committed_int8_models() -> Vec<PathBuf> {
        let mut models: Vec<PathBuf> = std::fs::read_dir(repo("models"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".int8.tflite"))
            .collect();
        models.sort();
        assert!(models.len() >= 3, "{models:?}");
        models
    }

    /// A random input for `op`.
    fn input(op: &Int8Op, rng: &mut Rng) -> Vec<Tensor> {
        let len = op.kernel.input_len(op.shape.iter().product());
        (0..op.kernel.inputs())
            .map(|_| match op.kernel.input_type() {
                DatumType::F32 => tensor1(
                    &(0..len)
                        .map(|_| rng.below(200) as f32 - 100.0)
                        .collect::<Vec<_>>(),
                ),
                _ => tensor1(&rng.i8s(len)),
            })
            .collect()
    }

    /// Every kernel of every committed model, at its own shapes, gives the same bytes split
    /// between 2 or 3 threads as on one.
    #[test]
    fn every_op_of_the_committed_models_is_bit_identical_on_any_thread_count() {
        let mut rng = Rng(0xda942042e4dd58b5);
        let pools = [2, 3].map(|t| Pool::with_min_work(t, 0).unwrap());
        for path in committed_int8_models() {
            let built = build(&std::fs::read(&path).unwrap(), Isa::native()).unwrap();
            for p in &built.paths {
                assert!(matches!(p.path, Path::Int8(_)), "{}: {p}", path.display());
            }
            let mut ops = 0;
            for node in built.model.nodes() {
                let Some(op) = node.op_as::<Int8Op>() else {
                    continue;
                };
                let inputs = input(op, &mut rng);
                let inputs: Vec<&Tensor> = inputs.iter().collect();
                let one = op.compute(&inputs).unwrap();
                for pool in &pools {
                    let split = scope(pool.as_ref(), || op.compute(&inputs).unwrap());
                    assert_eq!(one, split, "{} {}", path.display(), node.name);
                }
                ops += 1;
            }
            assert!(ops > 50, "{}: {ops} int8 ops", path.display());
        }
    }

    /// The whole Lite0 graph gives the same output on every instruction set this CPU runs, and
    /// `models check` names the one each convolution uses.
    #[test]
    fn every_instruction_set_runs_a_whole_model_to_the_same_bytes() {
        let bytes = std::fs::read(repo("models/efficientnet_lite0.int8.tflite")).unwrap();
        let mut outputs = vec![];
        for isa in Isa::available() {
            let built = build(&bytes, isa).unwrap();
            let conv = built.paths.iter().find(|p| p.op == "CONV_2D").unwrap();
            assert!(
                conv.to_string().ends_with(&format!("{})", isa.name())),
                "{conv}"
            );
            let plan = built.model.into_runnable().unwrap();
            let fact = plan.model().input_fact(0).unwrap().clone();
            let shape = fact.shape.as_concrete().unwrap().to_vec();
            let values = Rng(0x5851f42d4c957f2d).i8s(shape.iter().product());
            let mut x = Tensor::from_shape(&shape, &values).unwrap();
            // SAFETY: the input is int8 with its grid attached; the bytes are the same values.
            unsafe { x.set_datum_type(fact.datum_type) };
            outputs.push(
                plan.run(tvec![x.into_tvalue()])
                    .unwrap()
                    .remove(0)
                    .into_tensor(),
            );
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_truncated_or_corrupt_model_is_a_format_error_not_a_panic() {
        let bytes = std::fs::read(repo("tests/data/ops/conv1x1_relu6.tflite")).unwrap();
        assert!(build(&bytes, Isa::native()).is_ok());
        for cut in [0, 8, bytes.len() / 2] {
            assert!(build(&bytes[..cut], Isa::native()).is_err(), "cut at {cut}");
        }
    }
}
