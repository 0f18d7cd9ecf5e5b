//! The inference engine: a `.tflite` classifier run by tract.
//!
//! [`Engine::load`] does everything fallible and slow once — read, inspect, refuse what tract
//! would run wrongly, translate, optimize, plan. Each inference thread then calls
//! [`Engine::session`] once (tract's `spawn()`: a state with its own scratch buffers) and
//! [`Session::run`] per frame, so no frame pays for allocation or planning.

mod error;
pub mod fake_quant;
pub mod flat;
pub mod inspect;
pub mod int8;
pub mod meta;
pub mod prepare;
mod session;
pub mod stage;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_tflite::prelude::*;

use crate::contain;
pub use error::{
    FormatError, InferError, MetaError, ModelError, ModelErrorKind, NotClassifier, PrepareError,
};
use inspect::TensorInfo;
pub use inspect::{ElemType, Inspection, Quant, Refusal};
pub use meta::ModelMeta;
pub use session::{Inference, Session};

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Threads one inference may use (the calling thread counted): the int8 kernels' own pool
    /// ([`int8::threads`]), or tract's for a float model; 0 or 1 runs on the calling thread.
    pub threads: usize,
    /// Labels file overriding the sidecar's.
    pub labels: Option<PathBuf>,
    /// Run an int8 model through the whole-graph float lowering (the reference, and the path
    /// of models without int8 kernels) instead of the int8 kernels.
    pub lowered: bool,
}

/// What the model's input wants: geometry, element type, and the pixel → tensor mapping.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub height: u32,
    pub width: u32,
    pub elem: ElemType,
    pub quant: Option<Quant>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    datum: DatumType,
    /// Encoded value of each 8-bit pixel value per channel, as little-endian bytes of `elem`.
    /// Pixels have 256 values, so normalizing and quantizing reduce to one table lookup.
    lut: [Vec<u8>; 3],
}

impl InputSpec {
    fn new(height: u32, width: u32, declared: &TensorInfo, mean: [f32; 3], std: [f32; 3]) -> Self {
        let (elem, quant) = (declared.elem, declared.quant);
        let datum = datum_type(elem, quant);
        let lut = std::array::from_fn(|c| {
            (0..=255u8)
                .flat_map(|px| encode(px, mean[c], std[c], elem, quant))
                .collect()
        });
        Self {
            height,
            width,
            elem,
            quant,
            mean,
            std,
            datum,
            lut,
        }
    }

    /// Turns `height × width` packed RGB pixels into the model's input tensor `[1, h, w, 3]`.
    pub fn tensor(&self, rgb: &[u8]) -> Tensor {
        let shape = [1, self.height as usize, self.width as usize, 3];
        let elem_bytes = self.lut[0].len() / 256;
        let mut bytes = Vec::with_capacity(rgb.len() * elem_bytes);
        for px in rgb.chunks_exact(3) {
            for (c, &v) in px.iter().enumerate() {
                let at = v as usize * elem_bytes;
                bytes.extend_from_slice(&self.lut[c][at..at + elem_bytes]);
            }
        }
        // SAFETY: `bytes` holds exactly h·w·3 values of `datum`'s size, little-endian as tract
        // stores them on every target it supports; alignment 1 suffices for i8/u8 and
        // `from_raw_dt` copies into an aligned buffer.
        unsafe { Tensor::from_raw_dt(self.datum, &shape, &bytes) }
            .expect("input buffer sized from the input shape")
    }
}

/// tract's type for a tensor declared as `elem` with `quant`.
fn datum_type(elem: ElemType, quant: Option<Quant>) -> DatumType {
    let q = |q: Quant| QParams::ZpScale {
        zero_point: q.zero_point,
        scale: q.scale,
    };
    match (elem, quant) {
        (ElemType::I8, Some(qp)) => DatumType::QI8(q(qp)),
        (ElemType::U8, Some(qp)) => DatumType::QU8(q(qp)),
        (ElemType::F32, _) => DatumType::F32,
        other => unreachable!("type {other:?} was rejected by inspection"),
    }
}

/// One pixel value normalized, then quantized for int8/uint8 inputs:
/// `q = clamp(round_half_away_from_zero(((x − mean) / std) / scale) + zp)`, all in f32 — the rule
/// the golden outputs in `tests/data/golden` were made with.
fn encode(px: u8, mean: f32, std: f32, elem: ElemType, quant: Option<Quant>) -> Vec<u8> {
    let x = (px as f32 - mean) / std;
    match (elem.grid_range(), quant) {
        // Two's complement: an int8 value's byte is its low byte as an i32.
        (Some(range), Some(q)) => vec![q.quantize(x, range) as u8],
        _ => x.to_le_bytes().to_vec(),
    }
}

/// What the model's output holds and how it becomes class probabilities.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub classes: usize,
    pub elem: ElemType,
    pub quant: Option<Quant>,
    /// The graph ends in SOFTMAX; otherwise its outputs are logits and softmax runs here.
    pub probabilities: bool,
}

impl OutputSpec {
    /// Class probabilities from the raw output tensor.
    fn probs(&self, raw: &Tensor) -> Result<Vec<f32>, InferError> {
        let values: Vec<f32> = match (self.elem, self.quant) {
            (ElemType::F32, _) => values::<f32>(raw)?.to_vec(),
            (ElemType::I8, Some(q)) => values::<i8>(raw)?
                .iter()
                .map(|&v| q.real(v as i32))
                .collect(),
            (ElemType::U8, Some(q)) => values::<u8>(raw)?
                .iter()
                .map(|&v| q.real(v as i32))
                .collect(),
            (elem, _) => return Err(InferError::Tract(format!("unexpected output {elem:?}"))),
        };
        Ok(if self.probabilities {
            values
        } else {
            softmax(&values)
        })
    }
}

/// A tensor's elements as a slice (quantized types read as their storage type).
pub fn values<T: Datum>(t: &Tensor) -> Result<&[T], InferError> {
    t.try_as_plain_ram()
        .and_then(|view| view.as_slice::<T>())
        .map_err(|e| InferError::Tract(e.to_string()))
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// A loaded, optimized model, shared by every inference thread.
#[derive(Debug)]
pub struct Engine {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    input: InputSpec,
    output: OutputSpec,
    /// Where tract runs a float lowering of a quantized model, what sessions convert.
    lowered: Lowered,
    changes: Vec<String>,
    /// Per op of an int8 model: int8 kernel or float lowering, and why.
    paths: Vec<int8::OpPath>,
    labels: Option<Vec<String>>,
    meta: Option<ModelMeta>,
    inspection: Inspection,
    file_bytes: u64,
    /// The size of each session's int8 thread pool; 0 for a model tract runs alone.
    int8_threads: usize,
    /// Threads per inference, as run (the calling thread counted).
    threads: usize,
}

impl Engine {
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Engine, ModelError> {
        let err = |kind| ModelError {
            path: path.to_owned(),
            kind,
        };
        let bytes = std::fs::read(path).map_err(|e| err(ModelErrorKind::Read(e)))?;
        log_memory("read");
        if bytes.is_empty() {
            return Err(err(ModelErrorKind::Empty));
        }
        let inspection = inspect::inspect(&bytes).map_err(|e| err(ModelErrorKind::Format(e)))?;
        let (in_h, in_w) =
            classifier_shape(&inspection).map_err(|e| err(ModelErrorKind::NotClassifier(e)))?;
        let sidecar = meta::load_sidecar(path).map_err(|e| err(ModelErrorKind::Metadata(e)))?;
        if let Some((file, m)) = &sidecar {
            if m.input_size != [in_h, in_w] {
                return Err(err(ModelErrorKind::Metadata(MetaError::InputSize {
                    path: file.clone(),
                    declared: m.input_size,
                    height: in_h,
                    width: in_w,
                })));
            }
        }
        let out = &inspection.outputs[0];
        let output = OutputSpec {
            classes: out.shape.iter().product::<i32>() as usize,
            elem: out.elem,
            quant: out.quant,
            probabilities: inspection.ends_with_softmax(),
        };
        let labels_path = options.labels.clone().or_else(|| {
            let (file, m) = sidecar.as_ref()?;
            Some(
                file.parent()
                    .unwrap_or(Path::new("."))
                    .join(m.labels.as_ref()?),
            )
        });
        let labels = labels_path
            .map(|p| {
                let labels = meta::load_labels(&p).map_err(|e| err(ModelErrorKind::Metadata(e)))?;
                if labels.len() != output.classes {
                    return Err(err(ModelErrorKind::LabelCount {
                        path: p,
                        found: labels.len(),
                        expected: output.classes,
                    }));
                }
                Ok(labels)
            })
            .transpose()?;

        let file_bytes = bytes.len() as u64;
        let threads = options.threads;
        let run_options = RunOptions {
            executor: (threads > 1).then(|| Executor::multithread(threads)),
            ..Default::default()
        };
        let tract_err = |e: TractError| err(ModelErrorKind::Tract(first_line(&e)));
        let (plan, lowered, changes, paths) = if inspection.precision() == ElemType::I8
            && !options.lowered
        {
            let built = contain::catch(|| int8::build(&bytes, int8::Isa::native()))
                .map_err(|panic| err(ModelErrorKind::Panic(panic)))?
                .map_err(|e| {
                    err(match e {
                        int8::BuildError::Format(e) => ModelErrorKind::Format(e),
                        int8::BuildError::Refused(r) => ModelErrorKind::Refused(r),
                        int8::BuildError::Lowering(e) => ModelErrorKind::Lowering(e),
                        int8::BuildError::Tract(e) => ModelErrorKind::Tract(first_line(&e)),
                    })
                })?;
            // The graph holds the weights packed in int8: the file goes before optimization.
            drop(bytes);
            log_memory("int8 graph built");
            let plan = contain::catch(|| {
                let model = built.model.into_optimized()?;
                log_memory("optimized");
                model.into_runnable_with_options(&RunOptions::default())
            })
            .map_err(|panic| err(ModelErrorKind::Panic(panic)))?
            .map_err(tract_err)?;
            (plan, Lowered::default(), vec![], built.paths)
        } else {
            let (plan, lowered, changes) = lower(bytes, &inspection, &run_options).map_err(err)?;
            (plan, lowered, changes, vec![])
        };

        log_memory("planned");
        let (mean, std) = sidecar
            .as_ref()
            .map_or((meta::DEFAULT_MEAN, meta::DEFAULT_STD), |(_, m)| {
                (m.mean, m.std)
            });
        // An int8 graph's threads are the kernels' own pool; tract's would only sit beside it.
        // More threads than cores would only wait for each other: a pool's workers spin.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (int8_threads, threads) = if paths.is_empty() {
            (0, threads)
        } else {
            (threads.min(cores), threads.min(cores))
        };
        Ok(Engine {
            path: path.to_owned(),
            plan,
            input: InputSpec::new(in_h, in_w, &inspection.inputs[0], mean, std),
            output,
            lowered,
            changes,
            paths,
            labels,
            meta: sidecar.map(|(_, m)| m),
            int8_threads,
            threads: threads.max(1),
            inspection,
            file_bytes,
        })
    }

    /// A per-thread inference state; call once per thread, then [`Session::run`] per frame.
    pub fn session(&self) -> Result<Session, InferError> {
        let state = self
            .plan
            .spawn()
            .map_err(|e| InferError::Tract(first_line(&e)))?;
        let pool = int8::threads::Pool::new(self.int8_threads)
            .map_err(|e| InferError::Tract(format!("cannot start the int8 threads: {e}")))?;
        Ok(Session {
            state,
            output: self.output.clone(),
            lowered: self.lowered,
            pool,
        })
    }

    /// The model file's name and its weights' type, as events and `/status` name them.
    pub fn model(&self) -> (String, String) {
        let model = self.path().file_name().unwrap_or_default();
        let dtype = self.inspection().precision().name();
        (model.to_string_lossy().into_owned(), dtype.to_string())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn input(&self) -> &InputSpec {
        &self.input
    }
    pub fn output(&self) -> &OutputSpec {
        &self.output
    }
    /// What model preparation rewrote so tract runs the model correctly; empty if nothing.
    pub fn changes(&self) -> &[String] {
        &self.changes
    }
    /// For an int8 model run on int8 kernels: which path each op takes and why.
    pub fn op_paths(&self) -> &[int8::OpPath] {
        &self.paths
    }
    pub fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }
    pub fn meta(&self) -> Option<&ModelMeta> {
        self.meta.as_ref()
    }
    /// The model file as written, before any preparation.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }
    /// Threads one inference runs on (the calling thread counted).
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// The label of class `index`, or its number when there is no labels file.
    pub fn label(&self, index: usize) -> String {
        self.labels
            .as_ref()
            .and_then(|l| l.get(index).cloned())
            .unwrap_or_else(|| format!("class {index}"))
    }
}

/// The float path: a float model as it is (or with what [`prepare`] rewrites), a quantized one
/// lowered to float as a whole with fake quantization.
fn lower(
    bytes: Vec<u8>,
    inspection: &Inspection,
    run_options: &RunOptions,
) -> Result<(Arc<TypedRunnableModel>, Lowered, Vec<String>), ModelErrorKind> {
    // Only graphs that need it are rewritten; a plain float model loads byte for byte.
    let prepared = if inspection.needs_preparation() {
        contain::catch(|| prepare::prepare(bytes))
            .map_err(ModelErrorKind::Panic)?
            .map_err(ModelErrorKind::Prepare)?
    } else {
        prepare::Prepared::unchanged(bytes)
    };
    log_memory("prepared");
    let run_inspection = if prepared.changes.is_empty() {
        inspection
    } else {
        &inspect::inspect(&prepared.bytes).map_err(|e| ModelErrorKind::Prepare(e.into()))?
    };
    // A side declared quantized that tract now sees as float is converted per frame.
    let lowered_side = |declared: &TensorInfo, run: &TensorInfo| {
        (declared.elem.is_quantized() && run.elem == ElemType::F32)
            .then_some(declared.quant)
            .flatten()
            .map(|q| (declared.elem, q))
    };
    let lowered = Lowered {
        input: lowered_side(&inspection.inputs[0], &run_inspection.inputs[0]).map(|(_, q)| q),
        output: lowered_side(&inspection.outputs[0], &run_inspection.outputs[0]),
    };
    if let Some(refusal) = run_inspection.refusal() {
        return Err(ModelErrorKind::Refused(refusal));
    }
    let prepare::Prepared {
        bytes: run_bytes,
        changes,
        fake_quant,
    } = prepared;
    let plan = contain::catch(|| -> TractResult<_> {
        let mut model = tract_tflite::tflite().model_for_read(&mut Handover::new(run_bytes))?;
        log_memory("translated by tract");
        fake_quant::insert(&mut model, &fake_quant)?;
        let model = model.into_optimized()?;
        log_memory("optimized");
        model.into_runnable_with_options(run_options)
    })
    .map_err(ModelErrorKind::Panic)?
    .map_err(|e| ModelErrorKind::Tract(first_line(&e)))?;
    Ok((plan, lowered, changes))
}

/// Logs resident memory after a step of [`Engine::load`] (`SCENED_LOG=scened_pipeline=debug`):
/// where a load's peak comes from (docs/memory.md).
fn log_memory(step: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let now = crate::rss::current_bytes().map_or(f64::NAN, crate::rss::mib);
        let peak = crate::rss::mib(crate::rss::peak_bytes());
        tracing::debug!(step, rss_mib = now, peak_mib = peak, "model load");
    }
}

/// A buffer read as a stream, handed over whole, without a copy, to a reader of it all: tract's
/// TFLite loader reads the model into a vector of its own, and without this the load would hold
/// the model twice (ours and tract's) while tract builds a third copy, its graph's constants.
struct Handover(io::Cursor<Vec<u8>>);

impl Handover {
    fn new(bytes: Vec<u8>) -> Self {
        Self(io::Cursor::new(bytes))
    }
}

impl io::Read for Handover {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if !buf.is_empty() || self.0.position() != 0 {
            return self.0.read_to_end(buf);
        }
        *buf = std::mem::take(self.0.get_mut());
        Ok(buf.len())
    }
}

/// The quantized interface a lowered model keeps: a quantized input tensor is dequantized for
/// tract, and tract's float output is requantized to the declared grid.
#[derive(Debug, Clone, Copy, Default)]
struct Lowered {
    input: Option<Quant>,
    output: Option<(ElemType, Quant)>,
}

/// Checks the graph is a single-image classifier: one `[1, H, W, 3]` input of f32/int8/uint8 and
/// one output of N ≥ 2 classes (`[1, N]` or `[N]`). Returns `(H, W)`.
fn classifier_shape(i: &Inspection) -> Result<(u32, u32), NotClassifier> {
    let [input] = i.inputs.as_slice() else {
        return Err(NotClassifier::Inputs(i.inputs.len()));
    };
    let [output] = i.outputs.as_slice() else {
        return Err(NotClassifier::Outputs(i.outputs.len()));
    };
    let &[1, h, w, 3] = input.shape.as_slice() else {
        return Err(NotClassifier::InputShape(input.shape.clone()));
    };
    if h <= 0 || w <= 0 {
        return Err(NotClassifier::NoPixels(input.shape.clone()));
    }
    match input.elem {
        ElemType::F32 => {}
        ElemType::I8 | ElemType::U8 if input.quant.is_some() => {}
        e => return Err(NotClassifier::InputType(e.name())),
    }
    let classes: i32 = output.shape.iter().product();
    if output.shape.iter().filter(|&&d| d != 1).count() > 1 || classes < 2 {
        return Err(NotClassifier::OutputShape(output.shape.clone()));
    }
    match output.elem {
        ElemType::F32 => {}
        ElemType::I8 | ElemType::U8 if output.quant.is_some() => {}
        e => return Err(NotClassifier::OutputType(e.name())),
    }
    Ok((h as u32, w as u32))
}

/// tract chains context links, some of them multi-line debug dumps of the flatbuffer; the first
/// line of each link that is prose, joined, reads as one line from what failed to why.
fn first_line(e: &TractError) -> String {
    e.chain()
        .filter_map(|link| {
            let line = link.to_string().lines().next()?.trim().to_string();
            (!line.is_empty() && !line.ends_with(['{', '(', '['])).then_some(line)
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// The `k` most probable classes, best first; ties go to the lower index so output is stable.
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_handover_moves_the_whole_buffer_and_streams_otherwise() {
        let bytes: Vec<u8> = (0..=255).collect();
        let at = bytes.as_ptr();
        let mut whole = vec![];
        Handover::new(bytes.clone())
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, bytes);
        let mut moved = vec![];
        Handover::new(bytes).read_to_end(&mut moved).unwrap();
        assert_eq!(moved.as_ptr(), at, "moved, not copied");

        let mut stream = Handover::new((0..=255).collect());
        let mut head = [0; 16];
        stream.read_exact(&mut head).unwrap();
        let mut rest = head.to_vec();
        stream.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, whole);
    }
}
