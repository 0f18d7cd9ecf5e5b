//! The engine on the real models: tract against LiteRT's golden outputs, and refusals.

use scened_pipeline::infer::{int8, Engine, EngineOptions, ModelErrorKind};
use scened_pipeline::resize::{Fit, Preprocessor};
use scened_pipeline::source::DEFAULT_MAX_PIXELS;
use scened_pipeline::{decode, infer, npy};
use tract_tflite::prelude::{DatumType, QParams, Tensor};

use crate::util::{data, model, photos, stem};

/// The float models shipped in `models/`, and their input size.
const FP32_MODELS: &[(&str, u32)] = &[
    ("efficientnet_lite0.fp32", 224),
    ("efficientnet_lite2.fp32", 260),
    ("mobilenet_v2_twin.fp32", 224),
];

fn golden(model_stem: &str, photo: &str, which: &str) -> Tensor {
    let path = data(&format!("golden/{model_stem}/{photo}.{which}.npy"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npy::from_npy(&bytes).unwrap()
}

fn load(stem: &str, threads: usize) -> Engine {
    let options = EngineOptions {
        threads,
        labels: None,
        ..Default::default()
    };
    Engine::load(&model(&format!("{stem}.tflite")), &options).unwrap_or_else(|e| panic!("{e}"))
}

fn argmax(v: &[f32]) -> usize {
    infer::top_k(v, 1)[0].0
}

/// Runs every committed photo through one model; checks the input tensor is bit-identical to the
/// one LiteRT was given and the output is within `tol`. Returns the worst |Δ|.
fn check_against_litert(model_stem: &str, size: u32, threads: usize, tol: f32) -> f32 {
    let engine = load(model_stem, threads);
    let mut session = engine.session().unwrap();
    let mut pre = Preprocessor::new(engine.input().clone(), Fit::CenterCrop);
    let mut worst = 0f32;
    for photo in photos(size) {
        let name = stem(&photo);
        let input = pre
            .process(&decode::load_rgb(&photo, DEFAULT_MAX_PIXELS).unwrap())
            .unwrap();
        assert_eq!(
            input,
            golden(model_stem, &name, "input"),
            "{model_stem}/{name}: input tensor"
        );
        let got = session.run(input).unwrap();
        let want = golden(model_stem, &name, "output");
        let (got_v, want_v) = (
            infer::values::<f32>(&got.raw).unwrap(),
            infer::values::<f32>(&want).unwrap(),
        );
        assert_eq!(got.raw.shape(), want.shape());
        let delta = got_v
            .iter()
            .zip(want_v)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(delta <= tol, "{model_stem}/{name}: max |Δ| {delta} > {tol}");
        assert_eq!(
            argmax(got_v),
            argmax(want_v),
            "{model_stem}/{name}: top-1 differs from LiteRT"
        );
        worst = worst.max(delta);
    }
    worst
}

#[test]
fn fp32_models_match_litert_on_every_photo() {
    for &(model_stem, size) in FP32_MODELS {
        let worst = check_against_litert(model_stem, size, 1, 1e-4);
        eprintln!("{model_stem}: max |Δ| vs LiteRT {worst:e}");
    }
}

#[test]
fn multithreaded_executor_gives_the_same_answers() {
    check_against_litert("efficientnet_lite0.fp32", 224, 2, 1e-4);
}

#[test]
fn full_size_photos_are_resized_and_still_recognised() {
    // Resampling differs from the reference's, so only confident labels are compared.
    let engine = load("efficientnet_lite0.fp32", 1);
    let mut session = engine.session().unwrap();
    let mut pre = Preprocessor::new(engine.input().clone(), Fit::CenterCrop);
    for (photo, label) in [("chelsea", "Egyptian cat"), ("coffee", "espresso")] {
        let full = std::fs::read_dir(data("photos/full"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| stem(p) == photo)
            .unwrap();
        let image = decode::load_rgb(&full, DEFAULT_MAX_PIXELS).unwrap();
        assert_ne!(image.width(), 224, "the full-size photo must need resizing");
        let probs = session.run(pre.process(&image).unwrap()).unwrap().probs;
        assert_eq!(engine.label(argmax(&probs)), label, "{photo}");
    }
}

#[test]
fn every_fit_produces_the_model_input_shape() {
    let engine = load("efficientnet_lite0.fp32", 1);
    let image = image::RgbImage::from_fn(640, 360, |x, y| image::Rgb([x as u8, y as u8, 128]));
    for fit in [Fit::CenterCrop, Fit::Stretch, Fit::Letterbox] {
        let mut pre = Preprocessor::new(engine.input().clone(), fit);
        let t = pre.process(&image).unwrap();
        assert_eq!(t.shape(), &[1, 224, 224, 3], "{fit:?}");
        let v = infer::values::<f32>(&t).unwrap();
        // Letterboxing pads 640×360 → 224×126 with mean-grey rows above and below: exact zeros.
        let first_row_zero = v[..224 * 3].iter().all(|&x| x == 0.0);
        assert_eq!(first_row_zero, fit == Fit::Letterbox, "{fit:?}");
    }
}

/// Full-int8 models and their input size.
const INT8_MODELS: &[(&str, u32)] = &[
    ("efficientnet_lite0.int8", 224),
    ("efficientnet_lite2.int8", 260),
    ("mobilenet_v2_twin.int8", 224),
];

/// Equal shapes and elements; the quantization parameters tract attaches are not in a `.npy`.
#[track_caller]
fn assert_same_values(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    assert!(got.as_bytes() == want.as_bytes(), "{what}: elements differ");
}

fn steps(a: &Tensor, b: &Tensor) -> i32 {
    let (a, b) = (
        infer::values::<i8>(a).unwrap(),
        infer::values::<i8>(b).unwrap(),
    );
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).abs())
        .max()
        .unwrap()
}

/// LiteRT's three kernel sets for int8 models, as the goldens name them: XNNPACK, builtin
/// optimized, builtin reference. They disagree with each other (see `models/README.md`).
const KERNEL_SETS: [&str; 3] = ["output", "output_builtin", "output_reference"];

/// Index of the largest value, the lower index on ties (as `summary.json` orders).
fn top1(v: &[i8]) -> usize {
    v.iter()
        .enumerate()
        .max_by_key(|(i, &x)| (x, std::cmp::Reverse(*i)))
        .unwrap()
        .0
}

/// The gap between the two largest values, in steps.
fn margin(v: &[i8]) -> i32 {
    let mut sorted: Vec<i32> = v.iter().map(|&x| x as i32).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted[0] - sorted[1]
}

/// The accuracy envelope, on every committed photo: scened's top-1 is the top-1 of one
/// of LiteRT's kernel sets (unless LiteRT's own top two are within 2 steps), and scened's raw
/// int8 output is within max(2 steps, the largest spread between LiteRT's kernel sets on that
/// photo) of the nearest kernel set. Returns per photo: (steps to the nearest set, that bound).
fn check_int8_envelope(model_stem: &str, size: u32, lowered: bool) -> Vec<(String, i32, i32)> {
    let options = EngineOptions {
        threads: 1,
        lowered,
        ..Default::default()
    };
    let engine = Engine::load(&model(&format!("{model_stem}.tflite")), &options).unwrap();
    let mut session = engine.session().unwrap();
    let mut pre = Preprocessor::new(engine.input().clone(), Fit::CenterCrop);
    let mut rows = vec![];
    for photo in photos(size) {
        let name = stem(&photo);
        let what = format!("{model_stem}/{name} (lowered: {lowered})");
        let input = pre
            .process(&decode::load_rgb(&photo, DEFAULT_MAX_PIXELS).unwrap())
            .unwrap();
        assert_same_values(&input, &golden(model_stem, &name, "input"), &what);
        let got = session.run(input).unwrap().raw;
        let sets = KERNEL_SETS.map(|k| golden(model_stem, &name, k));
        let spread = sets
            .iter()
            .flat_map(|a| sets.iter().map(move |b| steps(a, b)))
            .max()
            .unwrap();
        let bound = spread.max(2);
        let each = sets.each_ref().map(|s| steps(&got, s));
        let nearest = *each.iter().min().unwrap();
        eprintln!("{what}: steps from XNNPACK, builtin, reference: {each:?}, spread {spread}");
        assert!(
            nearest <= bound,
            "{what}: {nearest} steps from the nearest LiteRT kernel set > {bound}"
        );
        let ours = top1(infer::values::<i8>(&got).unwrap());
        let theirs = sets.each_ref().map(|s| infer::values::<i8>(s).unwrap());
        let near_tie = theirs.iter().any(|v| margin(v) <= 2);
        assert!(
            near_tie || theirs.iter().any(|v| top1(v) == ours),
            "{what}: top-1 {ours} is none of LiteRT's {:?}",
            theirs.map(top1)
        );
        rows.push((name, nearest, bound));
    }
    rows
}

#[test]
fn int8_models_run_inside_litert_envelope() {
    for &(model_stem, size) in INT8_MODELS {
        let engine = load(model_stem, 1);
        assert!(engine.changes().is_empty(), "{:?}", engine.changes());
        let lowered: Vec<_> = engine
            .op_paths()
            .iter()
            .filter(|p| !matches!(p.path, int8::Path::Int8(_)))
            .collect();
        assert!(
            lowered.is_empty(),
            "{model_stem}: ops lowered to float: {lowered:?}"
        );
        for (photo, nearest, bound) in check_int8_envelope(model_stem, size, false) {
            eprintln!("{model_stem}/{photo}: {nearest} steps from the nearest LiteRT kernel set (bound {bound})");
        }
    }
}

/// The whole-graph float lowering stays the reference and the fallback: it too runs inside
/// the envelope.
#[test]
fn the_float_lowering_of_int8_models_stays_inside_litert_envelope() {
    for &(model_stem, size) in INT8_MODELS {
        for (photo, nearest, bound) in check_int8_envelope(model_stem, size, true) {
            eprintln!("{model_stem}/{photo} lowered: {nearest} steps (bound {bound})");
        }
    }
}

#[test]
fn float_mean_is_rewritten_as_average_pool_and_matches_litert() {
    let path = data("models/mean_pool.fp32.tflite");
    let engine = Engine::load(&path, &EngineOptions::default()).unwrap();
    assert_eq!(
        engine.changes(),
        [
            "MEAN (operator #1) rewritten as AVERAGE_POOL_2D 30×30",
            "FULLY_CONNECTED (operator #3): the omitted bias made an explicit zero bias"
        ]
    );
    let read = |which: &str| {
        npy::from_npy(&std::fs::read(data(&format!("models/mean_pool.fp32.{which}.npy"))).unwrap())
            .unwrap()
    };
    let got = engine.session().unwrap().run(read("input")).unwrap();
    let want = read("output");
    let (got, want) = (
        infer::values::<f32>(&got.raw).unwrap(),
        infer::values::<f32>(&want).unwrap(),
    );
    let delta = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(delta <= 1e-6, "max |Δ| {delta}");
}

fn refusal(path: &std::path::Path) -> ModelErrorKind {
    Engine::load(path, &EngineOptions::default())
        .expect_err("must be refused")
        .kind
}

#[test]
fn a_mean_that_cannot_be_rewritten_is_refused_naming_the_op() {
    match refusal(&data("models/mean_channels.fp32.tflite")) {
        ModelErrorKind::Prepare(why) => {
            let why = why.to_string();
            assert!(why.contains("op MEAN") && why.contains("[3]"), "{why}")
        }
        other => panic!("expected a preparation refusal, got {other}"),
    }
}

#[test]
fn an_op_tract_does_not_implement_is_refused_naming_it() {
    match refusal(&data("models/cumsum.fp32.tflite")) {
        ModelErrorKind::Refused(r) => {
            assert_eq!(r.op, "CUMSUM");
            assert!(r.reason.contains("not implemented"), "{}", r.reason);
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn a_model_that_is_not_an_image_classifier_is_refused() {
    match refusal(&data("models/not_image.fp32.tflite")) {
        ModelErrorKind::NotClassifier(why) => {
            assert!(why.to_string().contains("[1, 16]"), "{why}")
        }
        other => panic!("expected NotClassifier, got {other}"),
    }
}

/// A user's int8 model with ops scened has no int8 kernel for (MEAN, FULLY_CONNECTED) runs:
/// those two are lowered to float one by one, the rest stays int8, and the output matches
/// LiteRT's builtin kernels within 2 steps on the committed input.
#[test]
fn an_int8_model_with_uncovered_ops_runs_them_lowered_one_by_one() {
    let engine = Engine::load(
        &data("models/mean_fc.int8.tflite"),
        &EngineOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<(&str, bool)> = engine
        .op_paths()
        .iter()
        .map(|p| (p.op.as_str(), matches!(p.path, int8::Path::Int8(_))))
        .collect();
    for (op, int8) in [
        ("CONV_2D", true),
        ("DEPTHWISE_CONV_2D", true),
        ("MEAN", false),
        ("FULLY_CONNECTED", false),
        ("SOFTMAX", true),
    ] {
        assert!(paths.contains(&(op, int8)), "{op} int8={int8} in {paths:?}");
    }
    let read = |which: &str| -> Tensor {
        let path = data(&format!("models/mean_fc.int8.{which}.npy"));
        npy::from_npy(&std::fs::read(path).unwrap()).unwrap()
    };
    let q = engine.inspection().inputs[0].quant.unwrap();
    let mut input = read("input");
    // SAFETY: the same i8 values, typed with the input's declared grid as a session expects.
    unsafe {
        input.set_datum_type(DatumType::QI8(QParams::ZpScale {
            zero_point: q.zero_point,
            scale: q.scale,
        }))
    };
    let got = engine.session().unwrap().run(input).unwrap().raw;
    let want = read("output");
    assert!(steps(&got, &want) <= 2, "{got:?} vs LiteRT {want:?}");
}

#[test]
fn an_int8_model_with_an_op_tract_cannot_run_is_refused_naming_it() {
    match refusal(&data("models/cumsum.int8.tflite")) {
        ModelErrorKind::Refused(r) => {
            assert_eq!(r.op, "CUMSUM");
            assert!(r.reason.contains("not implemented"), "{}", r.reason);
        }
        other => panic!("expected a refusal, got {other}"),
    }
}
