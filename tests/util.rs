//! Paths to the committed models and test data, and a runner for the `scened` binary.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::thread;
use std::time::{Duration, Instant};

use scened_pipeline::queue::EdgeStats;
use scened_pipeline::runner::PipelineReport;

/// Far longer than anything here takes, even on a loaded machine: only there to turn a hang
/// into a failure.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn model(file: &str) -> PathBuf {
    repo().join("models").join(file)
}

pub fn data(rel: &str) -> PathBuf {
    repo().join("tests/data").join(rel)
}

/// The photos every golden output was made from (see `tests/data/golden/*/summary.json`).
pub fn photos(size: u32) -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(data(&format!("photos/{size}")))
        .expect("committed photos")
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    assert!(
        photos.len() >= 6,
        "expected the committed test photos, found {photos:?}"
    );
    photos
}

pub fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// `scened args…`, run from the repository root as the README says. A `run` or `bench`
/// serves its telemetry on a free port rather than the default one, so tests can run side by
/// side.
pub fn scened_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scened"));
    command
        .args(args)
        .current_dir(repo())
        .env("SCENED_LOG", "warn");
    let telemetry_flag = args
        .iter()
        .any(|a| ["--listen", "--no-telemetry"].contains(a));
    let serves = args.first().is_some_and(|a| ["run", "bench"].contains(a));
    if serves && !telemetry_flag {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
}

pub fn scened(args: &[&str]) -> Output {
    scened_command(args).output().expect("run scened")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure the way users must see it: non-zero exit, one line naming `what`, no panic.
#[track_caller]
pub fn assert_one_line_error(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got: {err}"
    );
    assert!(err.contains(what), "error does not name {what:?}: {err}");
    assert!(!err.contains("panicked"), "panic leaked: {err}");
}

pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scened-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn edges(report: &PipelineReport) -> Vec<&EdgeStats> {
    let inputs = report.stages.iter().filter_map(|s| s.input.as_ref());
    inputs
        .chain(report.sink.as_ref().map(|sink| &sink.edge))
        .collect()
}

/// Every frame the source took in is delivered, dropped on an edge (counted by reason) or failed
/// in a stage; nothing is left over.
#[track_caller]
pub fn assert_every_frame_accounted_for(report: &PipelineReport, delivered: usize) {
    for stage in &report.stages {
        let s = stage;
        assert_eq!(s.frames_in, s.frames_out + s.errors, "{}: {report}", s.name);
    }
    for edge in edges(report) {
        assert_eq!(edge.depth, 0, "{edge:?}");
        assert_eq!(edge.sent, edge.received + edge.dropped.total(), "{edge:?}");
    }
    // Frames the source took in, including those it failed to read or decode.
    let made = report.stages[0].frames_in;
    let dropped: u64 = edges(report).iter().map(|e| e.dropped.total()).sum();
    let errored: u64 = report.stages.iter().map(|s| s.errors).sum();
    assert_eq!(made, delivered as u64 + dropped + errored, "{report}");
}

/// Polls `done` every 100 ms until it gives a value; a timeout fails with `what`.
pub fn eventually<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback address with a port free a moment ago, for a server a test starts.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits for the child to exit; a hang fails the test instead of stalling the run.
pub fn wait(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > PATIENCE {
            child.kill().unwrap();
            panic!("{child:?} did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `bytes` to `dir/name`; the path.
pub fn write_file(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A path as a command-line argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill failed");
}

/// `report` (the text on stderr) shows every stage after the source, and each of `workers`
/// inference workers' rows when there are several, stopped after draining its input.
#[track_caller]
pub fn assert_drained(report: &str, workers: &str) {
    for stage in ["resize", "infer", "smooth"] {
        let row = report.lines().find(|l| l.starts_with(stage)).unwrap();
        assert!(row.ends_with("input closed"), "drained: {row}");
    }
    // One worker's row would repeat the stage's; several are shown, each drained.
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with(" worker "))
        .collect();
    let shown = if workers == "1" {
        0
    } else {
        workers.parse().unwrap()
    };
    assert_eq!(rows.len(), shown, "{report}");
    assert!(
        rows.iter().all(|row| row.ends_with("input closed")),
        "drained: {report}"
    );
}

/// A header bomb: a committed photo whose frame header is made to claim 65535x65535 pixels
/// (a decoder believing it allocates 12 GiB).
pub fn jpeg_bomb() -> Vec<u8> {
    let mut bytes = std::fs::read(data("photos/full/coffee.jpg")).unwrap();
    let sof = bytes
        .windows(2)
        .position(|pair| pair[0] == 0xFF && matches!(pair[1], 0xC0..=0xC2))
        .expect("a frame header");
    // Marker (2), length (2), precision (1), then height and width.
    bytes[sof + 5..sof + 9].fill(0xFF);
    bytes
}
