//! Several cameras in one process through one model (`[cameras.<name>]`): each labels on its
//! own, and says which camera it is in `/status`, the metrics and the events.

use std::collections::{BTreeMap, BTreeSet};

use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::faults::demo_frames;
use crate::run::{json_lines, of_kind, write_config};
use crate::telemetry::{get, Daemon};
use crate::util::*;

/// Camera `a` synthetic and camera `b` the demo clip looping, both at 10 fps.
pub(crate) const TWO_CAMERAS: &str = r#"
[cameras.a.source]
kind = "synthetic"
fps = 10.0

[cameras.b.source]
kind = "clip"
fps = 10.0
loop = true
"#;

/// Cameras `a` and `b`, both synthetic at 5 fps.
const TWO_SYNTHETIC: &str = "[cameras.a.source]\nkind = \"synthetic\"\nfps = 5.0\n\
    [cameras.b.source]\nkind = \"synthetic\"\nfps = 5.0\n";

#[test]
fn two_cameras_label_each_on_its_own_and_say_which_everywhere() {
    let dir = tmp_dir("two-cameras");
    let config = write_config(&dir, "two.toml", TWO_CAMERAS);
    let (mut daemon, events, reader) = Daemon::start_printing(&["run", "--config", &config]);
    let addr = daemon.addr;

    let status = eventually("both cameras labelled in /status", || {
        let (code, body) = get(addr, "/status");
        let status: Value = serde_json::from_str(&body).ok()?;
        let labelled = |name: &str| status["cameras"][name]["label"].is_string();
        (code == 200 && labelled("a") && labelled("b")).then_some(status)
    });
    let cameras = status["cameras"].as_object().expect("an object");
    assert_eq!(cameras.keys().collect::<Vec<_>>(), ["a", "b"], "{status}");
    // The daemon's own figures are over both; each camera's have the one-camera shape.
    assert!(status["frames"].as_u64() >= Some(2), "{status}");
    for camera in cameras.values() {
        for key in [
            "ready", "model", "label", "top", "fps", "frames", "dropped", "workers",
        ] {
            assert!(camera.get(key).is_some(), "{key} missing: {camera}");
        }
    }
    let (code, one) = get(addr, "/cameras/b/status");
    let one: Value = serde_json::from_str(&one).expect("JSON");
    assert_eq!((code, one["model"].clone()), (200, status["model"].clone()));
    assert!(one.get("cameras").is_none(), "{one}");
    assert_eq!(get(addr, "/cameras/c/status").0, 404);

    let snapshot = crate::http::request(addr, "GET", "/cameras/b/snapshot.jpg", &[]);
    assert_eq!(snapshot.code, 200);
    assert_eq!(snapshot.header("content-type"), Some("image/jpeg"));
    assert!(snapshot.body.starts_with(&[0xFF, 0xD8]), "a JPEG");

    let (code, scrape) = get(addr, "/metrics");
    assert_eq!(code, 200);
    for camera in ["a", "b"] {
        let series = format!("camera=\"{camera}\"");
        let frames = scrape
            .lines()
            .filter(|line| line.starts_with("scened_frames_total{") && line.contains(&series));
        let stages: BTreeSet<&str> = frames
            .filter_map(|line| line.split("stage=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(stages, ["capture", "resize", "smooth"].into(), "{camera}");
        let latency = format!("scened_frame_latency_seconds_count{{{series}}}");
        assert!(scrape.contains(&latency), "{latency} missing");
    }

    // Every label event says its camera, and both cameras' come.
    let mut labelled = BTreeSet::new();
    while labelled.len() < 2 {
        let event = events.recv_timeout(PATIENCE).expect("label events");
        let camera = event["camera"].as_str().expect("a camera").to_owned();
        if event["event"] == "label" {
            labelled.insert(camera);
        }
    }

    signal(&daemon.child, libc::SIGINT);
    let status = wait(&mut daemon.child);
    assert_eq!(status.code(), Some(0), "scened after SIGINT: {status}");
    reader.join().unwrap();
    let rest: Vec<Value> = events.try_iter().collect();
    let stopped: BTreeSet<&str> = rest
        .iter()
        .filter(|event| event["event"] == "stopped")
        .filter_map(|event| event["camera"].as_str())
        .collect();
    assert_eq!(stopped, ["a", "b"].into(), "{rest:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_config_of_several_cameras_is_checked_camera_by_camera() {
    let dir = tmp_dir("cameras-config");
    let cases = [
        (
            "both.toml",
            "[source]\nkind = \"synthetic\"\n[cameras.a.source]\nkind = \"synthetic\"\n",
            "cameras: [source] and [cameras] cannot both be set",
        ),
        (
            "name.toml",
            "[cameras.Porch.source]\nkind = \"synthetic\"\n",
            "cameras must be named with 1 to 32 of a-z, 0-9, _ and -, got Porch",
        ),
        (
            "value.toml",
            "[cameras.a.source]\nkind = \"synthetic\"\n[cameras.b.source]\nkind = \"synthetic\"\nfps = -1.0\n",
            "cameras.b.source.fps must be",
        ),
        (
            "override.toml",
            "[cameras.a.source]\nkind = \"synthetic\"\n[cameras.a.smooth]\nkind = \"ema\"\nalpha = 2.0\n",
            "cameras.a.smooth.alpha must be",
        ),
        (
            "file.toml",
            "[cameras.a.source]\nkind = \"images\"\ndir = \"no-such-dir\"\n",
            "cameras.a",
        ),
    ];
    for (name, text, expected) in cases {
        let config = write_config(&dir, name, text);
        let out = scened(&["validate", "--config", &config]);
        assert_one_line_error(&out, expected);
        assert!(stderr(&out).contains(name), "{}", stderr(&out));
    }
    let good = "[cameras.a.source]\nkind = \"synthetic\"\n[cameras.b-2.source]\nkind = \"clip\"\n";
    let config = write_config(&dir, "good.toml", good);
    let out = scened(&["validate", "--config", &config]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}

/// The `stopped` event of each camera of a finished run, by camera.
fn stopped_by_camera(lines: &[Value]) -> BTreeMap<String, Value> {
    of_kind(lines, "stopped")
        .into_iter()
        .map(|event| {
            (
                event["camera"].as_str().expect("a camera").to_owned(),
                event.clone(),
            )
        })
        .collect()
}

/// Of three cameras, `c` is a live feed (a FIFO clip) that stops delivering after a few
/// frames and is never back: it is lost and reopened on its own, while `a` and `b` keep
/// labelling at their 5 fps, and the run ends normally.
#[cfg(unix)]
#[test]
fn a_camera_lost_leaves_the_other_two_labelling_at_their_rate() {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;

    const SECONDS: f64 = 8.0;
    let dir = tmp_dir("camera-lost");
    let fifo = dir.join("feed.mjpeg");
    let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let config = write_config(
        &dir,
        "three.toml",
        &format!(
            "{TWO_SYNTHETIC}[cameras.c.source]\nkind = \"clip\"\npath = \"feed.mjpeg\"\nfps = 30.0\n\
             [infer]\nworkers = 2\n[stop]\nafter_seconds = {SECONDS}\n"
        ),
    );
    let child = scened_command(&["run", "--config", &config, "--no-telemetry"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (done, finished) = mpsc::channel::<()>();
    let writer = thread::spawn(move || {
        // Blocks until scened opens the FIFO to read; then a few frames, and silence with
        // the feed held open, until the run is over.
        let mut feed = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        for frame in &demo_frames()[..5] {
            feed.write_all(frame).unwrap();
            thread::sleep(Duration::from_millis(33));
        }
        let _ = finished.recv();
    });
    let out = child.wait_with_output().unwrap();
    drop(done);
    writer.join().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = json_lines(&out.stdout);
    let lost = of_kind(&lines, "source_lost");
    assert!(!lost.is_empty(), "{err}");
    assert!(lost.iter().all(|event| event["camera"] == "c"), "{lost:?}");
    let stopped = stopped_by_camera(&lines);
    for camera in ["a", "b"] {
        // 5 fps by the source's clock, over a run that also counts its start and drain, on a
        // machine that may be busy with other work.
        let fps = stopped[camera]["fps"].as_f64().unwrap();
        assert!(fps >= 4.0, "camera {camera} at {fps} fps\n{err}");
    }
    assert!(stopped["c"]["frames"].as_u64() <= Some(5), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// One worker between a camera at 30 fps and one at 5: the workers take from the cameras in
/// turn, so the slow camera loses no frame, even when the worker cannot keep up with both and
/// the fast camera's frames are dropped. Each camera's queue in front of inference holds two
/// frames (the newest), so a hiccup of the machine of up to two frame periods of the slow
/// camera costs it nothing; served in a fixed order instead, the fast camera, always with a
/// frame waiting, would take every turn.
#[test]
fn a_fast_camera_does_not_starve_a_slow_one() {
    let dir = tmp_dir("camera-fair");
    let config = write_config(
        &dir,
        "fair.toml",
        "[cameras.fast.source]\nkind = \"synthetic\"\nfps = 30.0\n\
         [cameras.slow.source]\nkind = \"synthetic\"\nfps = 5.0\n\
         [infer]\nworkers = 1\n[edges.infer]\ncapacity = 2\nwhen_full = \"drop_oldest\"\n\
         [stop]\nafter_seconds = 6.0\n",
    );
    let out = scened(&[
        "run",
        "--config",
        &config,
        "--every-frame",
        "--no-telemetry",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let lines = json_lines(&out.stdout);
    let stopped = stopped_by_camera(&lines);
    let slow = &stopped["slow"];
    assert_eq!(
        (slow["drops"].as_u64(), slow["errors"].as_u64()),
        (Some(0), Some(0)),
        "{err}"
    );
    let labels = |camera: &str| {
        let labels = of_kind(&lines, "label").into_iter();
        labels.filter(|event| event["camera"] == camera).count() as u64
    };
    // Every frame the slow camera made came out labelled: 5 a second for 6 s.
    assert_eq!(slow["frames"].as_u64(), Some(labels("slow")));
    assert!(labels("slow") >= 28, "{} labels\n{err}", labels("slow"));
    assert!(labels("fast") >= 30, "{} labels\n{err}", labels("fast"));
    let _ = std::fs::remove_dir_all(dir);
}
