//! `scened classify` and `scened models check` as a user runs them.

use crate::util::*;

const LITE0: &str = "efficientnet_lite0.fp32.tflite";

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn classify_prints_json_per_image_and_dumps_tensors() {
    let dir = tmp_dir("dump");
    let photos = [
        data("photos/224/chelsea.png"),
        data("photos/224/coffee.png"),
    ];
    let model = model(LITE0);
    let mut args = vec!["classify", "--model", model.to_str().unwrap(), "--top", "3"];
    args.extend(["--dump", dir.to_str().unwrap()]);
    args.extend(photos.iter().map(|p| p.to_str().unwrap()));
    let out = scened(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["top"][0]["index"], 285);
    assert_eq!(lines[0]["top"][0]["label"], "Egyptian cat");
    assert_eq!(lines[1]["top"][0]["label"], "espresso");
    for line in &lines {
        assert_eq!(line["top"].as_array().unwrap().len(), 3);
        let score = line["top"][0]["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 1.0, "{line}");
        assert!(line["infer_ms"].as_f64().unwrap() > 0.0);
    }
    // The dumped input is exactly what LiteRT was given; the output is the raw tensor.
    let dumped = std::fs::read(dir.join("chelsea.input.npy")).unwrap();
    let golden = std::fs::read(data("golden/efficientnet_lite0.fp32/chelsea.input.npy")).unwrap();
    let (dumped, golden) = (
        scened_pipeline::npy::from_npy(&dumped).unwrap(),
        scened_pipeline::npy::from_npy(&golden).unwrap(),
    );
    assert_eq!(dumped, golden);
    let output =
        scened_pipeline::npy::from_npy(&std::fs::read(dir.join("chelsea.output.npy")).unwrap())
            .unwrap();
    assert_eq!(output.shape(), &[1, 1000]);
}

#[test]
fn an_unreadable_image_is_reported_and_the_rest_still_classified() {
    let dir = tmp_dir("badimage");
    let bad = dir.join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 definitely not a jpeg").unwrap();
    let good = data("photos/224/coffee.png");
    let model = model(LITE0);
    let out = scened(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "broken.jpg");
    assert_eq!(json_lines(&out).len(), 1);
}

/// An image whose header claims 65535x65535 is refused from its header (`source.max_pixels`'
/// default bound), not decoded into gigabytes; the rest are classified.
#[test]
fn a_header_bomb_is_refused_and_the_rest_still_classified() {
    let dir = tmp_dir("bomb");
    let bomb = write_file(&dir, "bomb.jpg", jpeg_bomb());
    let good = data("photos/224/coffee.png");
    let out = scened(&[
        "classify",
        "--model",
        model(LITE0).to_str().unwrap(),
        arg(&bomb),
        arg(&good),
    ]);
    assert_one_line_error(
        &out,
        "bomb.jpg: cannot decode image: it claims 65535x65535 pixels",
    );
    assert_eq!(json_lines(&out).len(), 1);
}

fn classify_with(model: &std::path::Path) -> std::process::Output {
    let photo = data("photos/224/chelsea.png");
    scened(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        photo.to_str().unwrap(),
    ])
}

#[test]
fn bad_model_files_get_one_line_naming_the_file() {
    let dir = tmp_dir("badmodels");
    let real = std::fs::read(model(LITE0)).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.tflite", vec![], "empty file"),
        (
            "truncated.tflite",
            real[..real.len() / 2].to_vec(),
            "truncated.tflite",
        ),
        (
            "text.tflite",
            b"this is not a model\n".repeat(20),
            "not a TFLite flatbuffer",
        ),
        (
            "header_only.tflite",
            real[..64].to_vec(),
            "not a TFLite flatbuffer",
        ),
    ];
    for (name, bytes, _) in &cases {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    for (name, _, what) in &cases {
        let path = dir.join(name);
        let out = classify_with(&path);
        assert_one_line_error(&out, name);
        assert!(stderr(&out).contains(what), "{name}: {}", stderr(&out));
    }
    let missing = dir.join("missing.tflite");
    assert_one_line_error(&classify_with(&missing), "missing.tflite");
    let random = data("models/random.tflite");
    assert_one_line_error(&classify_with(&random), "random.tflite");
}

#[test]
fn unsupported_graphs_are_refused_naming_the_reason() {
    let mean = data("models/mean_channels.fp32.tflite");
    let out = classify_with(&mean);
    assert_one_line_error(&out, "mean_channels.fp32.tflite");
    assert!(stderr(&out).contains("op MEAN"), "{}", stderr(&out));
    let cumsum = data("models/cumsum.fp32.tflite");
    let out = classify_with(&cumsum);
    assert_one_line_error(
        &out,
        "op CUMSUM (operator #0): not implemented by tract-tflite 0.23.9",
    );
    let not_image = data("models/not_image.fp32.tflite");
    let out = classify_with(&not_image);
    assert_one_line_error(&out, "not an image classifier");
}

#[test]
fn labels_that_do_not_match_the_output_are_refused() {
    let dir = tmp_dir("labels");
    let labels = dir.join("short.txt");
    std::fs::write(&labels, "cat\ndog\n").unwrap();
    let model = model(LITE0);
    let photo = data("photos/224/chelsea.png");
    let out = scened(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "short.txt");
    assert!(
        stderr(&out).contains("2 labels for 1000 output classes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn models_check_reports_ops_and_refusals() {
    let good = model(LITE0);
    let out = scened(&["models", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("AVERAGE_POOL_2D×1"), "{text}");
    assert!(text.contains("float32 [1, 224, 224, 3]"), "{text}");
    let mean = data("models/mean_channels.fp32.tflite");
    let out = scened(&["models", "check", mean.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("op MEAN"));
    let int8 = model("efficientnet_lite0.int8.tflite");
    let out = scened(&["models", "check", int8.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("int8 [1, 224, 224, 3] scale=0.0078125 zero_point=-1"),
        "{text}"
    );
    assert!(
        text.contains("62 of 62 ops on int8 kernels, 0 lowered to float"),
        "{text}"
    );
    assert!(
        text.contains("#0 CONV_2D: int8 (conv 3×3/2 as GEMM"),
        "{text}"
    );
    // Each op's path is named, and an uncovered op's reason.
    let mixed = data("models/mean_fc.int8.tflite");
    let out = scened(&["models", "check", arg(&mixed)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 of 5 ops on int8 kernels, 2 lowered to float on their own"),
        "{text}"
    );
    assert!(
        text.contains("#2 MEAN: float lowering (no int8 kernel for MEAN)"),
        "{text}"
    );
    let refused = data("models/cumsum.int8.tflite");
    let out = scened(&["models", "check", arg(&refused)]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("op CUMSUM (operator #2): not implemented"),
        "{text}"
    );
}

#[test]
fn models_bench_prints_timings_and_a_profile() {
    let int8 = model("efficientnet_lite0.int8.tflite");
    let out = scened(&[
        "models",
        "bench",
        int8.to_str().unwrap(),
        "--runs",
        "2",
        "--warmup",
        "1",
        "--profile",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["model"], "efficientnet_lite0.int8.tflite");
    assert_eq!(line["runs"], 2);
    assert!(line["median_ms"].as_f64().unwrap() > 0.0);
    let profile = stderr(&out);
    assert!(
        profile.contains("Int8Conv") && profile.contains("total"),
        "{profile}"
    );
    // The whole-graph float lowering, the reference, on request.
    let out = scened(&[
        "models",
        "bench",
        arg(&int8),
        "--runs",
        "1",
        "--warmup",
        "0",
        "--profile",
        "--lowered",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = stderr(&out);
    assert!(profile.contains("FakeQuant"), "{profile}");
}
