//! Still images from disk into frames' pixel format (8-bit RGB).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};

use crate::jpeg;

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ImageError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads and decodes an image of any format the `image` crate was built with; grayscale and
/// alpha are converted to RGB. A JPEG cut short is refused: the decoder would fill the
/// missing part with gray and call it a success. So is an image whose header claims more than
/// `max_pixels` (`source::DEFAULT_MAX_PIXELS` for `classify` and `eval`), before the decoder
/// allocates for it.
pub fn load_rgb(path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let fail = |reason: String| ImageError {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read image: {e}")))?;
    if image::guess_format(&bytes).ok() == Some(ImageFormat::Jpeg) && jpeg::cut_short(&bytes) {
        return Err(fail("cannot decode image: JPEG cut short".into()));
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(format!("cannot read image: {e}")))?;
    let decoder = reader
        .into_decoder()
        .map_err(|e| fail(format!("cannot decode image: {e}")))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(fail(format!(
            "cannot decode image: it claims {width}x{height} pixels, over source.max_pixels \
             ({max_pixels})"
        )));
    }
    let image = DynamicImage::from_decoder(decoder)
        .map_err(|e| fail(format!("cannot decode image: {e}")))?;
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DEFAULT_MAX_PIXELS;

    #[test]
    fn a_jpeg_cut_short_is_refused_and_the_whole_one_decodes() {
        let photo =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/photos/full/coffee.jpg");
        let bytes = std::fs::read(&photo).expect("committed photo");
        let dir = tempfile::tempdir().expect("temp dir");
        let cut = dir.path().join("cut.jpg");
        for len in [bytes.len() / 2, bytes.len() - 2, 600] {
            std::fs::write(&cut, &bytes[..len]).expect("write");
            let err = load_rgb(&cut, DEFAULT_MAX_PIXELS).expect_err("cut short");
            assert_eq!(
                err.to_string(),
                format!("{}: cannot decode image: JPEG cut short", cut.display())
            );
        }
        // Data after the end marker (a phone's trailer, a motion photo's video) is ignored.
        let trailed = dir.path().join("trailed.jpg");
        std::fs::write(&trailed, [&bytes[..], b"trailer"].concat()).expect("write");
        assert_eq!(
            load_rgb(&trailed, DEFAULT_MAX_PIXELS).expect("decodes"),
            load_rgb(&photo, DEFAULT_MAX_PIXELS).expect("decodes")
        );
    }
}
