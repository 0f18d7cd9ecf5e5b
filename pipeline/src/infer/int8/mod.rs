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
pub mod isa;
pub mod op;
pub mod pool;
pub mod quant;
pub mod requant;
pub mod softmax;
pub mod window;

use std::sync::Arc;

use flatbuffers::{ForwardsUOffset, Vector};
use tract_tflite::internal::*;
use tract_tflite::tflite::{self as fb, ActivationFunctionType, TensorType};

use super::flat::{self, Options};
use super::inspect::Refusal;
use super::{fake_quant, inspect, prepare, ElemType, FormatError, PrepareError};
use conv::Conv;
use depthwise::Depthwise;
use eltwise::Add;
use gemm::Gemm;
pub use isa::Isa;
use op::{Int8Op, Kernel};
use pool::AvgPool;
use quant::{Grid, Multiplier};
use requant::Requant;
use softmax::Softmax;
use window::Window;

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
    let shape = |t: &TensorRef<'_>| -> Result<TVec<usize>, BuildError> {
        Ok(t.shape()
            .map_err(|_| FormatError::Missing("static tensor shape"))?
            .into())
    };
    let mut mapped: std::collections::HashMap<OutletId, OutletId> = Default::default();
    for (at, (&source, &outer)) in sub.input_outlets()?.iter().zip(inputs).enumerate() {
        let tensor = g.tensor(activation_inputs[at])?;
        let outer = match tensor.grid() {
            Some(grid) => {
                let op = Int8Op {
                    kernel: Arc::new(Kernel::Dequantize(grid)),
                    shape: shape(&tensor)?,
                };
                model.wire_node(format!("#{index} {name}/dequantize{at}"), op, &[outer])?[0]
            }
            None => outer,
        };
        mapped.insert(source, outer);
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
            let float = mapped[outlet];
            let tensor = g.tensor(t)?;
            Ok(match tensor.grid() {
                Some(grid) => {
                    let op = Int8Op {
                        kernel: Arc::new(Kernel::Quantize(grid)),
                        shape: shape(&tensor)?,
                    };
                    model.wire_node(format!("#{index} {name}/quantize{at}"), op, &[float])?[0]
                }
                None => float,
            })
        })
        .collect()
}

/// What an op becomes in the int8 graph.
enum Wire {
    Kernel(Arc<Kernel>, Vec<usize>),
    Reshape(Vec<usize>, Vec<usize>),
}

/// The main graph of a `.tflite`, read in place.
struct Graph<'a> {
    tensors: Vector<'a, ForwardsUOffset<fb::Tensor<'a>>>,
    buffers: Vector<'a, ForwardsUOffset<fb::Buffer<'a>>>,
    codes: Vector<'a, ForwardsUOffset<fb::OperatorCode<'a>>>,
    ops: Vector<'a, ForwardsUOffset<fb::Operator<'a>>>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// One tensor of the graph and its constant data, if any.
struct TensorRef<'a> {
    t: fb::Tensor<'a>,
    data: Option<&'a [u8]>,
}

impl<'a> Graph<'a> {
    fn new(bytes: &'a [u8]) -> Result<Graph<'a>, FormatError> {
        let (m, g) = flat::first_subgraph(bytes)?;
        let ids = |v: Option<Vector<'a, i32>>| -> Vec<usize> {
            v.into_iter()
                .flatten()
                .filter_map(|t| usize::try_from(t).ok())
                .collect()
        };
        Ok(Graph {
            tensors: g.tensors().ok_or(FormatError::Missing("tensors"))?,
            buffers: m.buffers().ok_or(FormatError::Missing("buffers"))?,
            codes: m
                .operator_codes()
                .ok_or(FormatError::Missing("operator codes"))?,
            ops: g.operators().unwrap_or_default(),
            inputs: ids(g.inputs()),
            outputs: ids(g.outputs()),
        })
    }

    fn tensor(&self, t: usize) -> Result<TensorRef<'a>, FormatError> {
        if t >= self.tensors.len() {
            return Err(FormatError::TensorIndex(t));
        }
        let tensor = self.tensors.get(t);
        let buffer = tensor.buffer() as usize;
        let data = (buffer < self.buffers.len())
            .then(|| self.buffers.get(buffer).data())
            .flatten()
            .map(|d| d.bytes())
            .filter(|d| !d.is_empty());
        Ok(TensorRef { t: tensor, data })
    }

    fn op_name(&self, op: &fb::Operator<'_>) -> String {
        let code = op.opcode_index() as usize;
        if code >= self.codes.len() {
            return "?".into();
        }
        let builtin = inspect::builtin(&self.codes.get(code));
        builtin
            .variant_name()
            .map_or_else(|| format!("builtin {}", builtin.0), str::to_string)
    }

    /// The int8 kernel for op `index`, with its weights packed for `isa`, or why there is none.
    fn kernel(&self, index: usize, isa: Isa) -> Result<Wire, Uncovered> {
        let op = self.ops.get(index);
        let name = self.op_name(&op);
        let ids: Vec<i32> = op.inputs().into_iter().flatten().collect();
        let input = |i: usize| -> Result<TensorRef<'a>, Uncovered> {
            let t = *ids.get(i).ok_or(Uncovered::InputLeftOut(i))?;
            Ok(self.tensor(usize::try_from(t).map_err(|_| Uncovered::InputLeftOut(i))?)?)
        };
        let outs: Vec<i32> = op.outputs().into_iter().flatten().collect();
        let &[out] = outs.as_slice() else {
            return Err(Uncovered::Outputs(outs.len()));
        };
        let out = self.tensor(usize::try_from(out).map_err(|_| FormatError::TensorIndex(0))?)?;
        let out_shape = out.shape()?;
        // Only the ops with a kernel have their options read: flat.rs models no others'.
        let options = match name.as_str() {
            "CONV_2D" | "DEPTHWISE_CONV_2D" | "ADD" | "AVERAGE_POOL_2D" | "SOFTMAX" => {
                flat::read_options(index, &op)?
            }
            _ => Options::None,
        };
        let kernel = match (name.as_str(), options) {
            (
                "CONV_2D",
                Options::Conv2D {
                    padding,
                    stride,
                    act,
                    dilation,
                },
            ) => {
                no_dilation(dilation)?;
                let (x, w) = (input(0)?, input(1)?);
                let (grid, out_grid) = (x.int8_grid("input")?, out.int8_grid("output")?);
                let [_, h, wd, cin] = image(&x.shape()?)?;
                let filter = w.shape()?;
                let &[cout, kh, kw, filter_cin] = filter.as_slice() else {
                    return Err(Uncovered::Filter(filter));
                };
                if filter_cin != cin {
                    return Err(Uncovered::Grouped {
                        input: cin,
                        filter: filter_cin,
                    });
                }
                let window = window([h, wd, cin], [kh, kw], stride, padding, &out_shape, cout)?;
                let (weights, scales) = w.per_channel_weights(cout, 0)?;
                let bias = bias(ids.get(2).copied(), self, cout)?;
                let requant = requant(grid, &scales, out_grid, act)?;
                let k = kh * kw * cin;
                Kernel::Conv(Conv {
                    window,
                    input_zero_point: grid.zero_point as i8,
                    gemm: Gemm::new(weights, cout, k, &bias, grid.zero_point, requant, isa),
                })
            }
            (
                "DEPTHWISE_CONV_2D",
                Options::Depthwise {
                    padding,
                    stride,
                    multiplier,
                    act,
                    dilation,
                },
            ) => {
                no_dilation(dilation)?;
                let (x, w) = (input(0)?, input(1)?);
                let (grid, out_grid) = (x.int8_grid("input")?, out.int8_grid("output")?);
                let [_, h, wd, c] = image(&x.shape()?)?;
                let filter = w.shape()?;
                let &[1, kh, kw, filter_c] = filter.as_slice() else {
                    return Err(Uncovered::Filter(filter));
                };
                if multiplier != 1 || filter_c != c {
                    return Err(Uncovered::DepthMultiplier(multiplier));
                }
                let window = window([h, wd, c], [kh, kw], stride, padding, &out_shape, c)?;
                let (weights, scales) = w.per_channel_weights(c, 3)?;
                let bias = bias(ids.get(2).copied(), self, c)?;
                let requant = requant(grid, &scales, out_grid, act)?;
                let zero = grid.zero_point as i8;
                Kernel::Depthwise(Depthwise::new(window, zero, weights, &bias, requant, isa))
            }
            ("ADD", Options::Arith { act, .. }) => {
                let (a, b) = (input(0)?, input(1)?);
                if a.shape()? != out_shape || b.shape()? != out_shape {
                    return Err(Uncovered::Broadcast);
                }
                let out_grid = out.int8_grid("output")?;
                let (a, b) = (a.int8_grid("input")?, b.int8_grid("input")?);
                Kernel::Add(
                    Add::new(a, b, out_grid, range(act, out_grid)?).ok_or(Uncovered::Rescale)?,
                )
            }
            (
                "AVERAGE_POOL_2D",
                Options::Pool2D {
                    padding,
                    stride,
                    filter,
                    act,
                },
            ) => {
                let x = input(0)?;
                let out_grid = out.int8_grid("output")?;
                if x.int8_grid("input")? != out_grid {
                    return Err(Uncovered::Regrid);
                }
                let [_, h, wd, c] = image(&x.shape()?)?;
                let filter = filter.map(|f| usize::try_from(f).unwrap_or(0));
                let window = window([h, wd, c], filter, stride, padding, &out_shape, c)?;
                Kernel::AvgPool(AvgPool {
                    window,
                    range: range(act, out_grid)?,
                })
            }
            ("SOFTMAX", Options::Softmax { beta }) => {
                let x = input(0)?.int8_grid("input")?;
                Kernel::Softmax(Softmax::new(x.scale, beta, out.int8_grid("output")?))
            }
            ("QUANTIZE", _) if input(0)?.t.type_() == TensorType::FLOAT32 => {
                Kernel::Quantize(out.int8_grid("output")?)
            }
            ("DEQUANTIZE", _) if out.t.type_() == TensorType::FLOAT32 => {
                Kernel::Dequantize(input(0)?.int8_grid("input")?)
            }
            ("RESHAPE" | "SQUEEZE", _) => {
                let x = input(0)?;
                x.int8_grid("input")?;
                return Ok(Wire::Reshape(x.shape()?, out_shape));
            }
            _ => return Err(Uncovered::NoKernel(name)),
        };
        Ok(Wire::Kernel(Arc::new(kernel), out_shape))
    }
}

impl<'a> TensorRef<'a> {
    fn name(&self) -> String {
        self.t.name().unwrap_or_default().to_string()
    }

    fn shape(&self) -> Result<Vec<usize>, Uncovered> {
        self.t
            .shape()
            .into_iter()
            .flatten()
            .map(|d| usize::try_from(d).map_err(|_| Uncovered::Dynamic(self.name())))
            .collect()
    }

    /// tract's type for the tensor as a graph input.
    fn datum(&self) -> DatumType {
        match (self.t.type_(), self.grid()) {
            (TensorType::INT8, Some(g)) => DatumType::QI8(QParams::ZpScale {
                zero_point: g.zero_point,
                scale: g.scale,
            }),
            (TensorType::INT8, None) => DatumType::I8,
            (TensorType::UINT8, _) => DatumType::U8,
            _ => DatumType::F32,
        }
    }

    /// Its per-tensor int8 grid, if it has one.
    fn grid(&self) -> Option<Grid> {
        let q = self.t.quantization()?;
        let (scale, zp) = (q.scale()?, q.zero_point()?);
        let usable = self.t.type_() == TensorType::INT8
            && scale.len() == 1
            && zp.len() == 1
            && scale.get(0).is_finite()
            && scale.get(0) > 0.0
            && (-128..=127).contains(&zp.get(0));
        usable.then(|| Grid {
            scale: scale.get(0),
            zero_point: zp.get(0) as i32,
        })
    }

    fn int8_grid(&self, what: &'static str) -> Result<Grid, Uncovered> {
        self.grid().ok_or_else(|| Uncovered::NotInt8 {
            what,
            ty: ElemType::from_tflite(self.t.type_()).name(),
        })
    }

    /// Constant int8 weights quantized symmetrically per channel along `dim` (or per tensor):
    /// the raw values, and one scale per channel.
    fn per_channel_weights(
        &self,
        channels: usize,
        dim: usize,
    ) -> Result<(&'a [i8], Vec<f32>), Uncovered> {
        let data = self.data.ok_or(Uncovered::Weights("are not constant"))?;
        if self.t.type_() != TensorType::INT8 {
            return Err(Uncovered::Weights("are not int8"));
        }
        let q = self
            .t
            .quantization()
            .ok_or(Uncovered::Weights("are not quantized"))?;
        let scales: Vec<f32> = q.scale().into_iter().flatten().collect();
        if q.zero_point().into_iter().flatten().any(|z| z != 0) {
            return Err(Uncovered::Weights("are asymmetric (zero point ≠ 0)"));
        }
        let scales = match scales.len() {
            1 => vec![scales[0]; channels],
            n if n == channels && q.quantized_dimension() as usize == dim => scales,
            n => {
                return Err(Uncovered::WeightScales {
                    scales: n,
                    channels,
                })
            }
        };
        if data.len() != self.shape()?.iter().product::<usize>() {
            return Err(Uncovered::Weights("do not fill their shape"));
        }
        // SAFETY: i8 and u8 have the same size and alignment.
        let values = unsafe { std::slice::from_raw_parts(data.as_ptr() as *const i8, data.len()) };
        Ok((values, scales))
    }
}

fn image(shape: &[usize]) -> Result<[usize; 4], Uncovered> {
    match *shape {
        [1, h, w, c] => Ok([1, h, w, c]),
        _ => Err(Uncovered::NotImage(shape.to_vec())),
    }
}

fn no_dilation(dilation: [i32; 2]) -> Result<(), Uncovered> {
    (dilation == [1, 1])
        .then_some(())
        .ok_or(Uncovered::Dilation(dilation))
}

fn window(
    input: [usize; 3],
    filter: [usize; 2],
    stride: [i32; 2],
    padding: fb::Padding,
    out_shape: &[usize],
    out_channels: usize,
) -> Result<Window, Uncovered> {
    let strides = stride.map(|s| usize::try_from(s).unwrap_or(0));
    let w = Window::new(input, filter, strides, padding).ok_or(Uncovered::Window {
        input,
        filter,
        stride,
    })?;
    let expected = vec![1, w.output[0], w.output[1], out_channels];
    if out_shape != expected {
        return Err(Uncovered::OutputShape {
            got: out_shape.to_vec(),
            expected,
        });
    }
    Ok(w)
}

/// The int32 bias (zeros when left out).
fn bias(id: Option<i32>, g: &Graph<'_>, channels: usize) -> Result<Vec<i32>, Uncovered> {
    let Some(t) = id.and_then(|t| usize::try_from(t).ok()) else {
        return Ok(vec![0; channels]);
    };
    let t = g.tensor(t)?;
    match t.data {
        Some(data) if t.t.type_() == TensorType::INT32 && data.len() == channels * 4 => Ok(data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        _ => Err(Uncovered::Bias),
    }
}

/// A convolution's requantization onto `out`, clamped by `act`: per output channel,
/// `input_scale · weight_scale / output_scale` in f64 as TFLite's
/// `PopulateConvolutionQuantizationParams` computes it.
fn requant(
    x: Grid,
    weight_scales: &[f32],
    out: Grid,
    act: ActivationFunctionType,
) -> Result<Requant, Uncovered> {
    let multipliers = weight_scales
        .iter()
        .map(|&s| {
            let real = x.scale as f64 * s as f64 / out.scale as f64;
            Multiplier::new(real).ok_or(Uncovered::Multiplier(real))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Requant::new(&multipliers, out.zero_point, range(act, out)?))
}

fn range(act: ActivationFunctionType, out: Grid) -> Result<(i32, i32), Uncovered> {
    quant::activation_range(act, out.scale, out.zero_point)
        .ok_or(Uncovered::Activation(act.variant_name().unwrap_or("?")))
}
