//! Network cameras against real servers the tests start on 127.0.0.1: GStreamer's RTSP server
//! (`scripts/rtsp_server.py`: x264 over RTP, with basic authentication) and FFmpeg serving
//! MJPEG over HTTP; and servers that misbehave, written here over std's TCP: one sending
//! garbage, one never answering, one changing resolution and mixing bad parts in. Where
//! GStreamer or FFmpeg is missing the test says so on stderr and passes (`.ci/setup` installs
//! both).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run::json_lines;
use crate::util::*;

/// Distinctive, so finding it anywhere in the output cannot be a coincidence.
const PASSWORD: &str = "s3cr3t-pw";
/// How long the runs the issue names last.
const RUN_SECONDS: &str = "8";
/// Share of the frames sent that must be labelled.
const MIN_LABELLED: f64 = 0.6;

/// The Python with GStreamer's RTSP server bindings, if any: Debian's (`/usr/bin/python3`,
/// which a pyenv or venv `python3` first on PATH may hide), Homebrew's (where `brew install
/// pygobject3` put `gi`; a GitHub runner's PATH finds another Python first) or the one on PATH.
fn gst_python() -> Option<&'static str> {
    // x264enc too: Homebrew's and some distributions' GStreamer split it into another package.
    let probe = "import gi; gi.require_version('Gst', '1.0'); \
                 gi.require_version('GstRtspServer', '1.0'); \
                 from gi.repository import Gst, GstRtspServer; Gst.init(None); \
                 assert Gst.ElementFactory.find('x264enc')";
    [
        "/usr/bin/python3",
        "/opt/homebrew/bin/python3",
        "/usr/local/bin/python3",
        "python3",
    ]
    .into_iter()
    .find(|python| {
        Command::new(python)
            .args(["-c", probe])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn have_ffmpeg() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Says on stderr that a test did not run, and why.
fn skipped(test: &str, missing: &str) {
    eprintln!("SKIPPED {test}: {missing} not installed (.ci/setup installs it)");
}

/// A server process, killed when dropped; its stdout lines arrive on `lines`.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let lines = lines_of(child.stdout.take().unwrap());
        Self { child, lines }
    }

    /// Waits for a stdout line starting with `prefix`; its rest.
    fn line(&self, prefix: &str) -> String {
        let started = Instant::now();
        loop {
            let left = PATIENCE.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    return line[prefix.len()..].trim().to_owned()
                }
                Ok(_) => {}
                Err(e) => panic!("server never printed {prefix:?}: {e}"),
            }
        }
    }

    /// Stops it with SIGTERM; the frames it says it sent.
    fn stop(mut self) -> u64 {
        signal(&self.child, libc::SIGTERM);
        let sent = self.line("sent ").parse().unwrap();
        wait(&mut self.child);
        sent
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// GStreamer's RTSP server on `addr`, 640x480 H.264 at 15 fps, `user` with [`PASSWORD`].
fn rtsp_server(python: &str, addr: SocketAddr, extra: &[&str]) -> Server {
    let mut command = Command::new(python);
    command
        .arg(repo().join("scripts/rtsp_server.py"))
        .args(["--port", &addr.port().to_string(), "--user", "user"])
        .args(["--password", PASSWORD])
        .args(extra);
    let server = Server::spawn(command);
    server.line("ready");
    server
}

fn rtsp_url(addr: SocketAddr) -> String {
    format!("rtsp://user:{PASSWORD}@{addr}/test")
}

/// Labels among the JSON lines.
fn labels(lines: &[Value]) -> usize {
    lines.iter().filter(|l| l["event"] == "label").count()
}

/// The capture row of the final report: frames in, and errors.
fn capture_row(err: &str) -> (u64, u64) {
    let row = err
        .lines()
        .find(|l| l.starts_with("capture"))
        .unwrap_or_else(|| panic!("no report: {err}"));
    let column = |i: usize| row.split_whitespace().nth(i).unwrap().parse().unwrap();
    (column(1), column(3))
}

/// A failed start: [`assert_one_line_error`], once the warning about a password in the URL
/// (which a URL with one gets first) is set aside.
#[track_caller]
fn assert_fails_naming(out: &Output, what: &str) {
    let err = stderr(out);
    let kept: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("the URL holds a password"))
        .collect();
    assert!(!out.status.success(), "expected failure: {err}");
    assert_eq!(kept.len(), 1, "expected one line: {err}");
    assert!(
        kept[0].contains(what),
        "error does not name {what:?}: {err}"
    );
    assert!(!err.contains("panicked"), "panic leaked: {err}");
    assert_password_nowhere(out);
}

#[track_caller]
fn assert_password_nowhere(out: &Output) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains(PASSWORD),
            "the password is on {name}: {text}"
        );
    }
}

fn run_for(url: &str, seconds: &str, extra: &[&str]) -> Output {
    scened_command(&[
        "run",
        "--source",
        url,
        "--duration",
        seconds,
        "--every-frame",
        "--no-telemetry",
    ])
    .args(extra)
    .env("SCENED_LOG", "info")
    .output()
    .unwrap()
}

#[test]
fn an_rtsp_camera_is_labelled_and_its_password_printed_nowhere() {
    let Some(python) = gst_python() else {
        return skipped(
            "rtsp",
            "GStreamer's RTSP server with x264enc (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly)",
        );
    };
    let addr = free_port();
    let server = rtsp_server(python, addr, &[]);
    let out = run_for(&rtsp_url(addr), RUN_SECONDS, &[]);
    let sent = server.stop();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_password_nowhere(&out);
    let labelled = labels(&json_lines(&out.stdout));
    assert!(
        labelled as f64 >= MIN_LABELLED * sent as f64,
        "{labelled} of {sent} frames labelled\n{err}"
    );
    // The URL is shown, the password elided.
    assert!(
        err.contains(&format!("rtsp://user:***@{addr}/test")),
        "{err}"
    );
}

#[test]
fn an_rtsp_camera_that_stops_for_4_s_is_lost_then_back_and_labelled_again() {
    let Some(python) = gst_python() else {
        return skipped(
            "rtsp",
            "GStreamer's RTSP server with x264enc (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly)",
        );
    };
    let addr = free_port();
    let server = rtsp_server(python, addr, &[]);
    let mut child = scened_command(&[
        "run",
        "--source",
        &rtsp_url(addr),
        "--every-frame",
        "--no-telemetry",
    ])
    .env("SCENED_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let next_event = |kind: &str| -> Vec<Value> {
        let mut seen = Vec::new();
        let started = Instant::now();
        loop {
            let line = lines
                .recv_timeout(PATIENCE.saturating_sub(started.elapsed()))
                .unwrap_or_else(|_| panic!("no {kind} after {seen:?}"));
            let json: Value = serde_json::from_str(&line).unwrap();
            let done = json["event"] == kind;
            seen.push(json);
            if done {
                return seen;
            }
        }
    };
    let labels_before = (0..10).flat_map(|_| next_event("label")).count();
    assert!(labels_before >= 10);
    server.stop();
    let stopped = Instant::now();
    let lost = next_event("source_lost");
    let lost = lost.last().unwrap();
    assert_eq!(lost["source"], format!("rtsp://user:***@{addr}/test"));
    thread::sleep(Duration::from_secs(4).saturating_sub(stopped.elapsed()));
    let _server = rtsp_server(python, addr, &[]);
    let back = next_event("source_back");
    let back = back.last().unwrap();
    assert_eq!(back["reconnects"], 1, "{back}");
    assert!(back["down_ms"].as_u64().unwrap() >= 3_000, "{back}");
    // Labels again after the return.
    for _ in 0..10 {
        next_event("label");
    }
    signal(&child, libc::SIGTERM);
    let status = wait(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("source_lost") && !err.contains(PASSWORD),
        "{err}"
    );
}

/// The server halves the picture 3 s in, and the config's `max_pixels` admits only the half:
/// the frames before are refused before decoding (counted, logged), the ones after labelled.
#[test]
fn an_rtsp_camera_changing_resolution_is_followed_and_max_pixels_holds_before_decoding() {
    let Some(python) = gst_python() else {
        return skipped(
            "rtsp",
            "GStreamer's RTSP server with x264enc (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly)",
        );
    };
    let addr = free_port();
    let server = rtsp_server(
        python,
        addr,
        &["--resize-after", "3", "--resize-to", "320x240"],
    );
    let dir = tmp_dir("rtsp-resize");
    let config = write_file(
        &dir,
        "camera.toml",
        format!(
            "[source]\nkind = \"rtsp\"\nurl = \"rtsp://{addr}/test\"\nusername = \"user\"\n\
             password_env = \"SCENED_TEST_CAMERA_PASSWORD\"\nmax_pixels = 100000\n"
        ),
    );
    let args = [
        "run",
        "--config",
        arg(&config),
        "--duration",
        "7",
        "--every-frame",
        "--no-telemetry",
    ];
    let out = scened_command(&args)
        .env("SCENED_LOG", "info")
        .env("SCENED_TEST_CAMERA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    server.stop();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_password_nowhere(&out);
    let (_, errors) = capture_row(&err);
    assert!(errors >= 15, "640x480 frames refused: {errors}\n{err}");
    assert!(
        err.contains("640x480 pixels, over source.max_pixels (100000)"),
        "{err}"
    );
    assert!(labels(&json_lines(&out.stdout)) >= 15, "{err}");
}

/// FFmpeg's one-client MJPEG server on `addr`: testsrc2 640x480 at 15 fps; with
/// `boundary_in_header` false it says `application/octet-stream`, as cheap cameras do.
fn mjpeg_server(addr: SocketAddr, boundary_in_header: bool) -> Child {
    let mut command = Command::new("ffmpeg");
    // Progress lines (`frame=`) are logged at the info level.
    command.args([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "info",
        "-stats",
        "-re",
    ]);
    command.args(["-f", "lavfi", "-i", "testsrc2=size=640x480:rate=15"]);
    command.args(["-q:v", "5", "-f", "mpjpeg"]);
    if boundary_in_header {
        command.args(["-content_type", "multipart/x-mixed-replace;boundary=ffmpeg"]);
    }
    let child = command
        .args(["-listen", "1", &format!("http://{addr}/cam.mjpg")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(addr);
    child
}

/// Waits until something listens on `addr`, without connecting (FFmpeg serves one client):
/// from Linux's socket table, or where there is none (macOS) from `lsof`.
fn wait_listening(addr: SocketAddr) {
    let port = format!(":{:04X} ", addr.port());
    let table = std::path::Path::new("/proc/net/tcp");
    let lsof = [
        "-nP".to_owned(),
        format!("-iTCP@{addr}"),
        "-sTCP:LISTEN".to_owned(),
    ];
    eventually("the server to listen", || {
        if !table.exists() {
            // Exit 0 only when it lists a socket.
            let out = Command::new("lsof").args(&lsof).output().ok()?;
            return out.status.success().then_some(());
        }
        let table = std::fs::read_to_string(table).ok()?;
        // State 0A is LISTEN.
        table
            .lines()
            .any(|l| l.contains(&port) && l.split_whitespace().nth(3) == Some("0A"))
            .then_some(())
    });
}

/// The frames FFmpeg says it wrote, from its last progress line. It exits when its one client
/// goes; one that does not within 10 s is killed.
fn ffmpeg_frames(mut child: Child) -> u64 {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let last = err.rsplit("frame=").next().unwrap_or_default();
    last.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn an_http_mjpeg_camera_is_labelled_and_its_password_printed_nowhere() {
    if !have_ffmpeg() {
        return skipped("http", "ffmpeg");
    }
    let addr = free_port();
    let server = mjpeg_server(addr, true);
    let url = format!("http://user:{PASSWORD}@{addr}/cam.mjpg");
    let out = run_for(&url, RUN_SECONDS, &[]);
    let sent = ffmpeg_frames(server);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_password_nowhere(&out);
    let labelled = labels(&json_lines(&out.stdout));
    assert!(
        labelled as f64 >= MIN_LABELLED * sent as f64,
        "{labelled} of {sent} frames labelled\n{err}"
    );
    assert_eq!(capture_row(&err).1, 0, "{err}");
}

#[test]
fn an_http_camera_without_a_boundary_in_its_header_is_read_from_the_first_line() {
    if !have_ffmpeg() {
        return skipped("http", "ffmpeg");
    }
    let addr = free_port();
    let server = mjpeg_server(addr, false);
    let out = run_for(&format!("http://{addr}/cam.mjpg"), "3", &[]);
    ffmpeg_frames(server);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(labels(&json_lines(&out.stdout)) >= 10, "{err}");
    assert_eq!(capture_row(&err).1, 0, "{err}");
}

/// A multipart server written here: basic authentication, then parts of two sizes with
/// garbage between, `parts` in all, 50 ms apart.
fn tricky_mjpeg_server(parts: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let big = std::fs::read(data("photos/full/coffee.jpg")).unwrap();
    let small = jpeg_of(160, 120);
    let expected = format!(
        "authorization: basic {}",
        base64_of(&format!("user:{PASSWORD}"))
    );
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let request = read_head(&mut stream).to_ascii_lowercase();
            if !request.contains(&expected.to_ascii_lowercase()) {
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\
                      Content-Length: 0\r\n\r\n",
                );
                continue;
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\
                  Connection: close\r\n\r\n",
            );
            for i in 0..parts {
                let body: &[u8] = match i % 4 {
                    0 => &big,
                    1 => b"this part is not a picture",
                    2 => &small,
                    _ => &big[..big.len() / 2],
                };
                let head = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n";
                let sent = stream
                    .write_all(head)
                    .and_then(|()| stream.write_all(body))
                    .and_then(|()| stream.write_all(b"\r\n"));
                if sent.is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    });
    addr
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn jpeg_of(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb([30, 120, 200]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Jpeg)
        .unwrap();
    bytes.into_inner()
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Resolution changes part to part, garbage and cut frames between: the good frames are
/// labelled, each bad part counted and logged, and the run ends normally when the server
/// closes (a loss, retried until the run's time is up).
#[test]
fn an_http_camera_changing_size_and_sending_bad_parts_gets_each_counted() {
    let addr = tricky_mjpeg_server(40);
    let url = format!("http://user:{PASSWORD}@{addr}/video");
    let out = run_for(&url, "4", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_password_nowhere(&out);
    let lines = json_lines(&out.stdout);
    // 20 good frames of the first 40 parts (and more after the reconnect); a loaded machine
    // may drop some in front of inference.
    assert!(labels(&lines) >= 10, "{err}");
    let (_, errors) = capture_row(&err);
    assert!(errors >= 20, "10 garbage and 10 cut parts: {errors}\n{err}");
    assert!(err.contains("bad part: part is not a JPEG"), "{err}");
    // The wrong password is refused at start, by name.
    let wrong = format!("http://user:wrong@{addr}/video");
    let out = scened(&[
        "run",
        "--source",
        &wrong,
        "--no-telemetry",
        "--duration",
        "1",
    ]);
    assert_fails_naming(&out, "the camera refused the user and password");
}

/// A server that answers anything with `reply` then closes, or holds the connection open
/// and says nothing when `reply` is `None`.
fn bad_server(reply: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            match reply {
                Some(reply) => {
                    let _ = stream.write_all(reply);
                }
                None => held.push(stream),
            }
        }
    });
    addr
}

const GARBAGE: &[u8] =
    b"\x00\x9f\xffGARBAGE\r\n\r\n\x17\x03\x01 not a protocol at all \xfe\xfe\r\n";

#[test]
fn servers_sending_garbage_or_nothing_fail_the_start_by_name_without_the_password() {
    let garbage = bad_server(Some(GARBAGE));
    let silent = bad_server(None);
    let cases = [
        ("rtsp", garbage, "rtsp://user:***@"),
        ("http", garbage, "http://user:***@"),
        ("rtsp", silent, "no answer within 10 s"),
        ("http", silent, "no answer within 10 s"),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(scheme, addr, what)| {
            thread::spawn(move || {
                let url = format!("{scheme}://user:{PASSWORD}@{addr}/x");
                let started = Instant::now();
                let out = scened(&["run", "--source", &url, "--no-telemetry"]);
                (out, what, started.elapsed())
            })
        })
        .collect();
    for run in runs {
        let (out, what, took) = run.join().unwrap();
        assert_fails_naming(&out, what);
        assert!(took < Duration::from_secs(60), "{took:?}");
    }
}

/// An RTSP server whose only video is H.265 (its DESCRIBE answer, written here): refused by
/// name at start.
#[test]
fn an_h265_camera_is_refused_by_name() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        loop {
            let head = read_head(&mut stream);
            let Some(cseq) = head
                .lines()
                .find_map(|l| l.strip_prefix("CSeq: ").map(str::to_owned))
            else {
                return;
            };
            let reply = if head.starts_with("DESCRIBE") {
                let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\n\
                           t=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n\
                           a=control:track1\r\n";
                format!(
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: rtsp://{addr}/x/\r\n\
                     Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                )
            } else {
                format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: DESCRIBE, SETUP, PLAY\r\n\r\n")
            };
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    let out = scened(&[
        "run",
        "--source",
        &format!("rtsp://{addr}/x"),
        "--no-telemetry",
    ]);
    assert_one_line_error(&out, "H.265 (HEVC), which scened does not decode");
}

/// `validate` checks a network camera's URL without connecting: nothing listens on port 9.
#[test]
fn validate_checks_a_camera_url_without_connecting() {
    let dir = tmp_dir("validate-network");
    for (kind, url) in [
        ("rtsp", "rtsp://127.0.0.1:9/x"),
        ("http", "http://127.0.0.1:9/x"),
    ] {
        let good = write_file(
            &dir,
            &format!("{kind}.toml"),
            format!("[source]\nkind = \"{kind}\"\nurl = \"{url}\"\n"),
        );
        let out = scened(&["validate", "--config", arg(&good)]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let bad = write_file(
        &dir,
        "bad.toml",
        format!("[source]\nkind = \"rtsp\"\nurl = \"http://user:{PASSWORD}@cam/x\"\n"),
    );
    let out = scened(&["validate", "--config", arg(&bad)]);
    assert_one_line_error(&out, "source.url");
    assert_password_nowhere(&out);
}
