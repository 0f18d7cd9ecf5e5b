//! Still images from disk into frames' pixel format (8-bit RGB).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, RgbImage};

use crate::jpeg;

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ImageError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads and decodes an image of any format the `image` crate was built with; grayscale and
/// alpha are converted to RGB. A JPEG cut short is refused: the decoder would fill the
/// missing part with gray and call it a success.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
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
    let image = reader
        .decode()
        .map_err(|e| fail(format!("cannot decode image: {e}")))?;
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_cut_short_is_refused_and_the_whole_one_decodes() {
        let photo =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/photos/full/coffee.jpg");
        let bytes = std::fs::read(&photo).expect("committed photo");
        let dir = tempfile::tempdir().expect("temp dir");
        let cut = dir.path().join("cut.jpg");
        for len in [bytes.len() / 2, bytes.len() - 2, 600] {
            std::fs::write(&cut, &bytes[..len]).expect("write");
            let err = load_rgb(&cut).expect_err("cut short");
            assert_eq!(
                err.to_string(),
                format!("{}: cannot decode image: JPEG cut short", cut.display())
            );
        }
        // Data after the end marker (a phone's trailer, a motion photo's video) is ignored.
        let trailed = dir.path().join("trailed.jpg");
        std::fs::write(&trailed, [&bytes[..], b"trailer"].concat()).expect("write");
        assert_eq!(
            load_rgb(&trailed).expect("decodes"),
            load_rgb(&photo).expect("decodes")
        );
    }
}
