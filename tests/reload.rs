//! Reloading a running daemon's config (SIGHUP, `scened reload`): the model swapped between
//! frames, cameras removed and added while the others label on, a bad config changing nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run::write_config;
use crate::telemetry::{get, Daemon};
use crate::util::*;

/// The longest a camera's frame count may stand still while the daemon reloads.
const MAX_GAP: Duration = Duration::from_secs(1);

/// Follows the frame count `path` reports (a `/status`) every 50 ms until stopped; gives the
/// longest time it stood still and the last count.
struct FrameWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Duration, u64)>,
}

impl FrameWatch {
    fn start(addr: SocketAddr, path: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let frames = || {
                let (_, body) = get(addr, path);
                let status: Value = serde_json::from_str(&body).ok()?;
                status["frames"].as_u64()
            };
            let (mut last, mut since, mut longest) =
                (frames().unwrap_or(0), Instant::now(), Duration::ZERO);
            while !stopped.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
                let now = frames().unwrap_or(last);
                if now > last {
                    (last, since) = (now, Instant::now());
                }
                longest = longest.max(since.elapsed());
            }
            (longest, last)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the watch")
    }
}

/// The next event of kind `kind`, the others skipped.
fn next(events: &mpsc::Receiver<Value>, kind: &str) -> Value {
    loop {
        let event = events
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no {kind} event"));
        if event["event"] == kind {
            return event;
        }
    }
}

fn status(addr: SocketAddr) -> Value {
    let (code, body) = get(addr, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn config_with_model(model: &str) -> String {
    let model = model_path(model);
    format!("[source]\nkind = \"synthetic\"\nfps = 15.0\n\n[infer]\nmodel = \"{model}\"\n")
}

fn model_path(file: &str) -> String {
    let model = crate::util::model(file);
    assert!(Path::new(&model).exists(), "{}", model.display());
    model.display().to_string()
}

#[test]
fn sighup_swaps_the_model_between_frames_and_a_bad_config_changes_nothing() {
    let dir = tmp_dir("reload-model");
    let config = write_config(
        &dir,
        "run.toml",
        &config_with_model("efficientnet_lite0.int8.tflite"),
    );
    let (mut daemon, events, reader) = Daemon::start_printing(&["run", "--config", &config]);
    let addr = daemon.addr;
    eventually("labels on Lite0", || {
        let status = status(addr);
        let lite0 = status["model"] == "efficientnet_lite0.int8.tflite";
        (lite0 && status["label"].is_string()).then_some(())
    });
    let watch = FrameWatch::start(addr, "/status");
    thread::sleep(Duration::from_millis(500));

    write_config(
        &dir,
        "run.toml",
        &config_with_model("efficientnet_lite2.int8.tflite"),
    );
    signal(&daemon.child, libc::SIGHUP);
    let reloaded = next(&events, "reloaded");
    assert_eq!(
        reloaded["model"], "efficientnet_lite2.int8.tflite",
        "{reloaded}"
    );
    assert_eq!(reloaded["model_changed"], true, "{reloaded}");
    assert_eq!(reloaded["refused"], serde_json::json!([]), "{reloaded}");
    let lite2 = status(addr);
    assert_eq!(lite2["model"], "efficientnet_lite2.int8.tflite", "{lite2}");
    let swapped = lite2["frames"].as_u64().expect("frames");
    eventually("labels on Lite2", || {
        (status(addr)["frames"].as_u64()? > swapped + 15).then_some(())
    });

    // A key out of range: the reload fails by name, and Lite2 labels on.
    write_config(&dir, "run.toml", "[infer]\nthreads = 999\n");
    signal(&daemon.child, libc::SIGHUP);
    let failed = next(&events, "reload_failed");
    let error = failed["error"].as_str().expect("an error");
    assert!(error.contains("infer.threads"), "{failed}");
    assert!(
        failed["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("run.toml")),
        "{failed}"
    );
    let before = status(addr)["frames"].as_u64().expect("frames");
    eventually("labels after the failed reload", || {
        let status = status(addr);
        let on = status["model"] == "efficientnet_lite2.int8.tflite";
        (on && status["frames"].as_u64()? > before + 15).then_some(())
    });
    let (longest, _) = watch.finish();
    assert!(
        longest <= MAX_GAP,
        "the frame count stood still for {longest:?}"
    );

    let page = status(addr);
    assert_eq!(page["config"]["reloads"], 1, "{page}");
    assert_eq!(page["config"]["failed_reloads"], 1, "{page}");
    let (_, scrape) = get(addr, "/metrics");
    for (result, count) in [("ok", 1), ("failed", 1)] {
        let line = format!("scened_config_reloads_total{{result=\"{result}\"}} {count}");
        assert!(scrape.lines().any(|l| l == line), "{line} missing");
    }
    for (model, value) in [("lite0", " 0"), ("lite2", " 1")] {
        let model = format!("model=\"efficientnet_{model}.int8.tflite\"");
        let info = scrape
            .lines()
            .find(|l| l.starts_with("scened_model_info{") && l.contains(&model));
        assert!(
            info.is_some_and(|l| l.ends_with(value)),
            "{model}: {info:?}"
        );
    }

    signal(&daemon.child, libc::SIGINT);
    let exit = wait(&mut daemon.child);
    assert_eq!(exit.code(), Some(0), "scened after SIGINT: {exit}");
    reader.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Cameras `names`, synthetic at 10 fps, served on `listen`.
fn cameras(listen: SocketAddr, names: &[&str]) -> String {
    let mut config = format!("[telemetry]\nlisten = \"{listen}\"\n");
    for name in names {
        config += &format!("\n[cameras.{name}.source]\nkind = \"synthetic\"\nfps = 10.0\n");
    }
    config
}

#[test]
fn a_camera_removed_stops_while_the_other_labels_on_and_one_added_starts() {
    let dir = tmp_dir("reload-cameras");
    let listen = free_port();
    let config = write_config(&dir, "run.toml", &cameras(listen, &["a", "b"]));
    let listen_arg = listen.to_string();
    let args = ["run", "--config", &config, "--listen", &listen_arg];
    let (mut daemon, events, reader) = Daemon::start_printing(&args);
    let addr = daemon.addr;
    eventually("both cameras labelled", || {
        let status = status(addr);
        let labelled = |name: &str| status["cameras"][name]["label"].is_string();
        (labelled("a") && labelled("b")).then_some(())
    });
    let watch = FrameWatch::start(addr, "/cameras/a/status");
    thread::sleep(Duration::from_millis(500));

    write_config(&dir, "run.toml", &cameras(listen, &["a"]));
    signal(&daemon.child, libc::SIGHUP);
    let reloaded = next(&events, "reloaded");
    assert_eq!(
        reloaded["cameras_removed"],
        serde_json::json!(["b"]),
        "{reloaded}"
    );
    assert_eq!(reloaded["model_changed"], false, "{reloaded}");
    let stopped = next(&events, "stopped");
    assert_eq!(
        (stopped["camera"].as_str(), stopped["reason"].as_str()),
        (Some("b"), Some("removed"))
    );
    let page = status(addr);
    let names: Vec<&String> = page["cameras"]
        .as_object()
        .expect("cameras")
        .keys()
        .collect();
    assert_eq!(names, ["a"], "{page}");
    assert_eq!(get(addr, "/cameras/b/status").0, 404);
    thread::sleep(Duration::from_millis(1500));
    let (longest, frames) = watch.finish();
    assert!(
        longest <= MAX_GAP,
        "camera a's frame count stood still for {longest:?}"
    );
    assert!(frames > 0);

    // Through the HTTP side this time, as `scened reload` asks.
    write_config(&dir, "run.toml", &cameras(listen, &["a", "c"]));
    let asked = scened(&["reload", "--config", &config]);
    assert!(asked.status.success(), "{}", stderr(&asked));
    let said: Value = serde_json::from_slice(&asked.stdout).expect("the event");
    assert_eq!(said["cameras_added"], serde_json::json!(["c"]), "{said}");
    assert_eq!(next(&events, "reloaded"), said);
    eventually("camera c labelled", || {
        status(addr)["cameras"]["c"]["label"]
            .is_string()
            .then_some(())
    });

    signal(&daemon.child, libc::SIGINT);
    let exit = wait(&mut daemon.child);
    assert_eq!(exit.code(), Some(0), "scened after SIGINT: {exit}");
    reader.join().unwrap();
    // Camera c's figures are over its own time, not the run's.
    let stopped: Vec<Value> = events
        .try_iter()
        .filter(|e| e["event"] == "stopped")
        .collect();
    let seconds = |camera: &str| {
        let stopped = stopped.iter().find(|e| e["camera"] == camera);
        stopped
            .and_then(|e| e["seconds"].as_f64())
            .expect("its stopped event")
    };
    assert!(seconds("c") + 1.0 < seconds("a"), "{stopped:?}");
    let _ = std::fs::remove_dir_all(dir);
}
