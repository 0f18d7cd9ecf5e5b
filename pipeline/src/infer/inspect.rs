//! Reads a `.tflite` flatbuffer before tract sees it: what the graph holds, whether it needs
//! [`prepare`](super::prepare)'s rewriting, and whether tract can run the (prepared) graph
//! correctly — what it cannot is refused here, naming the op.

use tract_tflite::tflite::{self, BuiltinOperator, TensorType};

use super::error::FormatError;

/// Element type of a graph tensor, as far as scened cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    I8,
    U8,
    I32,
    Other(i8),
}

impl ElemType {
    pub(crate) fn from_tflite(t: TensorType) -> Self {
        match t {
            TensorType::FLOAT32 => Self::F32,
            TensorType::INT8 => Self::I8,
            TensorType::UINT8 => Self::U8,
            TensorType::INT32 => Self::I32,
            other => Self::Other(other.0),
        }
    }

    /// The spelling numpy and the `.npy` format use, for messages and dumps.
    pub fn name(self) -> String {
        match self {
            Self::F32 => "float32".into(),
            Self::I8 => "int8".into(),
            Self::U8 => "uint8".into(),
            Self::I32 => "int32".into(),
            Self::Other(code) => format!("tflite type {code}"),
        }
    }

    pub fn is_quantized(self) -> bool {
        self.grid_range().is_some()
    }

    /// The quantized values an 8-bit type holds, e.g. −128..=127 for int8.
    pub fn grid_range(self) -> Option<(i32, i32)> {
        match self {
            Self::I8 => Some((-128, 127)),
            Self::U8 => Some((0, 255)),
            _ => None,
        }
    }
}

/// Affine quantization of a tensor: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    pub scale: f32,
    pub zero_point: i32,
}

impl Quant {
    pub fn real(self, q: i32) -> f32 {
        self.scale * (q - self.zero_point) as f32
    }

    /// `clamp(round_half_away_from_zero(x / scale) + zero_point)` into `range`, in f32 as TFLite
    /// and the golden outputs compute it.
    pub fn quantize(self, x: f32, (lo, hi): (i32, i32)) -> i32 {
        ((x / self.scale).round() + self.zero_point as f32).clamp(lo as f32, hi as f32) as i32
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub elem: ElemType,
    pub shape: Vec<i32>,
    /// Per-tensor quantization; per-channel tensors (weights) report `None`.
    pub quant: Option<Quant>,
}

#[derive(Debug, Clone)]
pub struct OpInfo {
    /// Position in the graph's operator list.
    pub index: usize,
    pub name: String,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// Optional inputs left out (written as tensor −1), e.g. a FULLY_CONNECTED without bias.
    pub omitted_inputs: usize,
}

/// What a model file holds: its main graph's ops and its input and output tensors.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub ops: Vec<OpInfo>,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

/// An op tract would translate but not run correctly, or not translate at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub op: String,
    pub index: usize,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "op {} (operator #{}): {}",
            self.op, self.index, self.reason
        )
    }
}

/// Ops registered by tract-tflite 0.23.9 (`src/ops/*.rs`); the crate is pinned to that version
/// so this list cannot drift silently. An op outside it fails inside tract with a debug dump;
/// naming it up front is the clear error.
const TRACT_OPS: &[&str] = &[
    "ABS",
    "ADD",
    "AVERAGE_POOL_2D",
    "BATCH_MATMUL",
    "BROADCAST_TO",
    "CEIL",
    "CONCATENATION",
    "CONV_2D",
    "COS",
    "DEPTHWISE_CONV_2D",
    "DIV",
    "EQUAL",
    "EXP",
    "EXPAND_DIMS",
    "FLOOR",
    "FULLY_CONNECTED",
    "GREATER",
    "GREATER_EQUAL",
    "HARD_SWISH",
    "LEAKY_RELU",
    "LESS",
    "LESS_EQUAL",
    "LOG",
    "LOGICAL_AND",
    "LOGICAL_NOT",
    "LOGICAL_OR",
    "LOGISTIC",
    "MAXIMUM",
    "MAX_POOL_2D",
    "MEAN",
    "MINIMUM",
    "MUL",
    "NOT_EQUAL",
    "PAD",
    "PADV2",
    "REDUCE_MAX",
    "REDUCE_MIN",
    "REDUCE_PROD",
    "RELU",
    "RELU6",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR",
    "RSQRT",
    "SELECT",
    "SELECT_V2",
    "SHAPE",
    "SIN",
    "SLICE",
    "SOFTMAX",
    "SQRT",
    "SQUARE",
    "SQUEEZE",
    "STRIDED_SLICE",
    "SUB",
    "SUM",
    "TANH",
    "TRANSPOSE",
];

/// Parses the flatbuffer (verified, so a corrupt file is an error, not undefined behaviour).
pub fn inspect(bytes: &[u8]) -> Result<Inspection, FormatError> {
    let (model, graph) = super::flat::first_subgraph(bytes)?;
    let tensors = graph.tensors().ok_or(FormatError::Missing("tensors"))?;
    let codes = model
        .operator_codes()
        .ok_or(FormatError::Missing("operator codes"))?;
    // Only called with indices ≥ 0: optional inputs (−1) are filtered out first.
    let tensor = |id: i32| -> Result<TensorInfo, FormatError> {
        let index = id as usize;
        if index >= tensors.len() {
            return Err(FormatError::TensorIndex(index));
        }
        let t = tensors.get(index);
        let quant = t.quantization().and_then(|q| {
            let (scale, zp) = (q.scale()?, q.zero_point()?);
            (scale.len() == 1 && zp.len() == 1).then(|| Quant {
                scale: scale.get(0),
                zero_point: zp.get(0) as i32,
            })
        });
        Ok(TensorInfo {
            name: t.name().unwrap_or_default().to_string(),
            elem: ElemType::from_tflite(t.type_()),
            shape: t.shape().map(|s| s.iter().collect()).unwrap_or_default(),
            quant,
        })
    };
    // Optional inputs are written as tensor index -1; they carry nothing to inspect.
    let tensor_list =
        |ids: Option<flatbuffers::Vector<'_, i32>>| -> Result<Vec<TensorInfo>, FormatError> {
            ids.map(|v| v.iter().filter(|&i| i >= 0).map(tensor).collect())
                .unwrap_or(Ok(vec![]))
        };
    let mut ops = vec![];
    for (index, op) in graph.operators().unwrap_or_default().iter().enumerate() {
        let code_index = op.opcode_index() as usize;
        if code_index >= codes.len() {
            return Err(FormatError::OpcodeIndex {
                op: index,
                code: code_index,
            });
        }
        ops.push(OpInfo {
            index,
            name: op_name(codes.get(code_index)),
            inputs: tensor_list(op.inputs())?,
            outputs: tensor_list(op.outputs())?,
            omitted_inputs: op
                .inputs()
                .map_or(0, |v| v.iter().filter(|&i| i < 0).count()),
        });
    }
    Ok(Inspection {
        ops,
        inputs: tensor_list(graph.inputs())?,
        outputs: tensor_list(graph.outputs())?,
    })
}

/// Builtin codes past 127 live in `builtin_code`; the deprecated i8 field holds a placeholder.
pub fn builtin(code: &tflite::OperatorCode<'_>) -> BuiltinOperator {
    if code.deprecated_builtin_code() as i32 == BuiltinOperator::PLACEHOLDER_FOR_GREATER_OP_CODES.0
    {
        code.builtin_code()
    } else {
        BuiltinOperator(code.deprecated_builtin_code() as i32)
    }
}

fn op_name(code: tflite::OperatorCode<'_>) -> String {
    match builtin(&code) {
        BuiltinOperator::CUSTOM => format!("CUSTOM:{}", code.custom_code().unwrap_or("?")),
        b => b
            .variant_name()
            .map_or_else(|| format!("builtin {}", b.0), str::to_string),
    }
}

impl Inspection {
    /// The first op tract cannot run correctly, if any.
    pub fn refusal(&self) -> Option<Refusal> {
        self.ops.iter().find_map(|op| {
            op_refusal(op).map(|reason| Refusal {
                op: op.name.clone(),
                index: op.index,
                reason,
            })
        })
    }

    /// Whether [`prepare`](super::prepare) must rewrite the graph for tract: anything quantized,
    /// or a MEAN.
    pub fn needs_preparation(&self) -> bool {
        self.ops.iter().any(|op| {
            op.name == "MEAN"
                || op
                    .inputs
                    .iter()
                    .chain(&op.outputs)
                    .any(|t| t.elem.is_quantized())
        })
    }

    /// What the model computes in: the quantized type of its tensors if it has one (an int8
    /// model with float input and output is still int8), else float32.
    pub fn precision(&self) -> ElemType {
        self.ops
            .iter()
            .flat_map(|op| op.inputs.iter().chain(&op.outputs))
            .map(|t| t.elem)
            .find(|elem| elem.is_quantized())
            .unwrap_or(ElemType::F32)
    }

    /// Whether the graph's output is produced by a SOFTMAX, i.e. is already a probability.
    pub fn ends_with_softmax(&self) -> bool {
        let Some(out) = self.outputs.first() else {
            return false;
        };
        self.ops
            .iter()
            .any(|op| op.name == "SOFTMAX" && op.outputs.iter().any(|o| o.name == out.name))
    }
}

/// Whether tract-tflite has a translation for the builtin op called `name`.
pub fn tract_implements(name: &str) -> bool {
    TRACT_OPS.contains(&name)
}

/// Why tract-tflite cannot run an op it does not implement.
pub const UNIMPLEMENTED: &str = "not implemented by tract-tflite 0.23.9";

fn op_refusal(op: &OpInfo) -> Option<String> {
    if !tract_implements(&op.name) {
        return Some(UNIMPLEMENTED.into());
    }
    if op.omitted_inputs > 0 {
        return Some("an optional input is left out, which tract-tflite cannot read".into());
    }
    // Quantized graphs and MEAN never get here as written: preparation rewrites them first.
    let first = op.inputs.first()?;
    match op.name.as_str() {
        "FULLY_CONNECTED" if first.shape.len() != 2 => Some(format!(
            "tract needs a rank-2 input, this one has rank {}; reshape first or use a 1×1 CONV_2D",
            first.shape.len()
        )),
        _ => None,
    }
}
