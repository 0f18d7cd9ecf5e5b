//! The main graph of a `.tflite` read in place, and each op's int8 kernel built from it: the
//! op's tensors checked (int8 grids, static shapes, per-channel weights, window geometry) and
//! its weights packed, or the reason it has no kernel.

use std::sync::Arc;

use flatbuffers::{ForwardsUOffset, Vector};
use tract_tflite::internal::*;
use tract_tflite::tflite::{self as fb, ActivationFunctionType, TensorType};

use super::super::flat::{self, Options};
use super::super::{inspect, ElemType, FormatError};
use super::conv::Conv;
use super::depthwise::Depthwise;
use super::eltwise::Add;
use super::isa::Isa;
use super::op::Kernel;
use super::pool::AvgPool;
use super::quant::{self, Grid, Multiplier};
use super::requant::Requant;
use super::softmax::Softmax;
use super::window::Window;
use super::Uncovered;

/// What an op becomes in the int8 graph.
pub(super) enum Wire {
    Kernel(Arc<Kernel>, Vec<usize>),
    Reshape(Vec<usize>, Vec<usize>),
}

/// The main graph of a `.tflite`, read in place.
pub(super) struct Graph<'a> {
    pub(super) tensors: Vector<'a, ForwardsUOffset<fb::Tensor<'a>>>,
    buffers: Vector<'a, ForwardsUOffset<fb::Buffer<'a>>>,
    codes: Vector<'a, ForwardsUOffset<fb::OperatorCode<'a>>>,
    pub(super) ops: Vector<'a, ForwardsUOffset<fb::Operator<'a>>>,
    pub(super) inputs: Vec<usize>,
    pub(super) outputs: Vec<usize>,
}

/// One tensor of the graph and its constant data, if any.
pub(super) struct TensorRef<'a> {
    t: fb::Tensor<'a>,
    pub(super) data: Option<&'a [u8]>,
}

impl<'a> Graph<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Result<Graph<'a>, FormatError> {
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

    pub(super) fn tensor(&self, t: usize) -> Result<TensorRef<'a>, FormatError> {
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

    pub(super) fn op_name(&self, op: &fb::Operator<'_>) -> String {
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
    pub(super) fn kernel(&self, index: usize, isa: Isa) -> Result<Wire, Uncovered> {
        let op = self.ops.get(index);
        let name = self.op_name(&op);
        let outs: Vec<i32> = op.outputs().into_iter().flatten().collect();
        let &[out] = outs.as_slice() else {
            return Err(Uncovered::Outputs(outs.len()));
        };
        let out = self.tensor(usize::try_from(out).map_err(|_| FormatError::TensorIndex(0))?)?;
        let at = At {
            g: self,
            ids: op.inputs().into_iter().flatten().collect(),
            out_shape: out.shape()?,
            out,
        };
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
            ) => at.conv(
                Geometry {
                    padding,
                    stride,
                    act,
                    dilation,
                },
                isa,
            )?,
            (
                "DEPTHWISE_CONV_2D",
                Options::Depthwise {
                    padding,
                    stride,
                    multiplier,
                    act,
                    dilation,
                },
            ) => at.depthwise(
                Geometry {
                    padding,
                    stride,
                    act,
                    dilation,
                },
                multiplier,
                isa,
            )?,
            ("ADD", Options::Arith { act, .. }) => at.add(act)?,
            (
                "AVERAGE_POOL_2D",
                Options::Pool2D {
                    padding,
                    stride,
                    filter,
                    act,
                },
            ) => at.average_pool(padding, stride, filter, act)?,
            ("SOFTMAX", Options::Softmax { beta }) => Kernel::Softmax(Softmax::new(
                at.input(0)?.int8_grid("input")?.scale,
                beta,
                at.out.int8_grid("output")?,
            )),
            ("QUANTIZE", _) if at.input(0)?.t.type_() == TensorType::FLOAT32 => {
                Kernel::Quantize(at.out.int8_grid("output")?)
            }
            ("DEQUANTIZE", _) if at.out.t.type_() == TensorType::FLOAT32 => {
                Kernel::Dequantize(at.input(0)?.int8_grid("input")?)
            }
            ("RESHAPE" | "SQUEEZE", _) => {
                let x = at.input(0)?;
                x.int8_grid("input")?;
                return Ok(Wire::Reshape(x.shape()?, at.out_shape));
            }
            _ => return Err(Uncovered::NoKernel(name)),
        };
        Ok(Wire::Kernel(Arc::new(kernel), at.out_shape))
    }
}

/// One op's tensors, as its kernel is built.
struct At<'g, 'a> {
    g: &'g Graph<'a>,
    /// Input tensor ids as the file lists them (−1 for one left out).
    ids: Vec<i32>,
    out: TensorRef<'a>,
    out_shape: Vec<usize>,
}

/// The options CONV_2D and DEPTHWISE_CONV_2D share.
struct Geometry {
    padding: fb::Padding,
    stride: [i32; 2],
    act: ActivationFunctionType,
    dilation: [i32; 2],
}

/// What a convolution and a depthwise convolution both need, read and checked once.
struct Filtered<'a> {
    window: Window,
    input_zero_point: i8,
    /// The filter as the file stores it, and its kernel's output channels.
    weights: &'a [i8],
    channels: usize,
    bias: Vec<i32>,
    requant: Requant,
}

impl<'a> At<'_, 'a> {
    fn input(&self, i: usize) -> Result<TensorRef<'a>, Uncovered> {
        let t = *self.ids.get(i).ok_or(Uncovered::InputLeftOut(i))?;
        Ok(self
            .g
            .tensor(usize::try_from(t).map_err(|_| Uncovered::InputLeftOut(i))?)?)
    }

    /// The input, filter, bias and output of a (depthwise) convolution. `channels` reads the
    /// filter's shape against the input's channel count: the output channels, the filter's
    /// height and width, and the dimension its scales run along.
    fn filtered(
        &self,
        geometry: &Geometry,
        channels: impl FnOnce(&[usize], usize) -> Result<(usize, [usize; 2], usize), Uncovered>,
    ) -> Result<Filtered<'a>, Uncovered> {
        no_dilation(geometry.dilation)?;
        let (x, w) = (self.input(0)?, self.input(1)?);
        let (grid, out_grid) = (x.int8_grid("input")?, self.out.int8_grid("output")?);
        let [_, h, wd, cin] = image(&x.shape()?)?;
        let (cout, filter, dim) = channels(&w.shape()?, cin)?;
        let window = window(
            [h, wd, cin],
            filter,
            geometry.stride,
            geometry.padding,
            &self.out_shape,
            cout,
        )?;
        let (weights, scales) = w.per_channel_weights(cout, dim)?;
        Ok(Filtered {
            window,
            input_zero_point: grid.zero_point as i8,
            weights,
            channels: cout,
            bias: bias(self.ids.get(2).copied(), self.g, cout)?,
            requant: requant(grid, &scales, out_grid, geometry.act)?,
        })
    }

    fn conv(&self, geometry: Geometry, isa: Isa) -> Result<Kernel, Uncovered> {
        let f = self.filtered(&geometry, |filter, cin| match *filter {
            [cout, kh, kw, filter_cin] if filter_cin == cin => Ok((cout, [kh, kw], 0)),
            [_, _, _, filter_cin] => Err(Uncovered::Grouped {
                input: cin,
                filter: filter_cin,
            }),
            _ => Err(Uncovered::Filter(filter.to_vec())),
        })?;
        Ok(Kernel::Conv(Conv::new(
            f.window,
            f.input_zero_point,
            f.weights,
            &f.bias,
            f.requant,
            isa,
        )))
    }

    fn depthwise(
        &self,
        geometry: Geometry,
        multiplier: i32,
        isa: Isa,
    ) -> Result<Kernel, Uncovered> {
        let f = self.filtered(&geometry, |filter, c| match *filter {
            [1, kh, kw, filter_c] if multiplier == 1 && filter_c == c => Ok((c, [kh, kw], 3)),
            [1, _, _, _] => Err(Uncovered::DepthMultiplier(multiplier)),
            _ => Err(Uncovered::Filter(filter.to_vec())),
        })?;
        debug_assert_eq!(f.channels, f.window.input[2]);
        Ok(Kernel::Depthwise(Depthwise::new(
            f.window,
            f.input_zero_point,
            f.weights,
            &f.bias,
            f.requant,
            isa,
        )))
    }

    fn add(&self, act: ActivationFunctionType) -> Result<Kernel, Uncovered> {
        let (a, b) = (self.input(0)?, self.input(1)?);
        if a.shape()? != self.out_shape || b.shape()? != self.out_shape {
            return Err(Uncovered::Broadcast);
        }
        let out_grid = self.out.int8_grid("output")?;
        let (a, b) = (a.int8_grid("input")?, b.int8_grid("input")?);
        let add = Add::new(a, b, out_grid, range(act, out_grid)?).ok_or(Uncovered::Rescale)?;
        Ok(Kernel::Add(add))
    }

    fn average_pool(
        &self,
        padding: fb::Padding,
        stride: [i32; 2],
        filter: [i32; 2],
        act: ActivationFunctionType,
    ) -> Result<Kernel, Uncovered> {
        let x = self.input(0)?;
        let out_grid = self.out.int8_grid("output")?;
        if x.int8_grid("input")? != out_grid {
            return Err(Uncovered::Regrid);
        }
        let [_, h, wd, c] = image(&x.shape()?)?;
        let filter = filter.map(|f| usize::try_from(f).unwrap_or(0));
        Ok(Kernel::AvgPool(AvgPool {
            window: window([h, wd, c], filter, stride, padding, &self.out_shape, c)?,
            range: range(act, out_grid)?,
        }))
    }
}

impl<'a> TensorRef<'a> {
    pub(super) fn name(&self) -> String {
        self.t.name().unwrap_or_default().to_string()
    }

    pub(super) fn shape(&self) -> Result<Vec<usize>, Uncovered> {
        self.t
            .shape()
            .into_iter()
            .flatten()
            .map(|d| usize::try_from(d).map_err(|_| Uncovered::Dynamic(self.name())))
            .collect()
    }

    /// tract's type for the tensor as a graph input.
    pub(super) fn datum(&self) -> DatumType {
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
    pub(super) fn grid(&self) -> Option<Grid> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_must_give_the_output_shape_the_file_declares() {
        let w = window(
            [7, 7, 3],
            [3, 3],
            [2, 2],
            fb::Padding::SAME,
            &[1, 4, 4, 5],
            5,
        )
        .unwrap();
        assert_eq!(w.output, [4, 4]);
        assert_eq!(
            window(
                [7, 7, 3],
                [3, 3],
                [2, 2],
                fb::Padding::SAME,
                &[1, 4, 4, 6],
                5
            ),
            Err(Uncovered::OutputShape {
                got: vec![1, 4, 4, 6],
                expected: vec![1, 4, 4, 5]
            })
        );
        assert!(matches!(
            window(
                [7, 7, 3],
                [3, 3],
                [0, 2],
                fb::Padding::SAME,
                &[1, 4, 4, 5],
                5
            ),
            Err(Uncovered::Window { .. })
        ));
        // A 1×1 image through a 3×3 SAME window is one pixel, all but the centre tap padding.
        let w = window(
            [1, 1, 1],
            [3, 3],
            [1, 1],
            fb::Padding::SAME,
            &[1, 1, 1, 1],
            1,
        )
        .unwrap();
        assert_eq!((w.output, w.pad), ([1, 1], [1, 1]));
    }

    #[test]
    fn only_plain_nhwc_images_and_undilated_filters_have_kernels() {
        assert_eq!(image(&[1, 5, 6, 7]), Ok([1, 5, 6, 7]));
        for shape in [&[2, 5, 6, 7][..], &[5, 6, 7], &[1, 1, 5, 6, 7]] {
            assert_eq!(image(shape), Err(Uncovered::NotImage(shape.to_vec())));
        }
        assert_eq!(no_dilation([1, 1]), Ok(()));
        assert_eq!(no_dilation([2, 1]), Err(Uncovered::Dilation([2, 1])));
    }
}
