//! Everything that can go wrong with a model, typed: a file that cannot be read or is not a
//! classifier scened can run ([`ModelError`], naming the file), and a frame that could not be
//! inferred ([`InferError`], counted by the pipeline, which goes on).

use std::path::PathBuf;

use super::inspect::Refusal;
use crate::contain::Panic;
use crate::error::TomlError;

/// Everything that can be wrong with a model file, each naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct ModelError {
    pub path: PathBuf,
    pub kind: ModelErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelErrorKind {
    #[error("cannot read model: {0}")]
    Read(#[source] std::io::Error),
    #[error("empty file, not a TFLite model")]
    Empty,
    #[error("{0}")]
    Format(FormatError),
    #[error("tract cannot run this model correctly: {0}")]
    Refused(Refusal),
    #[error("not an image classifier: {0}")]
    NotClassifier(NotClassifier),
    #[error("cannot be prepared for tract: {0}")]
    Prepare(PrepareError),
    #[error("{0}")]
    Metadata(MetaError),
    #[error("labels file {}: {found} labels for {expected} output classes", path.display())]
    LabelCount {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error(transparent)]
    Lowering(Box<super::int8::LoweringError>),
    #[error("tract failed to load it: {0}")]
    Tract(String),
    #[error("tract panicked loading it: {0}")]
    Panic(Panic),
}

/// A `.tflite` file whose flatbuffer does not hold what a model must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The verifier's reason, on one line.
    #[error("not a TFLite flatbuffer ({0})")]
    NotFlatbuffer(String),
    #[error("no {0}")]
    Missing(&'static str),
    #[error("{0} subgraphs; only single-graph classifiers can be prepared")]
    Subgraphs(usize),
    #[error("tensor index {0} out of range")]
    TensorIndex(usize),
    #[error("no operator #{0}")]
    OpIndex(usize),
    #[error("operator #{op} has opcode index {code} out of range")]
    OpcodeIndex { op: usize, code: usize },
    #[error("custom op {0}")]
    CustomOp(String),
    #[error("operator #{op}: options of type {kind} are missing")]
    MissingOptions { op: usize, kind: String },
    #[error("operator #{op}: FULLY_CONNECTED with shuffled weights")]
    ShuffledWeights { op: usize },
    #[error("operator #{op}: options {kind} are not understood by scened's model preparation")]
    UnknownOptions { op: usize, kind: &'static str },
}

impl FormatError {
    /// The flatbuffer verifier's error; its message spans lines (error, then the path to it).
    pub fn not_flatbuffer(e: &flatbuffers::InvalidFlatbuffer) -> Self {
        let why = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Self::NotFlatbuffer(why)
    }
}

/// A graph the load-time rewrite cannot prepare for tract.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("tensor {tensor}: cannot dequantize type {ty}")]
    DequantizeType { tensor: String, ty: String },
    #[error("tensor {tensor}: {values} values for shape {shape:?}")]
    ValueCount {
        tensor: String,
        values: usize,
        shape: Vec<i32>,
    },
    #[error("tensor {tensor}: bad quantized_dimension")]
    QuantizedDimension { tensor: String },
    #[error("tensor {tensor}: {scales} scales for {channels} channels")]
    ScaleCount {
        tensor: String,
        scales: usize,
        channels: i32,
    },
    #[error(
        "op MEAN (operator #{index}) on a rank-{rank} tensor; only global pooling of images \
         is supported"
    )]
    MeanRank { index: usize, rank: usize },
    #[error(
        "op MEAN (operator #{index}) over axes {axes:?}; tract computes float MEAN wrongly and \
         only the mean over height and width can be rewritten"
    )]
    MeanAxes {
        index: usize,
        axes: Option<Vec<i32>>,
    },
}

/// A graph that is not a single-image classifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotClassifier {
    #[error("{0} inputs, expected 1 image")]
    Inputs(usize),
    #[error("{0} outputs, expected 1 score vector")]
    Outputs(usize),
    #[error("input shape {0:?}, expected [1, height, width, 3]")]
    InputShape(Vec<i32>),
    #[error("input shape {0:?} has no pixels")]
    NoPixels(Vec<i32>),
    #[error("input element type {0} (with per-tensor quantization if 8-bit) not supported")]
    InputType(String),
    #[error("output shape {0:?}, expected [1, classes]")]
    OutputShape(Vec<i32>),
    #[error("output element type {0} not supported")]
    OutputType(String),
}

/// A model's sidecar or labels file, or a file of labels by name (groups, `eval --map`), that
/// cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Parse { path: PathBuf, error: TomlError },
    #[error("{}: input_size {declared:?} but the graph takes {height}×{width}", path.display())]
    InputSize {
        path: PathBuf,
        declared: [u32; 2],
        height: u32,
        width: u32,
    },
}

/// A frame that could not be inferred; the pipeline counts it and goes on.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("inference failed: {0}")]
    Tract(String),
    #[error("inference panicked: {0}")]
    Panic(Panic),
}
