//! Still images from disk into frames' pixel format (8-bit RGB).

use std::path::{Path, PathBuf};

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ImageError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads and decodes an image of any format the `image` crate was built with; grayscale and
/// alpha are converted to RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let fail = |reason: String| ImageError {
        path: path.to_owned(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| fail(format!("cannot read image: {e}")))?
        .with_guessed_format()
        .map_err(|e| fail(format!("cannot read image: {e}")))?;
    let image = reader
        .decode()
        .map_err(|e| fail(format!("cannot decode image: {e}")))?;
    Ok(image.into_rgb8())
}
