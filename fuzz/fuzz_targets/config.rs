//! Any text as a config file, through the daemon's own parser: parsing, the checks and the
//! steps of `Pipeline::build` before touching a file never panic, and every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scened_pipeline::config::Config;
use scened_pipeline::pipeline::Pipeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let error = match Config::parse(text) {
        Ok(mut config) => {
            // A model that cannot exist: build() checks each stage's settings, then stops at
            // the model load, before any file, camera or thread is touched.
            config.infer.model = Some("/nonexistent/scened-fuzz.tflite".into());
            match config.check() {
                Err(error) => error.to_string(),
                Ok(()) => match Pipeline::build(&config) {
                    Ok(_) => unreachable!("the model does not exist"),
                    Err(error) => error.to_string(),
                },
            }
        }
        Err(error) => error.to_string(),
    };
    assert!(!error.contains('\n'), "error spans lines: {error:?}");
});
