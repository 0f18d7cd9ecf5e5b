//! Load-time model preparation: rewrites a standard `.tflite` classifier into a form tract runs
//! correctly and fast, and says what it changed. The result is still a standard `.tflite`
//! (LiteRT runs it too, which is how the rewrite itself is checked).
//!
//! **Quantized models are lowered to float.** tract 0.23.9 cannot load full-int8 graphs as
//! converters write them (a residual `ADD` of two differently-quantized tensors has "no super
//! type"; `QUANTIZE`/`DEQUANTIZE` are not registered; the int8 `SOFTMAX` lands on the wrong zero
//! point), and where it can, its int8 path lowers depthwise and 1×1 convolutions into many tiny
//! integer matmuls, 70× slower than its float kernels. So every quantized constant is
//! dequantized (`real = scale · (q − zero_point)`, per channel where the weights are), every
//! activation becomes float32, and `QUANTIZE`/`DEQUANTIZE` disappear. The engine keeps the
//! model's declared int8 interface: it quantizes the input exactly as for an int8 runtime and
//! dequantizes that for tract, and requantizes the output to the declared int8 grid.
//! The trade-off: int8 weights and activations no longer save compute or memory inside tract
//! (weights take 4× the file's size in RAM), in exchange for float speed and outputs that track
//! the int8 reference within a couple of quantization steps (measured in `tests/engine.rs`).
//!
//! **Float `MEAN` over height and width becomes `AVERAGE_POOL_2D`** (+ `RESHAPE` when the mean
//! dropped those axes): tract rounds a float `MEAN` to whole numbers.
//!
//! **A convolution or `FULLY_CONNECTED` without bias gets an explicit zero bias**: the format
//! writes an omitted optional input as tensor −1, which tract-tflite indexes and panics on.

use tract_tflite::tflite::{ActivationFunctionType, BuiltinOperator as Op, Padding, TensorType};

use super::error::PrepareError;
use super::fake_quant::Point;
use super::flat::{Model, Op as FlatOp, Options, Tensor};
use super::{ElemType, Quant};

/// The outcome of preparation.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The model to run: the rewritten one, or the original when it is fine as it is.
    pub bytes: Vec<u8>,
    /// One line per rewrite, for `scened models check` and the logs.
    pub changes: Vec<String>,
    /// Activations of a lowered quantized model to round back onto their int8 grid.
    pub fake_quant: Vec<Point>,
}

impl Prepared {
    /// A model that runs as it is.
    pub fn unchanged(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            changes: vec![],
            fake_quant: vec![],
        }
    }
}

/// Rewrites the model in `bytes` if needed. Errors say why the model cannot be prepared.
pub fn prepare(bytes: Vec<u8>) -> Result<Prepared, PrepareError> {
    let mut model = Model::read(&bytes)?;
    let mut changes = vec![];
    let mut fake_quant = vec![];
    if let Some((change, points)) = lower_to_float(&mut model)? {
        changes.push(change);
        fake_quant = points;
    }
    changes.extend(mean_to_average_pool(&mut model)?);
    changes.extend(explicit_zero_bias(&mut model));
    if changes.is_empty() {
        return Ok(Prepared::unchanged(bytes));
    }
    // The original goes before the rewrite is written: one copy of the model at a time.
    drop(bytes);
    drop_unused_buffers(&mut model);
    Ok(Prepared {
        bytes: model.into_bytes(),
        changes,
        fake_quant,
    })
}

fn is_quantized(t: &Tensor) -> bool {
    t.quant.is_some()
        && matches!(
            t.ty,
            TensorType::INT8 | TensorType::UINT8 | TensorType::INT32 | TensorType::INT16
        )
}

/// Dequantizes every quantized tensor, removes QUANTIZE/DEQUANTIZE, and marks where each op's
/// output must be rounded back onto its int8 grid. `None` if the model had nothing quantized.
fn lower_to_float(model: &mut Model) -> Result<Option<(String, Vec<Point>)>, PrepareError> {
    let (mut consts, mut activations) = (0, 0);
    let grids: Vec<_> = model
        .tensors
        .iter()
        .map(|t| if is_quantized(t) { grid(t) } else { None })
        .collect();
    for index in 0..model.tensors.len() {
        if !is_quantized(&model.tensors[index]) {
            continue;
        }
        if let Some(data) = model.data(index as i32) {
            let floats = dequantize(&model.tensors[index], data)?;
            model.set_data(index, floats);
            consts += 1;
        } else {
            activations += 1;
        }
        let t = &mut model.tensors[index];
        t.ty = TensorType::FLOAT32;
        t.quant = None;
    }
    if consts + activations == 0 {
        return Ok(None);
    }
    let removed = remove_identities(model, &[Op::QUANTIZE, Op::DEQUANTIZE]);
    let points = mark_fake_quant(model, &grids);
    let mut change = format!(
        "lowered to float: {consts} quantized constants dequantized, {activations} int8 activations made float32, {} rounded back onto their int8 grid",
        points.len()
    );
    if removed > 0 {
        change.push_str(&format!(", {removed} QUANTIZE/DEQUANTIZE removed"));
    }
    Ok(Some((change, points)))
}

/// The per-tensor 8-bit grid of an activation; `None` for constants and wider types.
fn grid(t: &Tensor) -> Option<(Quant, (i32, i32))> {
    let q = t.quant.as_ref().filter(|q| q.scale.len() == 1)?;
    let range = ElemType::from_tflite(t.ty).grid_range()?;
    let zero_point = q.zero_point.first().copied().unwrap_or(0) as i32;
    Some((
        Quant {
            scale: q.scale[0],
            zero_point,
        },
        range,
    ))
}

/// After each op that wrote a quantized activation, clamps its (now float) output to the grid's
/// lower end with a MAXIMUM under the original tensor's name — valid as it stands, and the
/// marker the engine replaces by clamp + round. Ops that only move data keep their input's grid
/// and need none.
fn mark_fake_quant(model: &mut Model, grids: &[Option<(Quant, (i32, i32))>]) -> Vec<Point> {
    let mut points = vec![];
    let ops = std::mem::take(&mut model.ops);
    for mut op in ops {
        let out = op.outputs[0];
        let moves_data = matches!(model.op_name(&op), "RESHAPE" | "SQUEEZE");
        let Some((quant, range)) = grids
            .get(out as usize)
            .copied()
            .flatten()
            .filter(|_| !moves_data)
        else {
            model.ops.push(op);
            continue;
        };
        let name = model.tensors[out as usize].name.clone();
        let mut raw = model.tensors[out as usize].clone();
        raw.name = format!("{name}/unrounded");
        let raw = model.add_tensor(raw);
        let lowest = quant.real(range.0);
        let min = model.add_const(
            format!("{name}/grid_min"),
            vec![],
            TensorType::FLOAT32,
            lowest.to_le_bytes().to_vec(),
        );
        op.outputs[0] = raw;
        model.ops.push(op);
        let max = FlatOp {
            opcode: model.opcode(Op::MAXIMUM),
            inputs: vec![raw, min],
            outputs: vec![out],
            options: Options::None,
        };
        model.ops.push(max);
        points.push(Point {
            tensor: name,
            quant,
            range,
        });
    }
    points
}

/// `scale · (q − zero_point)` for each element, with per-channel parameters along `dim`.
fn dequantize(t: &Tensor, data: &[u8]) -> Result<Vec<u8>, PrepareError> {
    let q = t.quant.as_ref().expect("quantized");
    let tensor = || t.name.clone();
    let values: Vec<i64> = match t.ty {
        TensorType::INT8 => data.iter().map(|&b| b as i8 as i64).collect(),
        TensorType::UINT8 => data.iter().map(|&b| b as i64).collect(),
        TensorType::INT16 => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        TensorType::INT32 => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        other => {
            return Err(PrepareError::DequantizeType {
                tensor: tensor(),
                ty: format!("{other:?}"),
            })
        }
    };
    let len: i64 = t.shape.iter().map(|&d| d as i64).product();
    if values.len() as i64 != len {
        return Err(PrepareError::ValueCount {
            tensor: tensor(),
            values: values.len(),
            shape: t.shape.clone(),
        });
    }
    let channels = q.scale.len();
    let (dim_len, stride) = if channels > 1 {
        let dim = usize::try_from(q.dim)
            .ok()
            .filter(|&d| d < t.shape.len())
            .ok_or_else(|| PrepareError::QuantizedDimension { tensor: tensor() })?;
        let stride: i64 = t.shape[dim + 1..].iter().map(|&d| d as i64).product();
        if t.shape[dim] as usize != channels {
            return Err(PrepareError::ScaleCount {
                tensor: tensor(),
                scales: channels,
                channels: t.shape[dim],
            });
        }
        (channels, stride as usize)
    } else {
        (1, 1)
    };
    let zero_point = |c: usize| {
        q.zero_point
            .get(c)
            .or(q.zero_point.first())
            .copied()
            .unwrap_or(0)
    };
    Ok(values
        .iter()
        .enumerate()
        .flat_map(|(i, &v)| {
            let c = (i / stride) % dim_len;
            (q.scale[c] * (v - zero_point(c)) as f32).to_le_bytes()
        })
        .collect())
}

/// Removes single-input ops of the given kinds, wiring their consumers (and graph outputs) to
/// their input. Returns how many were removed.
fn remove_identities(model: &mut Model, kinds: &[Op]) -> usize {
    let mut removed = 0;
    let mut i = 0;
    while i < model.ops.len() {
        let builtin = model.opcodes[model.ops[i].opcode as usize].builtin;
        if !kinds.contains(&builtin) {
            i += 1;
            continue;
        }
        let op = model.ops.remove(i);
        let (from, to) = (op.outputs[0], op.inputs[0]);
        for other in &mut model.ops {
            other
                .inputs
                .iter_mut()
                .filter(|t| **t == from)
                .for_each(|t| *t = to);
        }
        model
            .outputs
            .iter_mut()
            .filter(|t| **t == from)
            .for_each(|t| *t = to);
        removed += 1;
    }
    removed
}

/// Float MEAN over axes {1, 2} of an NHWC tensor → AVERAGE_POOL_2D over the whole map.
fn mean_to_average_pool(model: &mut Model) -> Result<Vec<String>, PrepareError> {
    let mut changes = vec![];
    let mut i = 0;
    while i < model.ops.len() {
        let op = &model.ops[i];
        if model.opcodes[op.opcode as usize].builtin != Op::MEAN {
            i += 1;
            continue;
        }
        let input = &model.tensors[op.inputs[0] as usize];
        let axes: Option<Vec<i32>> = model.data(op.inputs[1]).map(|d| {
            d.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        });
        let &[n, h, w, c] = input.shape.as_slice() else {
            return Err(PrepareError::MeanRank {
                index: i,
                rank: input.shape.len(),
            });
        };
        let mut sorted = axes.clone().unwrap_or_default();
        sorted.sort();
        if sorted != [1, 2] || input.ty != TensorType::FLOAT32 {
            return Err(PrepareError::MeanAxes { index: i, axes });
        }
        let keep_dims = matches!(op.options, Options::Reducer { keep_dims: true });
        let (mean_in, mean_out) = (op.inputs[0], op.outputs[0]);
        let pool = FlatOp {
            opcode: model.opcode(Op::AVERAGE_POOL_2D),
            inputs: vec![mean_in],
            outputs: vec![mean_out],
            options: Options::Pool2D {
                padding: Padding::VALID,
                stride: [1, 1],
                filter: [h, w],
                act: ActivationFunctionType::NONE,
            },
        };
        if keep_dims {
            model.ops[i] = pool;
        } else {
            let name = format!("{}/pooled", model.tensors[mean_out as usize].name);
            let out_shape = model.tensors[mean_out as usize].shape.clone();
            let pooled = model.add_tensor(Tensor {
                name,
                shape: vec![n, 1, 1, c],
                ty: TensorType::FLOAT32,
                buffer: 0,
                quant: None,
            });
            let reshape = FlatOp {
                opcode: model.opcode(Op::RESHAPE),
                inputs: vec![pooled],
                outputs: vec![mean_out],
                options: Options::Reshape {
                    new_shape: Some(out_shape),
                },
            };
            model.ops[i] = FlatOp {
                outputs: vec![pooled],
                ..pool
            };
            model.ops.insert(i + 1, reshape);
        }
        changes.push(format!(
            "MEAN (operator #{i}) rewritten as AVERAGE_POOL_2D {h}×{w}"
        ));
        i += 1;
    }
    Ok(changes)
}

/// Gives CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED an explicit zero bias where it is left out.
fn explicit_zero_bias(model: &mut Model) -> Vec<String> {
    let mut changes = vec![];
    for i in 0..model.ops.len() {
        let name = model.op_name(&model.ops[i]);
        let op = &model.ops[i];
        let channels_axis = match name {
            "CONV_2D" | "FULLY_CONNECTED" => 0,
            "DEPTHWISE_CONV_2D" => 3,
            _ => continue,
        };
        if op.inputs.get(2).is_some_and(|&t| t >= 0) || op.inputs.len() < 2 {
            continue;
        }
        let weights = &model.tensors[op.inputs[1] as usize];
        let Some(&channels) = weights.shape.get(channels_axis) else {
            continue;
        };
        let bias_name = format!("{}/zero_bias", model.tensors[op.outputs[0] as usize].name);
        let zeros = vec![0u8; channels.max(0) as usize * 4];
        let bias = model.add_const(bias_name, vec![channels], TensorType::FLOAT32, zeros);
        model.ops[i].inputs.resize(3, -1);
        model.ops[i].inputs[2] = bias;
        changes.push(format!(
            "{name} (operator #{i}): the omitted bias made an explicit zero bias"
        ));
    }
    changes
}

/// Drops buffers no tensor refers to any more (an int8 original that two tensors shared, once
/// both were dequantized).
fn drop_unused_buffers(model: &mut Model) {
    let mut remap = vec![None; model.buffers.len()];
    let mut kept = vec![Vec::new()];
    remap[0] = Some(0);
    for t in &mut model.tensors {
        let old = t.buffer as usize;
        let new = *remap[old].get_or_insert_with(|| {
            kept.push(std::mem::take(&mut model.buffers[old]));
            kept.len() - 1
        });
        t.buffer = new as u32;
    }
    model.buffers = kept;
}
