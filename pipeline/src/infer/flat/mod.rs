//! An owned, editable copy of a `.tflite` classifier's main graph, read from and written back to
//! the standard flatbuffer, so model preparation can rewrite a graph and still hand tract (or
//! LiteRT, to check) an ordinary `.tflite`.
//!
//! Only what image classifiers use is modelled: one subgraph, and builtin options for the ops
//! listed in [`Options`]. Anything else is an error naming it, never silently dropped.

use tract_tflite::tflite::{
    self as fb, ActivationFunctionType, BuiltinOperator, Padding, TensorType,
};

use crate::infer::error::FormatError;

mod write;

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub description: Option<String>,
    pub opcodes: Vec<OpCode>,
    /// Constant data by buffer index; index 0 is the empty sentinel the format reserves.
    pub buffers: Vec<Vec<u8>>,
    pub tensors: Vec<Tensor>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpCode {
    pub builtin: BuiltinOperator,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i32>,
    pub ty: TensorType,
    pub buffer: u32,
    pub quant: Option<QuantParams>,
}

/// Affine quantization, per tensor (one scale) or per channel along `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParams {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub dim: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub opcode: u32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: Options,
}

/// Builtin options of the ops image classifiers are made of.
#[derive(Debug, Clone, PartialEq)]
pub enum Options {
    None,
    Conv2D {
        padding: Padding,
        stride: [i32; 2],
        act: ActivationFunctionType,
        dilation: [i32; 2],
    },
    Depthwise {
        padding: Padding,
        stride: [i32; 2],
        multiplier: i32,
        act: ActivationFunctionType,
        dilation: [i32; 2],
    },
    Pool2D {
        padding: Padding,
        stride: [i32; 2],
        filter: [i32; 2],
        act: ActivationFunctionType,
    },
    FullyConnected {
        act: ActivationFunctionType,
        keep_num_dims: bool,
    },
    Softmax {
        beta: f32,
    },
    Concatenation {
        axis: i32,
        act: ActivationFunctionType,
    },
    /// ADD, SUB and MUL options share this shape.
    Arith {
        kind: fb::BuiltinOptions,
        act: ActivationFunctionType,
    },
    Reshape {
        new_shape: Option<Vec<i32>>,
    },
    Reducer {
        keep_dims: bool,
    },
    Squeeze {
        dims: Vec<i32>,
    },
    Pad,
}

impl Model {
    pub fn read(bytes: &[u8]) -> Result<Model, FormatError> {
        let m = fb::root_as_model(bytes).map_err(|e| FormatError::not_flatbuffer(&e))?;
        let graphs = m.subgraphs().ok_or(FormatError::Missing("subgraph"))?;
        if graphs.len() != 1 {
            return Err(FormatError::Subgraphs(graphs.len()));
        }
        let g = graphs.get(0);
        let opcodes = m
            .operator_codes()
            .ok_or(FormatError::Missing("operator codes"))?
            .iter()
            .map(OpCode::read)
            .collect::<Result<_, _>>()?;
        let buffers = m
            .buffers()
            .ok_or(FormatError::Missing("buffers"))?
            .iter()
            .map(|b| b.data().map(|d| d.bytes().to_vec()).unwrap_or_default())
            .collect();
        let tensors = g
            .tensors()
            .ok_or(FormatError::Missing("tensors"))?
            .iter()
            .map(Tensor::read)
            .collect();
        let ops = g
            .operators()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, op)| Op::read(i, &op))
            .collect::<Result<_, FormatError>>()?;
        Ok(Model {
            description: m.description().map(str::to_string),
            opcodes,
            buffers,
            tensors,
            inputs: g.inputs().map(|v| v.iter().collect()).unwrap_or_default(),
            outputs: g.outputs().map(|v| v.iter().collect()).unwrap_or_default(),
            ops,
        })
    }

    /// A model of operator `index` of `bytes` alone: its tensors and constants, its non-constant
    /// inputs as the graph's inputs and its outputs as the graph's outputs. Only that op's data
    /// is copied.
    pub fn single_op(bytes: &[u8], index: usize) -> Result<Model, FormatError> {
        let (m, g) = first_subgraph(bytes)?;
        let all_ops = g.operators().unwrap_or_default();
        if index >= all_ops.len() {
            return Err(FormatError::OpIndex(index));
        }
        let mut op = Op::read(index, &all_ops.get(index))?;
        let codes = m
            .operator_codes()
            .ok_or(FormatError::Missing("operator codes"))?;
        let code = op.opcode as usize;
        if code >= codes.len() {
            return Err(FormatError::OpcodeIndex { op: index, code });
        }
        let all_tensors = g.tensors().ok_or(FormatError::Missing("tensors"))?;
        let all_buffers = m.buffers().ok_or(FormatError::Missing("buffers"))?;
        let mut model = Model {
            description: None,
            opcodes: vec![OpCode::read(codes.get(code))?],
            buffers: vec![vec![]],
            tensors: vec![],
            inputs: vec![],
            outputs: vec![],
            ops: vec![],
        };
        let mut remap = std::collections::HashMap::new();
        for &t in op.inputs.iter().chain(&op.outputs) {
            let Ok(at) = usize::try_from(t) else {
                continue; // an optional input left out
            };
            if remap.contains_key(&t) {
                continue;
            }
            if at >= all_tensors.len() {
                return Err(FormatError::TensorIndex(at));
            }
            let mut tensor = Tensor::read(all_tensors.get(at));
            let data = (tensor.buffer as usize)
                .lt(&all_buffers.len())
                .then(|| all_buffers.get(tensor.buffer as usize).data())
                .flatten()
                .map(|d| d.bytes().to_vec())
                .unwrap_or_default();
            let constant = !data.is_empty();
            tensor.buffer = if constant {
                model.buffers.push(data);
                model.buffers.len() as u32 - 1
            } else {
                0
            };
            let new = model.add_tensor(tensor);
            remap.insert(t, new);
            if !constant && op.inputs.contains(&t) {
                model.inputs.push(new);
            }
        }
        for t in op.inputs.iter_mut().chain(op.outputs.iter_mut()) {
            if let Some(&new) = remap.get(t) {
                *t = new;
            }
        }
        model.outputs = op.outputs.clone();
        op.opcode = 0;
        model.ops.push(op);
        Ok(model)
    }

    /// Index of `builtin` in the opcode table, adding it if absent.
    pub fn opcode(&mut self, builtin: BuiltinOperator) -> u32 {
        let at = self
            .opcodes
            .iter()
            .position(|c| c.builtin == builtin)
            .unwrap_or_else(|| {
                self.opcodes.push(OpCode {
                    builtin,
                    version: 1,
                });
                self.opcodes.len() - 1
            });
        at as u32
    }

    pub fn op_name(&self, op: &Op) -> &'static str {
        self.opcodes
            .get(op.opcode as usize)
            .and_then(|c| c.builtin.variant_name())
            .unwrap_or("?")
    }

    pub fn add_tensor(&mut self, tensor: Tensor) -> i32 {
        self.tensors.push(tensor);
        self.tensors.len() as i32 - 1
    }

    /// Adds a constant tensor holding `data` (raw little-endian bytes).
    pub fn add_const(
        &mut self,
        name: String,
        shape: Vec<i32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> i32 {
        self.buffers.push(data);
        let buffer = self.buffers.len() as u32 - 1;
        self.add_tensor(Tensor {
            name,
            shape,
            ty,
            buffer,
            quant: None,
        })
    }

    /// Gives tensor `t` new constant data. Its old buffer is freed at once unless another tensor
    /// shares it.
    pub fn set_data(&mut self, t: usize, data: Vec<u8>) {
        let old = self.tensors[t].buffer;
        let shared = self
            .tensors
            .iter()
            .enumerate()
            .any(|(i, other)| i != t && other.buffer == old);
        if old != 0 && !shared {
            self.buffers[old as usize] = data;
        } else {
            self.buffers.push(data);
            self.tensors[t].buffer = self.buffers.len() as u32 - 1;
        }
    }

    /// The constant data behind tensor `t`, if it is a constant.
    pub fn data(&self, t: i32) -> Option<&[u8]> {
        let buffer = self.tensors.get(t as usize)?.buffer as usize;
        self.buffers
            .get(buffer)
            .filter(|d| !d.is_empty())
            .map(Vec::as_slice)
    }
}

impl OpCode {
    fn read(c: fb::OperatorCode<'_>) -> Result<OpCode, FormatError> {
        match super::inspect::builtin(&c) {
            BuiltinOperator::CUSTOM => Err(FormatError::CustomOp(
                c.custom_code().unwrap_or("?").to_owned(),
            )),
            builtin => Ok(OpCode {
                builtin,
                version: c.version(),
            }),
        }
    }
}

impl Tensor {
    fn read(t: fb::Tensor<'_>) -> Tensor {
        Tensor {
            name: t.name().unwrap_or_default().to_string(),
            shape: t.shape().map(|s| s.iter().collect()).unwrap_or_default(),
            ty: t.type_(),
            buffer: t.buffer(),
            quant: t.quantization().and_then(|q| {
                let scale: Vec<f32> = q.scale()?.iter().collect();
                let zero_point: Vec<i64> = q.zero_point()?.iter().collect();
                (!scale.is_empty()).then_some(QuantParams {
                    scale,
                    zero_point,
                    dim: q.quantized_dimension(),
                })
            }),
        }
    }
}

impl Op {
    fn read(index: usize, op: &fb::Operator<'_>) -> Result<Op, FormatError> {
        Ok(Op {
            opcode: op.opcode_index(),
            inputs: op.inputs().map(|v| v.iter().collect()).unwrap_or_default(),
            outputs: op.outputs().map(|v| v.iter().collect()).unwrap_or_default(),
            options: read_options(index, op)?,
        })
    }
}

/// The model in `bytes` (verified, so a corrupt file is an error, not undefined behaviour) and
/// its first subgraph, the one a classifier runs.
pub(crate) fn first_subgraph(
    bytes: &[u8],
) -> Result<(fb::Model<'_>, fb::SubGraph<'_>), FormatError> {
    let m = fb::root_as_model(bytes).map_err(|e| FormatError::not_flatbuffer(&e))?;
    let g = m
        .subgraphs()
        .filter(|g| !g.is_empty())
        .ok_or(FormatError::Missing("subgraph"))?
        .get(0);
    Ok((m, g))
}

/// The options of operator #`index`.
pub(crate) fn read_options(index: usize, op: &fb::Operator<'_>) -> Result<Options, FormatError> {
    use fb::BuiltinOptions as B;
    let missing = || FormatError::MissingOptions {
        op: index,
        kind: format!("{:?}", op.builtin_options_type()),
    };
    Ok(match op.builtin_options_type() {
        B::NONE => Options::None,
        B::Conv2DOptions => {
            let o = op
                .builtin_options_as_conv_2_doptions()
                .ok_or_else(missing)?;
            Options::Conv2D {
                padding: o.padding(),
                stride: [o.stride_h(), o.stride_w()],
                act: o.fused_activation_function(),
                dilation: [o.dilation_h_factor(), o.dilation_w_factor()],
            }
        }
        B::DepthwiseConv2DOptions => {
            let o = op
                .builtin_options_as_depthwise_conv_2_doptions()
                .ok_or_else(missing)?;
            Options::Depthwise {
                padding: o.padding(),
                stride: [o.stride_h(), o.stride_w()],
                multiplier: o.depth_multiplier(),
                act: o.fused_activation_function(),
                dilation: [o.dilation_h_factor(), o.dilation_w_factor()],
            }
        }
        B::Pool2DOptions => {
            let o = op
                .builtin_options_as_pool_2_doptions()
                .ok_or_else(missing)?;
            Options::Pool2D {
                padding: o.padding(),
                stride: [o.stride_h(), o.stride_w()],
                filter: [o.filter_height(), o.filter_width()],
                act: o.fused_activation_function(),
            }
        }
        B::FullyConnectedOptions => {
            let o = op
                .builtin_options_as_fully_connected_options()
                .ok_or_else(missing)?;
            if o.weights_format() != fb::FullyConnectedOptionsWeightsFormat::DEFAULT {
                return Err(FormatError::ShuffledWeights { op: index });
            }
            Options::FullyConnected {
                act: o.fused_activation_function(),
                keep_num_dims: o.keep_num_dims(),
            }
        }
        B::SoftmaxOptions => Options::Softmax {
            beta: op
                .builtin_options_as_softmax_options()
                .ok_or_else(missing)?
                .beta(),
        },
        B::ConcatenationOptions => {
            let o = op
                .builtin_options_as_concatenation_options()
                .ok_or_else(missing)?;
            Options::Concatenation {
                axis: o.axis(),
                act: o.fused_activation_function(),
            }
        }
        kind @ B::AddOptions => Options::Arith {
            kind,
            act: op
                .builtin_options_as_add_options()
                .ok_or_else(missing)?
                .fused_activation_function(),
        },
        kind @ B::SubOptions => Options::Arith {
            kind,
            act: op
                .builtin_options_as_sub_options()
                .ok_or_else(missing)?
                .fused_activation_function(),
        },
        kind @ B::MulOptions => Options::Arith {
            kind,
            act: op
                .builtin_options_as_mul_options()
                .ok_or_else(missing)?
                .fused_activation_function(),
        },
        B::ReshapeOptions => Options::Reshape {
            new_shape: op
                .builtin_options_as_reshape_options()
                .ok_or_else(missing)?
                .new_shape()
                .map(|s| s.iter().collect()),
        },
        B::ReducerOptions => Options::Reducer {
            keep_dims: op
                .builtin_options_as_reducer_options()
                .ok_or_else(missing)?
                .keep_dims(),
        },
        B::SqueezeOptions => Options::Squeeze {
            dims: op
                .builtin_options_as_squeeze_options()
                .ok_or_else(missing)?
                .squeeze_dims()
                .map(|s| s.iter().collect())
                .unwrap_or_default(),
        },
        B::PadOptions => Options::Pad,
        other => {
            return Err(FormatError::UnknownOptions {
                op: index,
                kind: other.variant_name().unwrap_or("?"),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_reads_back_the_same_model_without_growing_the_builder() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/efficientnet_lite0.int8.tflite"
        );
        let model = Model::read(&std::fs::read(path).unwrap()).unwrap();
        let bound = model.serialized_bound();
        let bytes = model.clone().into_bytes();
        assert_eq!(Model::read(&bytes).unwrap(), model);
        // A builder that outgrew its first allocation doubled it and copied the weights.
        assert_eq!(bytes.capacity(), bound, "{} bytes written", bytes.len());
    }
}
