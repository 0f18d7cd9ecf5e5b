//! Writes a tensor as a NumPy `.npy` file (format 1.0), so a dump can be compared with what a
//! reference runtime produced, in Python, without conversion.

use tract_tflite::prelude::{DatumType, Tensor};

/// A tensor that cannot be written as, or bytes that are not, a `.npy` file scened reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    #[error("cannot write {0} as .npy")]
    Unwritable(String),
    #[error("not a .npy file")]
    NotNpy,
    #[error("unknown .npy version")]
    Version,
    #[error("truncated .npy header")]
    TruncatedHeader,
    #[error("the .npy header is not text")]
    HeaderText,
    #[error("no {0} in header")]
    MissingField(&'static str),
    #[error("Fortran-ordered arrays are not supported")]
    FortranOrder,
    #[error("unsupported dtype {0}")]
    Dtype(String),
    #[error("malformed shape {0}")]
    Shape(String),
    #[error("data shorter than its shape")]
    ShortData,
    #[error("cannot make a tensor of it: {0}")]
    Tensor(String),
}

/// Serializes `t` (f32, i8 or u8, quantized or not) as `.npy` bytes.
pub fn to_npy(t: &Tensor) -> Result<Vec<u8>, NpyError> {
    let descr = match t.datum_type().unquantized() {
        DatumType::F32 => "<f4",
        DatumType::I8 => "|i1",
        DatumType::U8 => "|u1",
        other => return Err(NpyError::Unwritable(format!("{other:?}"))),
    };
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.as_bytes().len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.as_bytes());
    Ok(out)
}

/// Parses `.npy` bytes written by NumPy or [`to_npy`] (little-endian f32, i8 or u8, C order).
pub fn from_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or(NpyError::NotNpy)?;
    let (header, data) = match rest {
        [1, _, a, b, rest @ ..] => split(rest, u16::from_le_bytes([*a, *b]) as usize)?,
        [2 | 3, _, a, b, c, d, rest @ ..] => {
            split(rest, u32::from_le_bytes([*a, *b, *c, *d]) as usize)?
        }
        _ => return Err(NpyError::Version),
    };
    let field = |key: &'static str| -> Result<&str, NpyError> {
        let at = header
            .find(&format!("'{key}':"))
            .ok_or(NpyError::MissingField(key))?;
        Ok(header[at + key.len() + 3..].trim_start())
    };
    if field("fortran_order")?.starts_with("True") {
        return Err(NpyError::FortranOrder);
    }
    let descr = field("descr")?;
    let dt = match descr.get(..5) {
        Some("'<f4'") => DatumType::F32,
        Some("'|i1'") => DatumType::I8,
        Some("'|u1'") => DatumType::U8,
        _ => return Err(NpyError::Dtype(descr.to_owned())),
    };
    let shape_text = field("shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split_once(')'))
        .ok_or_else(|| NpyError::Shape(shape_text.to_owned()))?
        .0;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| NpyError::Shape(inner.to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let len = shape.iter().product::<usize>() * dt.size_of();
    let data = data.get(..len).ok_or(NpyError::ShortData)?;
    // SAFETY: `data` holds exactly `len` bytes of `dt` values; from_raw_dt copies them into an
    // aligned buffer.
    unsafe { Tensor::from_raw_dt(dt, &shape, data) }.map_err(|e| NpyError::Tensor(e.to_string()))
}

fn split(rest: &[u8], header_len: usize) -> Result<(&str, &[u8]), NpyError> {
    if rest.len() < header_len {
        return Err(NpyError::TruncatedHeader);
    }
    let (header, data) = rest.split_at(header_len);
    let header = std::str::from_utf8(header).map_err(|_| NpyError::HeaderText)?;
    Ok((header, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_dtype_with_aligned_header() {
        for t in [
            Tensor::from_shape(&[1, 3], &[0.5f32, -1.0, 3.25]).unwrap(),
            Tensor::from_shape(&[2, 1, 2], &[-128i8, 0, 5, 127]).unwrap(),
            Tensor::from_shape(&[4], &[0u8, 1, 2, 255]).unwrap(),
        ] {
            let bytes = to_npy(&t).unwrap();
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(from_npy(&bytes).unwrap(), t);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(from_npy(b"hello").is_err());
        let mut truncated = to_npy(&Tensor::from_shape(&[8], &[1f32; 8]).unwrap()).unwrap();
        truncated.truncate(truncated.len() - 4);
        assert_eq!(
            from_npy(&truncated).unwrap_err().to_string(),
            "data shorter than its shape"
        );
    }
}
