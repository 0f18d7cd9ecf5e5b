//! Any text as a config file: parsing and the checks `build()` makes before touching a file
//! never panic, and every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scened_pipeline::infer::meta::one_line;
use scened_pipeline::pipeline::PipelineConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let error = match toml::from_str::<PipelineConfig>(text) {
        Ok(mut config) => {
            // A model that cannot exist: build() checks every setting, then stops at the model
            // load, before any file, camera or thread is touched.
            config.infer.model = Some("/nonexistent/scened-fuzz.tflite".into());
            match config.build() {
                Ok(_) => unreachable!("the model does not exist"),
                Err(error) => error.to_string(),
            }
        }
        Err(error) => one_line(&error, text),
    };
    assert!(!error.contains('\n'), "error spans lines: {error:?}");
});
