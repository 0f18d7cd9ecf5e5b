//! Frame → model input: fit the picture to the model's input size with fast_image_resize
//! (bilinear; ~15× faster than `image`'s at 720p), then encode pixels per the model's
//! [`InputSpec`](crate::infer::InputSpec).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::Deserialize;
use tract_tflite::prelude::Tensor;

use crate::frame::{Frame, ModelInput, Stamped};
use crate::infer::{Engine, InputSpec};
use crate::stage::{Stage, StageError};

/// How a frame of another aspect ratio is fitted to the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Scale each axis independently; distorts shapes.
    Stretch,
    /// Crop the centre to the model's aspect ratio, then scale: what the models were trained on.
    #[default]
    CenterCrop,
    /// Scale to fit inside, pad the rest with the normalization mean (zero after normalizing).
    Letterbox,
}

#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("frame of {width}×{height} cannot be resized: {reason}")]
    Frame {
        width: u32,
        height: u32,
        reason: String,
    },
}

/// Reusable resizer for one model input; owns its scratch buffers, one per thread.
pub struct Preprocessor {
    spec: InputSpec,
    fit: Fit,
    resizer: Resizer,
    options: ResizeOptions,
    dst: Image<'static>,
}

impl Preprocessor {
    pub fn new(spec: InputSpec, fit: Fit) -> Self {
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let options = match fit {
            Fit::CenterCrop => options.fit_into_destination(Some((0.5, 0.5))),
            Fit::Stretch | Fit::Letterbox => options,
        };
        let dst = Image::new(spec.width, spec.height, PixelType::U8x3);
        Self {
            spec,
            fit,
            resizer: Resizer::new(),
            options,
            dst,
        }
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// The model's input tensor for `frame`. A frame already at the input size is not resampled,
    /// so a pre-sized image gives bit-exactly the tensor a reference runtime gets.
    pub fn process(&mut self, frame: &RgbImage) -> Result<Tensor, ResizeError> {
        let (w, h) = frame.dimensions();
        if (w, h) == (self.spec.width, self.spec.height) {
            return Ok(self.spec.tensor(frame.as_raw()));
        }
        let fail = |reason: String| ResizeError::Frame {
            width: w,
            height: h,
            reason,
        };
        let src = ImageRef::new(w, h, frame.as_raw(), PixelType::U8x3)
            .map_err(|e| fail(e.to_string()))?;
        if self.fit == Fit::Letterbox {
            return self.letterbox(&src).map_err(|e| fail(e.to_string()));
        }
        self.resizer
            .resize(&src, &mut self.dst, &self.options)
            .map_err(|e| fail(e.to_string()))?;
        Ok(self.spec.tensor(self.dst.buffer()))
    }

    fn letterbox(&mut self, src: &ImageRef<'_>) -> Result<Tensor, fast_image_resize::ResizeError> {
        let (sw, sh) = (src.width() as f64, src.height() as f64);
        let (dw, dh) = (self.spec.width, self.spec.height);
        let scale = (dw as f64 / sw).min(dh as f64 / sh);
        let fw = ((sw * scale).round() as u32).clamp(1, dw);
        let fh = ((sh * scale).round() as u32).clamp(1, dh);
        let mut fitted = Image::new(fw, fh, PixelType::U8x3);
        self.resizer.resize(src, &mut fitted, &self.options)?;
        let fill: [u8; 3] = self.spec.mean.map(|m| m.round().clamp(0.0, 255.0) as u8);
        let canvas = self.dst.buffer_mut();
        for px in canvas.chunks_exact_mut(3) {
            px.copy_from_slice(&fill);
        }
        let (x0, y0) = ((dw - fw) / 2, (dh - fh) / 2);
        let row = fw as usize * 3;
        for (y, src_row) in fitted.buffer().chunks_exact(row).enumerate() {
            let at = ((y0 as usize + y) * dw as usize + x0 as usize) * 3;
            canvas[at..at + row].copy_from_slice(src_row);
        }
        Ok(self.spec.tensor(self.dst.buffer()))
    }
}

/// The resize stage's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResizeConfig {
    /// How a frame of another aspect ratio is fitted: `center_crop`, `stretch` or `letterbox`.
    pub fit: Fit,
}

impl ResizeConfig {
    /// The stage for `engine`'s input. Nothing can fail here: loading the engine checked the
    /// input's shape and type.
    pub fn build(&self, engine: &Engine) -> ResizeStage {
        ResizeStage(Preprocessor::new(engine.input().clone(), self.fit))
    }
}

/// Frame → model input tensor.
pub struct ResizeStage(Preprocessor);

impl Stage for ResizeStage {
    type In = Frame;
    type Out = ModelInput;

    fn process(&mut self, frame: Frame) -> Result<ModelInput, StageError> {
        let tensor = self.0.process(&frame.image).map_err(StageError::item)?;
        Ok(ModelInput {
            stamp: frame.stamp(),
            tensor,
        })
    }
}
