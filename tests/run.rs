//! The live pipeline end to end: the real model, the committed clip and photos, real threads,
//! and `scened run` as a user runs it, signals included.

use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use scened_pipeline::classify::Classifier;
use scened_pipeline::config::Config;
use scened_pipeline::config::{EdgesConfig, OutputConfig};
use scened_pipeline::events::{Event, Label, Subscriber};
use scened_pipeline::frame::LabelEvent;
use scened_pipeline::infer::stage::{InferConfig, Workers, DEFAULT_MODEL};
use scened_pipeline::infer::{top_k, EngineOptions};
use scened_pipeline::pipeline::Pipeline;
use scened_pipeline::queue::{EdgeConfig, EdgeStats, WhenFull};
use scened_pipeline::resize::Fit;
use scened_pipeline::runner::{PipelineReport, StopReason};
use scened_pipeline::smooth::{EmaConfig, SmoothConfig};
use scened_pipeline::source::clip::ClipConfig;
use scened_pipeline::source::images::ImagesConfig;
use scened_pipeline::source::SourceConfig;
use scened_pipeline::stage::Shutdown;
use scened_pipeline::telemetry::TelemetryConfig;
use serde_json::Value;

use crate::util::*;

pub(crate) const LITE0: &str = "efficientnet_lite0.fp32.tflite";

/// The file name of the model run when none is named (int8 Lite0).
pub(crate) fn default_model() -> &'static str {
    let file = Path::new(DEFAULT_MODEL).file_name().unwrap();
    file.to_str().unwrap()
}
/// Frames in the demo clip, `tests/data/clips/scenes.mjpeg`.
pub(crate) const CLIP_FRAMES: u64 = 90;

pub(crate) fn every_edge(capacity: usize, when_full: WhenFull) -> EdgesConfig {
    let edge = EdgeConfig {
        capacity,
        when_full,
    };
    EdgesConfig {
        resize: edge,
        infer: edge,
        smooth: edge,
        sink: edge,
    }
}

/// The demo clip as fast as the pipeline takes it, every frame to the sink.
pub(crate) fn demo_clip(edges: EdgesConfig) -> Config {
    Config {
        source: SourceConfig::Clip(ClipConfig {
            fps: 0.0,
            ..ClipConfig::default()
        }),
        infer: InferConfig {
            model: Some(model(LITE0)),
            ..InferConfig::default()
        },
        edges,
        output: OutputConfig {
            every_frame: true,
            ..OutputConfig::default()
        },
        ..Config::default()
    }
}

pub(crate) fn run_with(
    config: &Config,
    mut on_event: impl FnMut(&LabelEvent),
) -> (Vec<LabelEvent>, PipelineReport) {
    let pipeline = Pipeline::build(config).unwrap_or_else(|e| panic!("{e}"));
    let mut events = Vec::new();
    let report = pipeline
        .run(&Shutdown::new(), |event| {
            on_event(event);
            events.push(event.clone());
            ControlFlow::Continue(())
        })
        .expect("threads start");
    assert!(report.is_clean(), "{report}");
    (events, report)
}

pub(crate) fn run(config: &Config) -> (Vec<LabelEvent>, PipelineReport) {
    run_with(config, |_| {})
}

/// Labels where they change, in order.
pub(crate) fn changes(events: &[LabelEvent]) -> Vec<&str> {
    let mut labels: Vec<&str> = events.iter().map(|e| e.label.as_str()).collect();
    labels.dedup();
    labels
}

/// `(photo, first frame, last frame)` per segment of the demo clip.
fn clip_segments() -> Vec<(String, u64, u64)> {
    let text = std::fs::read_to_string(data("clips/scenes.json")).unwrap();
    let meta: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(meta["frames"], CLIP_FRAMES);
    meta["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let frame = |key: &str| s[key].as_u64().unwrap();
            let photo = s["photo"].as_str().unwrap().to_owned();
            (photo, frame("first_frame"), frame("last_frame"))
        })
        .collect()
}

#[test]
fn the_demo_clip_is_labelled_scene_by_scene() {
    let (events, report) = run(&demo_clip(every_edge(2, WhenFull::Block)));
    assert_eq!(events.len() as u64, CLIP_FRAMES);
    assert_eq!(changes(&events), ["Egyptian cat", "espresso", "tripod"]);
    // Each label takes over within a few frames of its photo's first frame (smoothing lags).
    let segments = clip_segments();
    let photos: Vec<&str> = segments.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(photos, ["chelsea", "coffee", "camera"]);
    let switches: Vec<u64> = events
        .iter()
        .filter(|e| e.changed)
        .map(|e| e.frame)
        .collect();
    for (&switch, (photo, first, last)) in switches.iter().zip(&segments) {
        assert!((*first..first + 5).contains(&switch), "{photo}: {switch}");
        assert!(switch < *last, "{photo}: {switch}");
    }
    let frames: Vec<u64> = events.iter().map(|e| e.frame).collect();
    assert_eq!(frames, (0..CLIP_FRAMES).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.score > 0.0 && e.score <= 1.0));
    assert_every_frame_accounted_for(&report, events.len());
    assert_eq!(report.stages[0].stop, StopReason::EndOfStream);
}

/// The event stream carries what the sink gets, framed by `started` and `stopped`.
#[test]
fn the_event_stream_is_the_labels_between_started_and_stopped() {
    let config = demo_clip(every_edge(2, WhenFull::Block));
    let pipeline = Pipeline::build(&config).unwrap_or_else(|e| panic!("{e}"));
    // Read after the run: room for every event, or the pipeline would wait for the reader.
    let stream = pipeline.events().subscribe(Subscriber::blocking(1000));
    let mut sunk = Vec::new();
    let report = pipeline
        .run(&Shutdown::new(), |event| {
            sunk.push(Event::Label(Label::from(event)));
            ControlFlow::Continue(())
        })
        .expect("threads start");
    let events: Vec<Event> = std::iter::from_fn(|| stream.recv())
        .map(|event| (*event).clone())
        .collect();
    let Some((Event::Started(started), rest)) = events.split_first() else {
        panic!("not started first: {events:?}");
    };
    // Unset, the camera is named after the host.
    let camera = TelemetryConfig::default().camera_name().into_owned();
    assert_eq!(
        (started.model.as_str(), started.camera.as_str()),
        (LITE0, camera.as_str())
    );
    let Some((Event::Stopped(stopped), labels)) = rest.split_last() else {
        panic!("not stopped last: {events:?}");
    };
    assert_eq!(labels, sunk);
    assert_eq!(labels.len() as u64, CLIP_FRAMES);
    assert_eq!(
        (stopped.reason.as_str(), stopped.frames, stopped.drops),
        ("end_of_stream", CLIP_FRAMES, 0)
    );
    assert_eq!(stopped.errors, 0);
    assert!(report.is_clean());
}

/// Every photo in `dir` once, as fast as the blocking queues take them, unsmoothed.
pub(crate) fn photo_folder(dir: PathBuf) -> Config {
    Config {
        source: SourceConfig::Images(ImagesConfig {
            dir,
            fps: 0.0,
            ..ImagesConfig::default()
        }),
        // alpha 1 is no smoothing: each photo is a different scene, shown for one frame.
        smooth: SmoothConfig::Ema(EmaConfig { alpha: 1.0 }),
        ..demo_clip(every_edge(2, WhenFull::Block))
    }
}

#[test]
fn an_images_folder_gets_each_photo_s_own_label() {
    let dir = data("photos/full");
    let config = photo_folder(dir.clone());
    let (events, report) = run(&config);

    // What classifying each photo on its own gives, in file-name order.
    let options = EngineOptions::default();
    let mut classifier = Classifier::load(config.infer.model(), &options, Fit::CenterCrop).unwrap();
    let mut photos: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    let expected: Vec<String> = photos
        .iter()
        .map(|photo| {
            let probs = classifier.classify_file(photo).unwrap().inference.probs;
            classifier.engine().label(top_k(&probs, 1)[0].0)
        })
        .collect();

    let labels: Vec<&str> = events.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, expected);
    for (photo, label) in [
        ("camera", "tripod"),
        ("chelsea", "Egyptian cat"),
        ("coffee", "espresso"),
    ] {
        let at = photos.iter().position(|p| stem(p) == photo).unwrap();
        assert_eq!(labels[at], label, "{photo}");
    }
    assert_every_frame_accounted_for(&report, events.len());
}

/// The sink is the deliberately slow stage: on the first label it stops taking more until the
/// source has made every frame. Only what fits in the queues and stages (at most one item per
/// queue and one per stage, two per inference worker) can still get through, so most frames
/// must be dropped, each by the policy of the queue where it was; with one inference worker
/// or two.
#[test]
fn drop_policies_behave_as_declared_and_every_frame_is_accounted_for() {
    let policies = [WhenFull::Block, WhenFull::DropNewest, WhenFull::DropOldest];
    for (workers, when_full) in [1, 2].into_iter().flat_map(|n| policies.map(|p| (n, p))) {
        let mut config = demo_clip(every_edge(1, when_full));
        config.infer.workers = Workers::Count(workers);
        let pipeline = Pipeline::build(&config).unwrap();
        let capture_out = pipeline.edges()[0].clone();
        assert_eq!(capture_out.stats().name, "resize");
        let mut events: Vec<LabelEvent> = Vec::new();
        let report = pipeline
            .run(&Shutdown::new(), |event| {
                // Blocking queues would hold the source back forever: stall only when dropping.
                if events.is_empty() && when_full != WhenFull::Block {
                    let waiting = Instant::now();
                    while capture_out.stats().sent < CLIP_FRAMES {
                        assert!(waiting.elapsed() < PATIENCE, "the source stalled");
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                events.push(event.clone());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(report.is_clean(), "{report}");
        assert_every_frame_accounted_for(&report, events.len());
        let frames: Vec<u64> = events.iter().map(|e| e.frame).collect();
        assert!(frames.windows(2).all(|w| w[0] < w[1]), "order: {frames:?}");
        let dropped =
            |pick: fn(&EdgeStats) -> u64| -> u64 { edges(&report).into_iter().map(pick).sum() };
        let queue_full = dropped(|e| e.dropped.queue_full);
        let evicted = dropped(|e| e.dropped.evicted);
        assert_eq!(dropped(|e| e.dropped.disconnected), 0, "{report}");
        // Besides the first label: four queues of one, resize and smooth holding one each, and
        // each worker one being run and one finished ahead of an earlier frame.
        let most_delivered = 1 + 4 + 2 + 2 * workers;
        match when_full {
            WhenFull::Block => {
                assert_eq!(frames, (0..CLIP_FRAMES).collect::<Vec<_>>());
                assert_eq!(queue_full + evicted, 0);
            }
            // A full queue refuses the newcomer: the first frame always gets through.
            WhenFull::DropNewest => {
                assert!(frames.len() <= most_delivered, "{frames:?}");
                assert_eq!(frames[0], 0);
                assert_eq!(evicted, 0);
                assert!(
                    queue_full >= CLIP_FRAMES - most_delivered as u64,
                    "{report}"
                );
            }
            // A full queue evicts its oldest: the last frame always gets through.
            WhenFull::DropOldest => {
                assert!(frames.len() <= most_delivered, "{frames:?}");
                assert_eq!(frames.last(), Some(&(CLIP_FRAMES - 1)));
                assert_eq!(queue_full, 0);
                assert!(evicted >= CLIP_FRAMES - most_delivered as u64, "{report}");
            }
        }
    }
}

/// Every line of `stdout` as JSON: the event stream.
pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// The lines of one kind of event.
pub(crate) fn of_kind<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

pub(crate) fn labels(lines: &[Value]) -> Vec<&str> {
    of_kind(lines, "label")
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect()
}

/// The README's first command: no flags, no config file, from the repository root.
#[test]
fn scened_run_with_no_flags_plays_the_demo_clip() {
    let out = scened(&["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out.stdout);
    assert_eq!(labels(&lines), ["Egyptian cat", "espresso", "tripod"]);
    // The stream opens with what runs and closes with the summary.
    let (started, stopped) = (&lines[0], lines.last().unwrap());
    assert_eq!(started["event"], "started", "{started}");
    assert_eq!(started["model"], default_model());
    assert_eq!(started["dtype"], "int8");
    assert_eq!(started["source"], "clip (built-in demo clip)");
    // Unset, the camera is named after the host.
    let host = scened_pipeline::telemetry::host_name().unwrap_or_default();
    let camera = scened_pipeline::telemetry::camera_of_host(&host);
    assert_eq!(started["camera"], camera.as_str());
    assert_eq!(started["workers"], 1);
    assert_eq!(started["threads"], 1);
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert_eq!(stopped["reason"], "end_of_stream");
    // The live queues drop the oldest frame in front of inference: every frame is labelled
    // or dropped.
    let frames = stopped["frames"].as_u64().unwrap();
    assert_eq!(frames + stopped["drops"].as_u64().unwrap(), CLIP_FRAMES);
    assert!(frames > 0);
    assert_eq!(stopped["errors"], 0);
    assert!(stopped["fps"].as_f64().unwrap() > 0.0, "{stopped}");
    assert!(
        stopped["peak_rss_mib"].as_f64().unwrap() > 10.0,
        "{stopped}"
    );
    assert_eq!(lines.len(), 5);
    for line in of_kind(&lines, "label") {
        // Today's fields, unchanged, and the tag.
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["event", "frame", "label", "latency_ms", "score", "ts"],
            "{line}"
        );
        let ts = line["ts"].as_str().unwrap();
        humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert!(ts.ends_with('Z'), "UTC: {ts}");
        assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
    }
    let report = stderr(&out);
    for needle in [
        "capture",
        "resize",
        "infer",
        "smooth",
        "sink",
        "end of stream",
        "peak RSS",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} missing from:\n{report}"
        );
    }
}

#[test]
fn every_frame_and_a_frame_limit_print_exactly_those_frames() {
    // benchmark.toml's queues block, so no frame is dropped however fast the clip plays.
    let config = ["run", "--config", "config/benchmark.toml", "--fps", "0"];
    let out = scened(&[&config[..], &["--frames", "5", "--every-frame"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out.stdout);
    let frames: Vec<u64> = of_kind(&lines, "label")
        .iter()
        .map(|l| l["frame"].as_u64().unwrap())
        .collect();
    assert_eq!(frames, [0, 1, 2, 3, 4]);
    assert_eq!(lines.last().unwrap()["frames"], 5);
}

#[test]
fn a_duration_limit_ends_an_endless_source() {
    let mut child = scened_command(&["run", "--source", "synthetic", "--duration", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait(&mut child);
    let report = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{report}");
    assert!(report.contains("end of stream"), "{report}");
}

/// A log read from a file, a pipe or the journal is plain text: colour codes only at a terminal.
#[test]
fn a_log_not_written_to_a_terminal_has_no_colour_codes() {
    let out = scened_command(&["run", "--source", "synthetic", "--frames", "3"])
        .env("SCENED_LOG", "info")
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("stage started"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in {log:?}");
}

/// replay.toml labels every frame the same, score for score, run after run and with one
/// inference worker or two: labels are back in frame order before smoothing.
#[test]
fn replaying_the_clip_gives_identical_labels_with_one_worker_or_two() {
    let replay = |workers: &str| {
        let out = scened(&[
            "run",
            "--config",
            "config/replay.toml",
            "--workers",
            workers,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines = json_lines(&out.stdout);
        of_kind(&lines, "label")
            .into_iter()
            .map(|l| (l["frame"].clone(), l["label"].clone(), l["score"].clone()))
            .collect::<Vec<_>>()
    };
    let one = replay("1");
    assert_eq!(one.len() as u64, CLIP_FRAMES);
    assert_eq!(one, replay("2"));
}

#[test]
fn sigterm_and_sigint_drain_and_exit_zero_with_the_report() {
    for (name, number, workers) in [("TERM", libc::SIGTERM, "1"), ("INT", libc::SIGINT, "2")] {
        // The synthetic pattern never ends: only the signal can stop this run.
        let mut child = scened_command(&["run", "--source", "synthetic", "--workers", workers])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_label, got_label) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let label = lines.find(|l| l.starts_with(r#"{"event":"label""#));
            let _ = first_label.send(label);
            lines.last()
        });
        // Running for real: frames went all the way through the model.
        let line = got_label.recv_timeout(PATIENCE).expect("a first label");
        serde_json::from_str::<Value>(&line.unwrap()).unwrap();
        signal(&child, number);
        let status = wait(&mut child);
        let report = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        let last: Value = serde_json::from_str(&reader.join().unwrap().unwrap()).unwrap();
        assert_eq!(status.code(), Some(0), "SIG{name}: {report}");
        assert_eq!(
            (&last["event"], &last["reason"]),
            (&"stopped".into(), &"shutdown".into())
        );
        let capture = report
            .lines()
            .find(|l| l.starts_with("capture"))
            .unwrap_or_else(|| panic!("no report after SIG{name}: {report}"));
        assert!(capture.ends_with("shutdown"), "{capture}");
        assert_drained(&report, workers);
        assert!(report.contains("peak RSS"), "{report}");
    }
}

pub fn write_config(dir: &Path, name: &str, text: &str) -> String {
    arg(&write_file(dir, name, text)).to_owned()
}

#[test]
fn a_bad_config_is_one_line_naming_the_file_and_the_key() {
    let dir = tmp_dir("bad-config");
    let cases = [
        (
            "unknown-key.toml",
            "[infer]\nmodle = \"m.tflite\"",
            "infer.modle: line 2: unknown field `modle`",
        ),
        (
            "wrong-type.toml",
            "[edges.infer]\ncapacity = \"two\"\nwhen_full = \"block\"",
            "edges.infer.capacity: line 2: invalid type: string \"two\", expected usize",
        ),
        (
            "zero-capacity.toml",
            "[edges.infer]\ncapacity = 0\nwhen_full = \"block\"",
            "edges.infer.capacity must be 1 to 4096, got 0",
        ),
        (
            "source-kind.toml",
            "[source]\nkind = \"webcam\"",
            "source.kind: line 2: unknown variant `webcam`",
        ),
        (
            "smoother.toml",
            "[smooth]\nkind = \"median\"",
            "smooth.kind: line 2: unknown variant `median`",
        ),
        (
            "policy.toml",
            "[edges.sink]\ncapacity = 1\nwhen_full = \"drop_all\"",
            "edges.sink.when_full: line 3: unknown variant `drop_all`",
        ),
        (
            "alpha.toml",
            "[smooth]\nkind = \"ema\"\nalpha = 0",
            "smooth.alpha must be in (0, 1], got 0",
        ),
        (
            "no-model.toml",
            "[infer]\nmodel = \"nope.tflite\"",
            "infer: ",
        ),
        (
            "bench-key.toml",
            "[bench]\nmin_fsp = 1",
            "bench.min_fsp: line 2: unknown field `min_fsp`",
        ),
        (
            "bench-value.toml",
            "[bench]\nmax_p99_ms = -1",
            "bench.max_p99_ms must be a number, 0 or more, got -1",
        ),
        (
            "negative-capacity.toml",
            "[edges.infer]\ncapacity = -1\nwhen_full = \"block\"",
            "edges.infer.capacity: line 2: invalid value: integer `-1`, expected usize",
        ),
        (
            "unparsable.toml",
            "[infer\nmodel = 1",
            "line 1: unclosed table, expected `]`",
        ),
        (
            "stall.toml",
            "[stop]\nstall_seconds = 0",
            "stop.stall_seconds must be more than 0, got 0",
        ),
        (
            "wrong-type-table.toml",
            "source = 3",
            "source: line 1: invalid type: integer `3`",
        ),
        (
            "preview-fps.toml",
            "[telemetry]\npreview_fps = 0",
            "telemetry.preview_fps must be more than 0 and at most 60, got 0",
        ),
        (
            "connections.toml",
            "[telemetry]\nmax_connections = 0",
            "telemetry.max_connections must be 1 to 4096, got 0",
        ),
        (
            "no-workers.toml",
            "[infer]\nworkers = 0",
            "infer.workers must be 1 to 64 or \"auto\", got 0",
        ),
        (
            "mqtt-url.toml",
            "[output.mqtt]\nbroker = \"localhost:1883\"",
            "output.mqtt.broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], \
             got \"localhost:1883\"",
        ),
        (
            "mqtt-no-broker.toml",
            "[output.mqtt]\nqos = 1",
            "output.mqtt: line 1: missing field `broker`",
        ),
        (
            "mqtt-qos.toml",
            "[output.mqtt]\nbroker = \"mqtt://h\"\nqos = 2",
            "output.mqtt.qos must be 0 or 1, got 2",
        ),
        (
            "mqtt-keep-alive.toml",
            "[output.mqtt]\nbroker = \"mqtt://h\"\nkeep_alive_seconds = 0",
            "output.mqtt.keep_alive_seconds must be 1 to 65535, got 0",
        ),
        (
            "mqtt-password.toml",
            "[output.mqtt]\nbroker = \"mqtt://h\"\nusername = \"u\"\n\
             password_env = \"SCENED_TEST_UNSET_MQTT_PASSWORD\"",
            "output.mqtt.password_env: the environment variable \
             SCENED_TEST_UNSET_MQTT_PASSWORD is not set",
        ),
        (
            "mqtt-camera.toml",
            "[telemetry]\ncamera = \"front/door\"\n[output.mqtt]\nbroker = \"mqtt://h\"",
            "telemetry.camera must be one topic level (no /, + or #) for MQTT, not empty, \
             got \"front/door\"",
        ),
        (
            "min-score.toml",
            "[labels]\nmin_score = 1.5",
            "labels.min_score must be in [0, 1], got 1.5",
        ),
        (
            "region.toml",
            "[resize]\nregion = [0.5, 0.0, 0.6, 1.0]",
            "resize.region must be [x, y, width, height] inside the frame, in fractions of it: \
             x, y at least 0, width, height more than 0, x + width and y + height at most 1, \
             got [0.5, 0.0, 0.6, 1.0]",
        ),
    ];
    // Groups files beside the configs that name them, each wrong in one way.
    let groups = |name: &str, text: &str, what: &str| {
        let groups = write_file(&dir, &format!("{name}.groups.toml"), text);
        let config = format!("[labels]\ngroups = \"{name}.groups.toml\"");
        let what = format!("labels.groups {}: {what}", groups.display());
        (format!("{name}.toml"), config, what)
    };
    let group_cases = [
        groups(
            "unknown-member",
            "Cat = [\"tabby\", \"labradoodle\"]",
            &format!(
                "\"Cat\" → \"labradoodle\" is not a label of {}",
                default_model()
            ),
        ),
        groups(
            "all-empty",
            "Portrait = []\nKids = []",
            "every group is empty; a group needs at least one label",
        ),
        groups(
            "two-groups",
            "Cat = [\"Egyptian cat\"]\nPets = [\"tabby\", \"Egyptian cat\"]",
            "\"Egyptian cat\" is in two groups, \"Cat\" and \"Pets\"",
        ),
        groups("not-a-list", "Cat = 3", "line 1: "),
    ];
    let missing = dir.join("missing.groups.toml");
    let cases = cases
        .iter()
        .map(|&(file, text, what)| (file.to_owned(), text.to_owned(), what.to_owned()))
        .chain(group_cases)
        .chain([(
            "missing-groups.toml".to_owned(),
            "[labels]\ngroups = \"missing.groups.toml\"".to_owned(),
            format!("labels.groups {}: ", missing.display()),
        )]);
    for (file, text, what) in cases {
        let (file, text) = (file.as_str(), text.as_str());
        let path = write_config(&dir, file, text);
        for command in ["run", "validate", "bench"] {
            let out = scened(&[command, "--config", &path]);
            assert_one_line_error(&out, &format!("{path}: {what}"));
        }
    }
    // The missing model is named by its path, relative to the config file.
    let out = scened(&[
        "validate",
        "--config",
        &dir.join("no-model.toml").to_string_lossy(),
    ]);
    assert_one_line_error(
        &out,
        &format!("{}: cannot read model", dir.join("nope.tflite").display()),
    );
    let out = scened(&[
        "run",
        "--config",
        &dir.join("missing.toml").to_string_lossy(),
    ]);
    assert_one_line_error(&out, "cannot read config ");
}

#[test]
fn the_shipped_configs_validate() {
    for name in ["scened", "replay", "benchmark", "soak", "scenes"] {
        let path = format!("config/{name}.toml");
        let out = scened(&["validate", "--config", &path]);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{path}: ok\n")
        );
    }
    // This one needs a camera; without one the error is the usual line.
    let out = scened(&["validate", "--config", "config/live-camera.toml"]);
    if !out.status.success() {
        assert_one_line_error(&out, "config/live-camera.toml: ");
    }
}

/// This machine has no camera; where one exists, index 4000 still does not.
#[test]
fn a_missing_camera_is_one_clean_line() {
    let out = scened(&["run", "--source", "camera:4000"]);
    let err = stderr(&out);
    assert!(
        err.contains("no camera found") || err.contains("camera index 4000 out of range"),
        "{err}"
    );
    assert_one_line_error(&out, "camera");
    assert!(scened(&["cameras"]).status.success());
}
