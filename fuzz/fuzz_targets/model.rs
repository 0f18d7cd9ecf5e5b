//! Any bytes as a model file: loading never panics or aborts, and a refusal is one line
//! naming the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scened_pipeline::infer::{Engine, EngineOptions};

/// One file per fuzzing process, rewritten for each input.
fn model_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("scened-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("fuzzed.tflite")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = model_path();
    std::fs::write(path, data).expect("write the model");
    if let Err(error) = Engine::load(path, &EngineOptions::default()) {
        let error = error.to_string();
        assert!(!error.contains('\n'), "error spans lines: {error:?}");
        assert!(error.contains("fuzzed.tflite"), "error does not name the file: {error}");
    }
});
