//! The study's measurement of one model on a labelled folder, in two passes.
//!
//! Inference only: each image decoded and fitted, then only the model's run timed, as the
//! study's app timed the interpreter; its answers give top-1 and top-3. End to end: the same
//! images through the real pipeline (images source → resize → infer → smooth), paced so that
//! no frame waits in a queue, timed from capture (before decoding) to label. Peak RSS is the
//! process's: evaluate one model per process to get that model's alone, as the study measured
//! the whole app.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{score, Dataset, EvalError, LabelMap, Tally};
use crate::classify::{Classifier, ClassifyError};
use crate::config::Config;
use crate::config::{EdgesConfig, OutputConfig};
use crate::decode::ImageError;
use crate::infer::stage::InferConfig;
use crate::infer::{top_k, EngineOptions};
use crate::pipeline::Pipeline;
use crate::queue::{EdgeConfig, WhenFull};
use crate::resize::Fit;
use crate::source::images::ImagesConfig;
use crate::source::SourceConfig;
use crate::stage::Shutdown;
use crate::{rss, stats};

/// Untimed inferences first, so caches and allocations settle.
const WARMUP: usize = 3;
/// The end-to-end pass leaves this multiple of the slowest resize + inference between two
/// frames, so none waits in a queue (which would time the queue, not the pipeline).
const PACE_MARGIN: f64 = 1.5;

/// One model's row of the study's table. Top-1, top-3 and the score are `None` (N/A) for a
/// model its sidecar marks as untrained: its answers mean nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub model: PathBuf,
    pub size_mb: f64,
    pub images: u64,
    pub top1: Option<f64>,
    pub top3: Option<f64>,
    pub infer_s_mean: f64,
    pub infer_s_p50: f64,
    pub infer_s_p99: f64,
    pub e2e_s_p50: f64,
    pub peak_rss_mb: f64,
    pub score: Option<f64>,
}

/// What [`evaluate`] says as it goes, for a progress display.
pub trait Progress {
    /// A pass over `images` images starts: `"inference"` or `"end to end"`.
    fn pass(&mut self, name: &'static str, images: usize);
    /// One more image done.
    fn image(&mut self);
    /// An image that could not be read was skipped (and is not scored).
    fn skipped(&mut self, error: &ImageError);
    /// The pass is over.
    fn finished(&mut self);
}

/// Both passes of `model` over `dataset`, its folders matched to labels through `map`.
pub fn evaluate(
    model: &Path,
    dataset: &Dataset,
    map: &LabelMap,
    threads: usize,
    progress: &mut dyn Progress,
) -> Result<Row, EvalError> {
    let options = EngineOptions {
        threads,
        labels: None,
        ..Default::default()
    };
    let mut classifier = Classifier::load(model, &options, Fit::CenterCrop)?;
    let engine = classifier.engine();
    let name = model.display().to_string();
    let labels = engine.labels().ok_or_else(|| EvalError::NoLabels {
        model: model.to_owned(),
    })?;
    let truths = map.truths(dataset, labels, &name)?;
    let pretrained = engine.meta().is_none_or(|meta| meta.pretrained);
    let size_mb = rss::mib(engine.file_bytes());
    let spec = engine.input().clone();
    let grey = vec![128u8; (spec.height * spec.width * 3) as usize];
    for _ in 0..WARMUP {
        classifier
            .infer(spec.tensor(&grey))
            .map_err(|error| ClassifyError::Infer {
                path: model.to_owned(),
                error,
            })?;
    }
    let scored: Vec<(&PathBuf, &Vec<usize>)> = dataset
        .classes
        .iter()
        .zip(&truths)
        .filter_map(|(class, truth)| truth.as_ref().map(|t| (class, t)))
        .flat_map(|(class, truth)| class.files.iter().map(move |file| (file, truth)))
        .collect();
    progress.pass("inference", scored.len());
    let mut tally = Tally::default();
    let (mut infer_s, mut prepare_s) = (Vec::new(), Vec::new());
    for (file, truth) in scored {
        progress.image();
        let classified = match classifier.classify_file(file) {
            Ok(classified) => classified,
            Err(ClassifyError::Image(error)) => {
                progress.skipped(&error);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        prepare_s.push(classified.prepare_time.as_secs_f64());
        infer_s.push(classified.infer_time.as_secs_f64());
        let top: Vec<usize> = top_k(&classified.inference.probs, 3)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        tally.add(&top, truth);
    }
    progress.finished();
    if tally.images == 0 {
        return Err(EvalError::NothingReadable {
            dir: dataset.dir.clone(),
        });
    }
    infer_s.sort_by(f64::total_cmp);
    prepare_s.sort_by(f64::total_cmp);
    let q = |sorted: &[f64], q| stats::quantile(sorted, q).expect("at least one image");
    let infer_s_mean = stats::mean(&infer_s).expect("at least one image");
    let pace = PACE_MARGIN * (q(&infer_s, 0.99) + q(&prepare_s, 0.99));
    // The end-to-end pass loads its own engine; this one would only add to the peak.
    drop(classifier);
    let e2e_s_p50 = end_to_end(model, dataset, threads, pace, progress)?;

    let (top1, top3) = (tally.top1_percent(), tally.top3_percent());
    Ok(Row {
        model: model.to_owned(),
        size_mb,
        images: tally.images,
        top1: top1.filter(|_| pretrained),
        top3: top3.filter(|_| pretrained),
        infer_s_mean,
        infer_s_p50: q(&infer_s, 0.5),
        infer_s_p99: q(&infer_s, 0.99),
        e2e_s_p50,
        peak_rss_mb: rss::mib(rss::peak_bytes()),
        score: top1.filter(|_| pretrained).map(|t| score(t, infer_s_mean)),
    })
}

/// Median capture-to-label seconds of the dataset's images through the real pipeline, one
/// frame every `pace` seconds.
fn end_to_end(
    model: &Path,
    dataset: &Dataset,
    threads: usize,
    pace: f64,
    progress: &mut dyn Progress,
) -> Result<f64, EvalError> {
    let block = EdgeConfig {
        capacity: 2,
        when_full: WhenFull::Block,
    };
    let config = Config {
        source: SourceConfig::Images(ImagesConfig {
            dir: dataset.dir.clone(),
            looping: false,
            fps: 1.0 / pace,
            recursive: true,
            ..ImagesConfig::default()
        }),
        infer: InferConfig {
            model: Some(model.to_owned()),
            threads,
            ..InferConfig::default()
        },
        edges: EdgesConfig {
            resize: block,
            infer: block,
            smooth: block,
            sink: block,
        },
        output: OutputConfig {
            every_frame: true,
            ..OutputConfig::default()
        },
        ..Config::default()
    };
    let pipeline = Pipeline::build(&config)?;
    progress.pass("end to end", dataset.images());
    let report = pipeline
        .run(&Shutdown::new(), |_| {
            progress.image();
            ControlFlow::Continue(())
        })
        .map_err(EvalError::Threads)?;
    progress.finished();
    if let Some(failed) = report.failure() {
        return Err(EvalError::StageFailed {
            stage: failed.name,
            stop: failed.stop.to_string(),
        });
    }
    let latency = report
        .sink
        .as_ref()
        .map(|sink| &sink.latency)
        .filter(|latency| latency.labels() > 0)
        .ok_or(EvalError::NothingThrough)?;
    Ok(latency.quantile(0.5).as_secs_f64())
}
