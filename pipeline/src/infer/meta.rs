//! The sidecar a model ships with (`foo.tflite` → `foo.toml`) and its labels file.
//! A user's own model may have neither: the defaults below then apply.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::MetaError;
use crate::error::TomlError;

/// Pixel normalization of the models in `models/`: `(x − 127) / 128`.
pub const DEFAULT_MEAN: [f32; 3] = [127.0; 3];
pub const DEFAULT_STD: [f32; 3] = [128.0; 3];

/// Contents of a model's `.toml` sidecar.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Human name, e.g. "EfficientNet-Lite0".
    pub name: String,
    /// "fp32" or "int8".
    pub precision: String,
    /// `[height, width]` the model expects; checked against the graph's input.
    pub input_size: [u32; 2],
    /// Per-channel mean in pixel units (0‥255): `x_norm = (x − mean) / std`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation in pixel units.
    pub std: [f32; 3],
    /// Labels file, relative to the sidecar.
    pub labels: Option<PathBuf>,
    /// False for an untrained latency twin: its labels mean nothing.
    pub pretrained: bool,
    /// Where the weights come from and how the file was made.
    pub origin: String,
    pub licence: String,
}

/// The sidecar path for a model file: same stem, `.toml`.
pub fn sidecar_path(model: &Path) -> PathBuf {
    model.with_extension("toml")
}

/// Reads the sidecar if there is one. `Ok(None)` when absent; an unreadable or invalid one is an
/// error (a typo in it must not silently fall back to defaults).
pub fn load_sidecar(model: &Path) -> Result<Option<(PathBuf, ModelMeta)>, MetaError> {
    let path = sidecar_path(model);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(MetaError::Read { path, error }),
    };
    match toml::from_str(&text) {
        Ok(meta) => Ok(Some((path, meta))),
        Err(e) => Err(MetaError::Parse {
            path,
            error: TomlError::new(&e, &text),
        }),
    }
}

/// One label per line; blank trailing lines ignored.
pub fn load_labels(path: &Path) -> Result<Vec<String>, MetaError> {
    let text = std::fs::read_to_string(path).map_err(|error| MetaError::Read {
        path: path.to_owned(),
        error,
    })?;
    let mut labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while labels.last().is_some_and(String::is_empty) {
        labels.pop();
    }
    Ok(labels)
}
