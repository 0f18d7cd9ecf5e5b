//! What a macOS capture output is asked to deliver, and how its frames become RGB. Pure
//! functions over Core Video's four-character codes and a frame's bytes, so they are tested
//! here; `macos/session.rs` only reads the lists and copies the bytes.
//!
//! A capture output can convert whatever the camera sends, an MJPEG webcam's JPEGs included,
//! into any of its uncompressed pixel formats. Asking it for a compressed one (nokhwa 0.10
//! asks for `'jpeg'` on an MJPEG mode) makes AVFoundation raise an Objective-C exception, and
//! a compressed sample carries no image buffer anyway: so only the formats below are ever
//! asked for, whatever the camera offers.

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{FrameFormat, Resolution};
use nokhwa::Buffer;

use crate::source::FrameError;

/// An uncompressed pixel format a capture output delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `'BGRA'` (`kCVPixelFormatType_32BGRA`): the output converts to RGB itself, so this
    /// side only drops alpha and swaps red and blue.
    Bgra,
    /// `'yuvs'` (`kCVPixelFormatType_422YpCbCr8_yuvs`): YUYV, decoded as a V4L2 camera's.
    Yuvs,
    /// `'2vuy'` (`kCVPixelFormatType_422YpCbCr8`): UYVY, reordered to YUYV.
    Uyvy,
}

impl OutputFormat {
    /// Best first; nothing compressed.
    pub const PREFERRED: [Self; 3] = [Self::Bgra, Self::Yuvs, Self::Uyvy];

    pub const fn fourcc(self) -> u32 {
        u32::from_be_bytes(match self {
            Self::Bgra => *b"BGRA",
            Self::Yuvs => *b"yuvs",
            Self::Uyvy => *b"2vuy",
        })
    }

    const fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Bgra => 4,
            Self::Yuvs | Self::Uyvy => 2,
        }
    }

    /// The RGB picture in a frame of this format, `width` x `height`, whose rows start every
    /// `bytes_per_row` bytes of `bytes` (Core Video pads rows).
    pub fn to_rgb(
        self,
        width: usize,
        height: usize,
        bytes_per_row: usize,
        bytes: &[u8],
    ) -> Result<RgbImage, FrameError> {
        let row = width * self.bytes_per_pixel();
        let fits = width > 0
            && height > 0
            && bytes_per_row >= row
            && bytes.len() >= bytes_per_row * (height - 1) + row
            && (self == Self::Bgra || width.is_multiple_of(2));
        if !fits {
            return Err(FrameError::Malformed(
                "the frame's bytes do not match its size and format",
            ));
        }
        let rows = bytes
            .chunks(bytes_per_row)
            .take(height)
            .map(|line| &line[..row]);
        let (w, h) = (width as u32, height as u32);
        match self {
            Self::Bgra => {
                let rgb = rows
                    .flat_map(|line| line.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0]]))
                    .collect();
                RgbImage::from_raw(w, h, rgb).ok_or(FrameError::Malformed("short frame"))
            }
            Self::Yuvs | Self::Uyvy => {
                let mut yuyv: Vec<u8> = rows.flatten().copied().collect();
                if self == Self::Uyvy {
                    // U Y0 V Y1 → Y0 U Y1 V.
                    yuyv.chunks_exact_mut(2).for_each(|pair| pair.swap(0, 1));
                }
                let buffer = Buffer::new(Resolution::new(w, h), &yuyv, FrameFormat::YUYV);
                buffer
                    .decode_image::<RgbFormat>()
                    .map_err(FrameError::Decode)
            }
        }
    }
}

/// The format to ask a capture output for, from the pixel formats it lists
/// (`availableVideoCVPixelFormatTypes`): the first of [`OutputFormat::PREFERRED`] it has;
/// `None` if it has none of them, and then nothing is asked for.
pub fn choose_output(available: &[u32]) -> Option<OutputFormat> {
    OutputFormat::PREFERRED
        .into_iter()
        .find(|format| available.contains(&format.fourcc()))
}

/// A four-character code as text, for logs and errors.
pub fn fourcc_text(code: u32) -> String {
    String::from_utf8_lossy(&code.to_be_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fourccs(codes: &[&[u8; 4]]) -> Vec<u32> {
        codes
            .iter()
            .map(|code| u32::from_be_bytes(**code))
            .collect()
    }

    /// What a capture output lists on a Mac, whatever the camera sends: the request is
    /// always uncompressed, for an MJPEG-only webcam too, and a list with only compressed
    /// codes gets no request at all.
    #[test]
    fn only_an_uncompressed_format_is_ever_asked_for() {
        let mac = fourccs(&[b"420v", b"420f", b"BGRA", b"2vuy", b"yuvs"]);
        assert_eq!(choose_output(&mac), Some(OutputFormat::Bgra));
        // An MJPEG-only webcam: its device formats are 'dmb1'; the output still converts.
        let mjpeg_webcam_output = fourccs(&[b"jpeg", b"dmb1", b"2vuy", b"420v"]);
        assert_eq!(
            choose_output(&mjpeg_webcam_output),
            Some(OutputFormat::Uyvy)
        );
        assert_eq!(choose_output(&fourccs(&[b"jpeg", b"dmb1"])), None);
        assert_eq!(choose_output(&[]), None);
        for format in OutputFormat::PREFERRED {
            assert!(!["jpeg", "dmb1", "avc1", "hvc1"].contains(&&*fourcc_text(format.fourcc())));
        }
        assert_eq!(fourcc_text(OutputFormat::Uyvy.fourcc()), "2vuy");
    }

    #[test]
    fn bgra_rows_with_padding_become_rgb() {
        // 2x2, rows padded to 12 bytes.
        let bytes = [
            1, 2, 3, 255, 4, 5, 6, 255, 0, 0, 0, 0, //
            7, 8, 9, 255, 10, 11, 12, 255, 0, 0, 0, 0,
        ];
        let image = OutputFormat::Bgra.to_rgb(2, 2, 12, &bytes).unwrap();
        assert_eq!(image.into_raw(), [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
        assert!(OutputFormat::Bgra.to_rgb(2, 2, 12, &bytes[..19]).is_err());
        assert!(OutputFormat::Bgra.to_rgb(3, 2, 8, &bytes).is_err());
        assert!(OutputFormat::Bgra.to_rgb(0, 2, 8, &bytes).is_err());
    }

    /// Mid grey in both 4:2:2 orders, with row padding: the same grey picture.
    #[test]
    fn yuvs_and_2vuy_decode_to_the_same_picture() {
        let (width, height, stride) = (4, 2, 12);
        let row = |pixel: [u8; 4]| {
            let mut line = pixel.repeat(2);
            line.extend([0; 4]);
            line
        };
        let yuvs = [row([128, 128, 128, 128]), row([128, 128, 128, 128])].concat();
        let uyvy = yuvs.clone();
        let a = OutputFormat::Yuvs
            .to_rgb(width, height, stride, &yuvs)
            .unwrap();
        let b = OutputFormat::Uyvy
            .to_rgb(width, height, stride, &uyvy)
            .unwrap();
        assert_eq!(a.dimensions(), (4, 2));
        assert_eq!(a, b);
        assert!(a
            .pixels()
            .all(|p| p.0.iter().all(|&c| c.abs_diff(128) <= 2)));
        // Y 235 (white) in UYVY is at the odd bytes.
        let white_uyvy = [128, 235, 128, 235].repeat(4);
        let white = OutputFormat::Uyvy.to_rgb(4, 2, 8, &white_uyvy).unwrap();
        assert!(
            white.pixels().all(|p| p.0.iter().all(|&c| c >= 250)),
            "{white:?}"
        );
        // An odd width cannot be 4:2:2.
        assert!(OutputFormat::Yuvs.to_rgb(3, 2, 12, &yuvs).is_err());
    }
}
