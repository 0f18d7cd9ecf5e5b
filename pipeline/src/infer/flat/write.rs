//! A [`Model`] written back to the `.tflite` flatbuffer.

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use tract_tflite::tflite::{self as fb};

use super::{Model, Op, Options, Tensor};

impl Model {
    /// Serializes the model. Each constant buffer is freed as soon as the builder holds it,
    /// into a builder sized up front (growing would copy it whole), so writing holds the
    /// weights about once, not twice.
    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut b = FlatBufferBuilder::with_capacity(self.serialized_bound());
        let buffers: Vec<_> = std::mem::take(&mut self.buffers)
            .into_iter()
            .map(|data| {
                let data = (!data.is_empty()).then(|| b.create_vector(&data));
                fb::Buffer::create(&mut b, &fb::BufferArgs { data })
            })
            .collect();
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|t| write_tensor(&mut b, t))
            .collect();
        let ops: Vec<_> = self.ops.iter().map(|op| write_op(&mut b, op)).collect();
        let graph = {
            let args = fb::SubGraphArgs {
                tensors: Some(b.create_vector(&tensors)),
                inputs: Some(b.create_vector(&self.inputs)),
                outputs: Some(b.create_vector(&self.outputs)),
                operators: Some(b.create_vector(&ops)),
                name: Some(b.create_string("main")),
            };
            fb::SubGraph::create(&mut b, &args)
        };
        let opcodes: Vec<_> = self
            .opcodes
            .iter()
            .map(|c| {
                let args = fb::OperatorCodeArgs {
                    // Codes above 127 keep the placeholder in the deprecated i8 field.
                    deprecated_builtin_code: c.builtin.0.min(127) as i8,
                    custom_code: None,
                    version: c.version,
                    builtin_code: c.builtin,
                };
                fb::OperatorCode::create(&mut b, &args)
            })
            .collect();
        let args = fb::ModelArgs {
            version: 3,
            operator_codes: Some(b.create_vector(&opcodes)),
            subgraphs: Some(b.create_vector(&[graph])),
            description: self.description.as_deref().map(|d| b.create_string(d)),
            buffers: Some(b.create_vector(&buffers)),
            ..Default::default()
        };
        let model = fb::Model::create(&mut b, &args);
        fb::finish_model_buffer(&mut b, model);
        // The builder writes back to front: move the model to the front of the same allocation
        // rather than copy it out.
        let (mut bytes, head) = b.collapse();
        bytes.drain(..head);
        bytes
    }

    /// An upper bound on the serialized size: the data plus generous per-item overheads
    /// (vtables, offsets, alignment padding).
    pub(super) fn serialized_bound(&self) -> usize {
        const TABLE: usize = 128;
        let buffers: usize = self.buffers.iter().map(|d| d.len() + TABLE).sum();
        let tensors: usize = self
            .tensors
            .iter()
            .map(|t| {
                let quant = t
                    .quant
                    .as_ref()
                    .map_or(0, |q| q.scale.len() * 4 + q.zero_point.len() * 8 + TABLE);
                t.name.len() + t.shape.len() * 4 + quant + TABLE
            })
            .sum();
        let ops: usize = self
            .ops
            .iter()
            .map(|op| (op.inputs.len() + op.outputs.len()) * 4 + 2 * TABLE)
            .sum();
        let description = self.description.as_ref().map_or(0, String::len);
        buffers + tensors + ops + self.opcodes.len() * TABLE + description + (1 << 12)
    }
}

fn write_tensor<'b>(b: &mut FlatBufferBuilder<'b>, t: &Tensor) -> WIPOffset<fb::Tensor<'b>> {
    let quantization = t.quant.as_ref().map(|q| {
        let args = fb::QuantizationParametersArgs {
            scale: Some(b.create_vector(&q.scale)),
            zero_point: Some(b.create_vector(&q.zero_point)),
            quantized_dimension: q.dim,
            ..Default::default()
        };
        fb::QuantizationParameters::create(b, &args)
    });
    let args = fb::TensorArgs {
        shape: Some(b.create_vector(&t.shape)),
        type_: t.ty,
        buffer: t.buffer,
        name: Some(b.create_string(&t.name)),
        quantization,
        ..Default::default()
    };
    fb::Tensor::create(b, &args)
}

fn write_op<'b>(b: &mut FlatBufferBuilder<'b>, op: &Op) -> WIPOffset<fb::Operator<'b>> {
    use fb::BuiltinOptions as B;
    let (kind, options) = match &op.options {
        Options::None => (B::NONE, None),
        Options::Pad => (
            B::PadOptions,
            Some(fb::PadOptions::create(b, &fb::PadOptionsArgs {}).as_union_value()),
        ),
        &Options::Conv2D {
            padding,
            stride,
            act,
            dilation,
        } => {
            let args = fb::Conv2DOptionsArgs {
                padding,
                stride_h: stride[0],
                stride_w: stride[1],
                fused_activation_function: act,
                dilation_h_factor: dilation[0],
                dilation_w_factor: dilation[1],
            };
            (
                B::Conv2DOptions,
                Some(fb::Conv2DOptions::create(b, &args).as_union_value()),
            )
        }
        &Options::Depthwise {
            padding,
            stride,
            multiplier,
            act,
            dilation,
        } => {
            let args = fb::DepthwiseConv2DOptionsArgs {
                padding,
                stride_h: stride[0],
                stride_w: stride[1],
                depth_multiplier: multiplier,
                fused_activation_function: act,
                dilation_h_factor: dilation[0],
                dilation_w_factor: dilation[1],
            };
            (
                B::DepthwiseConv2DOptions,
                Some(fb::DepthwiseConv2DOptions::create(b, &args).as_union_value()),
            )
        }
        &Options::Pool2D {
            padding,
            stride,
            filter,
            act,
        } => {
            let args = fb::Pool2DOptionsArgs {
                padding,
                stride_h: stride[0],
                stride_w: stride[1],
                filter_height: filter[0],
                filter_width: filter[1],
                fused_activation_function: act,
            };
            (
                B::Pool2DOptions,
                Some(fb::Pool2DOptions::create(b, &args).as_union_value()),
            )
        }
        &Options::FullyConnected { act, keep_num_dims } => {
            let args = fb::FullyConnectedOptionsArgs {
                fused_activation_function: act,
                keep_num_dims,
                ..Default::default()
            };
            (
                B::FullyConnectedOptions,
                Some(fb::FullyConnectedOptions::create(b, &args).as_union_value()),
            )
        }
        &Options::Softmax { beta } => (
            B::SoftmaxOptions,
            Some(fb::SoftmaxOptions::create(b, &fb::SoftmaxOptionsArgs { beta }).as_union_value()),
        ),
        &Options::Concatenation { axis, act } => {
            let args = fb::ConcatenationOptionsArgs {
                axis,
                fused_activation_function: act,
            };
            (
                B::ConcatenationOptions,
                Some(fb::ConcatenationOptions::create(b, &args).as_union_value()),
            )
        }
        &Options::Arith { kind, act } => {
            let table = match kind {
                B::AddOptions => {
                    let args = fb::AddOptionsArgs {
                        fused_activation_function: act,
                        ..Default::default()
                    };
                    fb::AddOptions::create(b, &args).as_union_value()
                }
                B::SubOptions => {
                    let args = fb::SubOptionsArgs {
                        fused_activation_function: act,
                        ..Default::default()
                    };
                    fb::SubOptions::create(b, &args).as_union_value()
                }
                _ => fb::MulOptions::create(
                    b,
                    &fb::MulOptionsArgs {
                        fused_activation_function: act,
                    },
                )
                .as_union_value(),
            };
            (kind, Some(table))
        }
        Options::Reshape { new_shape } => {
            let new_shape = new_shape.as_ref().map(|s| b.create_vector(s));
            (
                B::ReshapeOptions,
                Some(
                    fb::ReshapeOptions::create(b, &fb::ReshapeOptionsArgs { new_shape })
                        .as_union_value(),
                ),
            )
        }
        &Options::Reducer { keep_dims } => (
            B::ReducerOptions,
            Some(
                fb::ReducerOptions::create(b, &fb::ReducerOptionsArgs { keep_dims })
                    .as_union_value(),
            ),
        ),
        Options::Squeeze { dims } => {
            let squeeze_dims = Some(b.create_vector(dims));
            (
                B::SqueezeOptions,
                Some(
                    fb::SqueezeOptions::create(b, &fb::SqueezeOptionsArgs { squeeze_dims })
                        .as_union_value(),
                ),
            )
        }
    };
    let args = fb::OperatorArgs {
        opcode_index: op.opcode,
        inputs: Some(b.create_vector(&op.inputs)),
        outputs: Some(b.create_vector(&op.outputs)),
        builtin_options_type: kind,
        builtin_options: options,
        ..Default::default()
    };
    fb::Operator::create(b, &args)
}
