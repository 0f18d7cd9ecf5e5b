//! The JPEG segment walker that frames MJPEG clips and checks still images.
//!
//! A JPEG's end is found by walking its segments rather than by searching for the end marker:
//! segment lengths step over APP1 payloads, whose EXIF thumbnails hold a whole nested JPEG, and
//! in entropy-coded data only a marker other than stuffing (`FF 00`) or a restart
//! (`FF D0`–`FF D7`) ends a scan. The walk reads no pixel data, so it costs next to nothing.

/// Start of image: every JPEG begins with it.
pub const SOI: [u8; 2] = [0xFF, 0xD8];

/// Whether a JPEG (`data` starts with its start marker) ends before its end marker.
pub fn cut_short(data: &[u8]) -> bool {
    parse(data) == Parse::Incomplete
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole JPEG of `len` bytes, `size` (width, height) pixels.
    Frame { len: usize, size: (u32, u32) },
    /// Not a JPEG, or a broken one.
    Bad(&'static str),
    /// The data ends before the JPEG does.
    Incomplete,
}

/// Walks the JPEG at the start of `data` (which starts with [`SOI`]) to its end marker.
pub fn parse(data: &[u8]) -> Parse {
    walk(data).0
}

/// The size (width, height) the JPEG's frame header claims, whether or not the rest is whole:
/// what a decoder would allocate for, read before it does.
pub fn claimed_size(data: &[u8]) -> Option<(u32, u32)> {
    walk(data).1
}

/// [`parse`], and the frame header's size if the walk got that far.
fn walk(data: &[u8]) -> (Parse, Option<(u32, u32)>) {
    let mut size = None;
    let mut at = SOI.len();
    let parse = loop {
        // A marker: 0xFF, any number of 0xFF fill bytes, then the marker code.
        match data.get(at) {
            None => break Parse::Incomplete,
            Some(0xFF) => {}
            Some(_) => break Parse::Bad("expected a marker"),
        }
        let Some(fill) = data[at..].iter().position(|&byte| byte != 0xFF) else {
            break Parse::Incomplete;
        };
        let code = data[at + fill];
        at += fill + 1;
        match code {
            0xD9 => {
                break match size {
                    Some(size) => Parse::Frame { len: at, size },
                    None => Parse::Bad("frame without a frame header"),
                }
            }
            0xD8 => break Parse::Bad("frame cut short by the next frame"),
            0x00 => break Parse::Bad("expected a marker"),
            // Markers without a length: TEM and restarts.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(&[high, low]) = data.get(at..at + 2) else {
            break Parse::Incomplete;
        };
        let length = usize::from(u16::from_be_bytes([high, low]));
        if length < 2 {
            break Parse::Bad("segment length below 2");
        }
        let Some(segment) = data.get(at..at + length) else {
            break Parse::Incomplete;
        };
        if is_start_of_frame(code) {
            // Length (2), precision (1), height (2), width (2).
            let Some(&[_, _, _, h1, h0, w1, w0]) = segment.get(..7) else {
                break Parse::Bad("frame header too short");
            };
            let (height, width) = (u16::from_be_bytes([h1, h0]), u16::from_be_bytes([w1, w0]));
            if height == 0 || width == 0 {
                break Parse::Bad("frame header gives no size");
            }
            size = Some((u32::from(width), u32::from(height)));
        }
        at += length;
        if code == 0xDA {
            match end_of_scan(data, at) {
                Some(end) => at = end,
                None => break Parse::Incomplete,
            }
        }
    };
    (parse, size)
}

/// SOF0–SOF15, less DHT (C4), JPG (C8) and DAC (CC) which share the range.
fn is_start_of_frame(code: u8) -> bool {
    matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC)
}

/// Where the entropy-coded data starting at `from` ends: at the first 0xFF that is neither
/// stuffing (`FF 00`), a restart marker nor fill. `None` if the data ends first.
fn end_of_scan(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let ff = at + data.get(at..)?.iter().position(|&byte| byte == 0xFF)?;
        match *data.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => at = ff + 2,
            0xFF => at = ff + 1,
            _ => return Some(ff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_restarts_and_fill_bytes_stay_inside_the_scan() {
        let sof = [0xFF, 0xC0, 0, 11, 8, 0, 2, 0, 3, 1, 1, 0x11, 0];
        let sos = [0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0];
        let scan = [
            0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD7, 0x78,
        ];
        let jpeg = [&SOI[..], &sof, &sos, &scan, &[0xFF, 0xD9]].concat();
        let whole = Parse::Frame {
            len: jpeg.len(),
            size: (3, 2),
        };
        assert_eq!(parse(&jpeg), whole);
        for cut in 2..jpeg.len() {
            assert_eq!(parse(&jpeg[..cut]), Parse::Incomplete, "cut at {cut}");
            assert!(cut_short(&jpeg[..cut]));
        }
        assert!(!cut_short(&jpeg));
    }
}
