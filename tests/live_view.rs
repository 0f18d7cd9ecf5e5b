//! The live view against a running daemon: `/snapshot.jpg`, `/stream.mjpeg` and `/events` read
//! by real sockets, and the page loaded by a real browser (headless Chromium driven through
//! WebDriver: a page with never-ending streams hangs `chromium --dump-dom`).

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{exposed_daemon, request, scraped, Streaming, TOKEN};
use crate::run::write_config;
use crate::telemetry::{get, Daemon};
use crate::util::*;

/// A synthetic source of this size, paced at 30 fps.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// The next part of a `/stream.mjpeg`: its JPEG.
fn next_part(stream: &mut Streaming) -> Vec<u8> {
    let mut length = None;
    loop {
        let mut line = String::new();
        assert!(
            stream.body.read_line(&mut line).unwrap() > 0,
            "stream ended"
        );
        let line = line.trim_end();
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = Some(value.trim().parse::<usize>().unwrap());
        }
        if line.is_empty() {
            if let Some(length) = length {
                let mut jpeg = vec![0; length];
                stream.body.read_exact(&mut jpeg).unwrap();
                return jpeg;
            }
        }
    }
}

/// The next Server-Sent Event of an `/events` stream: its name and its data, parsed.
fn next_event(events: &mut Streaming) -> (String, Value) {
    let mut name = String::new();
    loop {
        let mut line = String::new();
        assert!(
            events.body.read_line(&mut line).unwrap() > 0,
            "stream ended"
        );
        let line = line.trim_end();
        if let Some(event) = line.strip_prefix("event: ") {
            name = event.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            return (name, serde_json::from_str(data).unwrap());
        }
    }
}

/// The next `event: status` of an `/events` stream: the page's figures.
fn next_status(events: &mut Streaming) -> Value {
    loop {
        let (name, figures) = next_event(events);
        if name == "status" {
            return figures;
        }
    }
}

#[test]
fn snapshot_stream_and_events_show_the_frames_and_the_label() {
    let dir = tmp_dir("live-view");
    let config = write_config(
        &dir,
        "live.toml",
        &format!(
            "[source]\nkind = \"synthetic\"\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = 30.0\n\
             [telemetry]\npreview_fps = 5.0\nmax_viewers = 2\nclient_timeout_seconds = 1.0\n"
        ),
    );
    let daemon = Daemon::start(&["run", "--config", &config]);
    let addr = daemon.addr;

    let snapshot = request(addr, "GET", "/snapshot.jpg", &[]);
    assert_eq!(snapshot.code, 200);
    assert_eq!(snapshot.header("Content-Type"), Some("image/jpeg"));
    let picture = image::load_from_memory(&snapshot.body).unwrap();
    assert_eq!((picture.width(), picture.height()), (WIDTH, HEIGHT));

    // Parts come at about preview_fps, never faster, each one a whole frame.
    let mut stream = Streaming::open(addr, "/stream.mjpeg", &[]);
    assert_eq!(stream.code, 200);
    let content_type = stream.header("Content-Type").unwrap();
    assert!(content_type.starts_with("multipart/x-mixed-replace; boundary="));
    next_part(&mut stream);
    let started = Instant::now();
    let mut parts = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let jpeg = next_part(&mut stream);
        parts += 1;
        if parts == 1 {
            let frame = image::load_from_memory(&jpeg).unwrap();
            assert_eq!((frame.width(), frame.height()), (WIDTH, HEIGHT));
        }
    }
    let rate = f64::from(parts) / started.elapsed().as_secs_f64();
    // At most the cap; the floor is loose for a loaded machine.
    assert!((2.0..=6.0).contains(&rate), "{rate:.2} parts per second");

    // The figures: the label /status gives, and the top 5 of the latest frame.
    let mut events = Streaming::open(addr, "/events", &[]);
    assert_eq!(events.header("Content-Type"), Some("text/event-stream"));
    let figures = eventually("a status event with a label", || {
        Some(next_status(&mut events)).filter(|f| f["top"].as_array().is_some_and(|t| t.len() == 5))
    });
    assert!(figures["label"].is_string(), "{figures}");
    assert!(figures["latency_p50_ms"].as_f64().unwrap() > 0.0);
    let top = figures["top"].as_array().unwrap();
    let scores: Vec<f64> = top.iter().map(|t| t["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(top.iter().all(|t| t["label"].is_string()));

    // Viewers are capped: a third stream waits until one of two leaves.
    let second = Streaming::open(addr, "/stream.mjpeg", &[]);
    assert_eq!(second.code, 200);
    let third = request(addr, "GET", "/stream.mjpeg", &[]);
    assert_eq!(third.code, 503);
    assert_eq!(third.header("Retry-After"), Some("5"));
    drop(second);
    eventually("a seat to free up", || {
        (Streaming::open(addr, "/stream.mjpeg", &[]).code == 200).then_some(())
    });

    // A viewer that stops reading is cut off once its socket is full; the pipeline goes on.
    drop(stream);
    let labelled = || scraped(addr, "scened_frames_total{stage=\"smooth\"}");
    let before = labelled();
    let stalled = eventually("a seat for the stalled viewer", || {
        Some(Streaming::open(addr, "/stream.mjpeg", &[])).filter(|s| s.code == 200)
    });
    let stalled_at = Instant::now();
    eventually("the stalled viewer to be cut off", || {
        let cut = scraped(
            addr,
            "scened_http_connections_cut_total{reason=\"stalled\"}",
        );
        (cut >= 1.0).then_some(())
    });
    eprintln!("stalled viewer cut after {:?}", stalled_at.elapsed());
    assert!(labelled() > before);
    drop(stalled);
    drop(events);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn events_carry_the_label_changes_stdout_prints() {
    // The demo clip, paced: a cat for two seconds, then an espresso.
    let dir = tmp_dir("live-events");
    let stdout = dir.join("stdout.jsonl");
    let mut command = scened_command(&["run"]);
    command.stdout(std::fs::File::create(&stdout).unwrap());
    let daemon = Daemon::spawn(command);
    let mut events = Streaming::open(daemon.addr, "/events", &[]);
    let mut labels: Vec<Value> = Vec::new();
    eventually("a label event for the espresso", || {
        let (name, event) = next_event(&mut events);
        if name != "status" {
            assert_eq!(event["event"], name.as_str(), "{event}");
        }
        if name == "label" {
            labels.push(event);
        }
        labels
            .iter()
            .any(|l| l["label"] == "espresso")
            .then_some(())
    });
    drop(events);
    daemon.stop();
    // The same objects, field for field, as the lines on stdout.
    let printed: Vec<Value> = std::fs::read_to_string(&stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for label in &labels {
        assert!(printed.contains(label), "{label} not on stdout");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The next block of an `/events` stream: its lines, up to the blank one that ends it.
fn next_block(events: &mut Streaming) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            events.body.read_line(&mut line).unwrap() > 0,
            "stream ended"
        );
        match line.trim_end() {
            "" if lines.is_empty() => {}
            "" => return lines,
            line => lines.push(line.to_owned()),
        }
    }
}

/// The next run event (not `status`) of an `/events` stream: its id and its data.
fn next_numbered(events: &mut Streaming) -> (u64, String) {
    loop {
        let block = next_block(events);
        let field = |name: &str| {
            block
                .iter()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_owned)
        };
        let id = field("id: ").expect("every event has an id");
        if field("event: ").as_deref() != Some("status") {
            return (id.parse().unwrap(), field("data: ").unwrap());
        }
    }
}

#[test]
fn events_are_numbered_and_a_client_back_with_last_event_id_gets_what_it_missed() {
    let dir = tmp_dir("live-event-ids");
    let config = write_config(
        &dir,
        "scened.toml",
        "[source]\nkind = \"clip\"\nloop = true\n[output]\nevery_frame = true\n",
    );
    let daemon = Daemon::start(&["run", "--config", &config]);
    let mut events = Streaming::open(daemon.addr, "/events", &[]);
    // `retry` rides in the first event's block: a block of its own is an empty message to
    // some clients.
    let first = next_block(&mut events);
    assert!(first[0].starts_with("retry: "), "{first:?}");
    assert!(first[1].starts_with("id: "), "{first:?}");
    assert!(first.iter().any(|l| l.starts_with("data: {")), "{first:?}");
    let (seen, _) = next_numbered(&mut events);
    let missed: Vec<_> = (0..3).map(|_| next_numbered(&mut events)).collect();
    assert!(
        missed.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "{missed:?}"
    );
    drop(events);
    // Back, saying the last it saw: the ones after it come first, the same.
    let last = seen.to_string();
    let mut again = Streaming::open(daemon.addr, "/events", &[("Last-Event-ID", &last)]);
    let replayed: Vec<_> = (0..3).map(|_| next_numbered(&mut again)).collect();
    assert_eq!(replayed, missed);
    drop(again);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A browser and its WebDriver, found by `SCENED_CHROME` and `SCENED_CHROMEDRIVER`, else on the
/// usual paths (Debian's chromium and chromium-driver; Google Chrome on macOS, with GitHub's
/// runners' `CHROMEWEBDRIVER`).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let first = |var: &str, paths: &[&str]| {
        let from_env = std::env::var_os(var).map(PathBuf::from);
        from_env
            .into_iter()
            .chain(paths.iter().map(PathBuf::from))
            .find(|path| path.is_file())
    };
    let chrome = first(
        "SCENED_CHROME",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
            "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
            "/Applications/Chromium.app/Contents/MacOS/Chromium",
        ],
    )?;
    let runner_driver = std::env::var_os("CHROMEWEBDRIVER")
        .map(|dir| Path::new(&dir).join("chromedriver"))
        .unwrap_or_default();
    let driver = first(
        "SCENED_CHROMEDRIVER",
        &[
            runner_driver.to_str().unwrap_or_default(),
            "/usr/bin/chromedriver",
            "/usr/local/bin/chromedriver",
            "/opt/homebrew/bin/chromedriver",
        ],
    )?;
    Some((chrome, driver))
}

/// chromedriver, running on a free port; killed on drop.
struct WebDriver {
    child: Child,
    addr: SocketAddr,
}

impl WebDriver {
    fn start(driver: &Path) -> Self {
        let addr = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs");
        let webdriver = Self { child, addr };
        eventually("chromedriver to be ready", || {
            let status = webdriver.call("GET", "/status", None).ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        webdriver
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut reader = std::io::BufReader::new(stream);
        let (mut head, mut length) = (String::new(), 0);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(|_| line.clone())?;
                }
            }
            head += &line;
        }
        let mut json = vec![0; length];
        reader.read_exact(&mut json).map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        if head.starts_with("HTTP/1.1 200") {
            Ok(json)
        } else {
            Err(json.to_string())
        }
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless browser window.
struct Session<'a> {
    driver: &'a WebDriver,
    id: String,
}

impl<'a> Session<'a> {
    /// A window of `size` (width, height), as a person's would be.
    fn open(driver: &'a WebDriver, chrome: &Path, size: (u32, u32)) -> Self {
        let window = format!("--window-size={},{}", size.0, size.1);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The page's streams never end: waiting for the load would never return.
            "pageLoadStrategy": "none",
            "goog:chromeOptions": {
                "binary": chrome,
                // Scale 1: a window's pixels are the screenshot's, on a Retina Mac too.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--force-device-scale-factor=1", window],
            },
        }}});
        let session = driver
            .call("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| panic!("a browser session: {e}"));
        let id = session["value"]["sessionId"].as_str().unwrap().to_owned();
        Self { driver, id }
    }

    fn command(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{what}", self.id);
        let value = self.driver.call(method, &path, body);
        value.unwrap_or_else(|e| panic!("{method} {what}: {e}"))["value"].take()
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn eval(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

/// The browser and its driver, or `None` after saying why the test is skipped.
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = browser();
    if found.is_none() {
        eprintln!(
            "SKIPPED: no Chrome or Chromium with chromedriver found (set SCENED_CHROME and \
             SCENED_CHROMEDRIVER; on Debian `.ci/setup` installs chromium and chromium-driver)"
        );
    }
    found
}

/// A daemon showing one photo over and over, at 10 fps: a steady label to compare. Served off
/// loopback, so the page is loaded with the token, as a person would type it into the
/// browser's prompt.
fn photo_daemon(dir: &Path) -> Daemon {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(data("photos/full/chelsea.png"), photos.join("chelsea.png")).unwrap();
    let source = format!(
        "[source]\nkind = \"images\"\ndir = \"{}\"\nloop = true\nfps = 10.0\n",
        photos.display()
    );
    exposed_daemon(dir, &source)
}

#[test]
fn at_1280_by_720_the_picture_and_its_label_fit_the_window() {
    let Some((chrome, driver)) = browser_or_skip() else {
        return;
    };
    let dir = tmp_dir("browser-720");
    let daemon = photo_daemon(&dir);
    let addr = daemon.addr;
    let webdriver = WebDriver::start(&driver);
    let session = Session::open(&webdriver, &chrome, (1280, 720));
    let url = format!("http://scened:{TOKEN}@{addr}/");
    session.command("POST", "/url", Some(json!({ "url": url })));
    let page = eventually("the picture and the label", || {
        let page = session.eval(
            "const box = (id) => { const r = document.getElementById(id).getBoundingClientRect();
                                   return [r.top, r.bottom, r.left, r.right]; };
             const img = document.getElementById('picture');
             return {label: box('label'), picture: box('picture'),
                     text: document.getElementById('label').textContent,
                     loaded: img.naturalWidth, width: innerWidth, height: innerHeight};",
        );
        let ready = page["loaded"].as_u64().is_some_and(|w| w > 0)
            && page["text"].as_str().is_some_and(|t| t != "…");
        ready.then_some(page)
    });
    let (width, height) = (
        page["width"].as_f64().unwrap(),
        page["height"].as_f64().unwrap(),
    );
    assert!(width <= 1280.0 && height <= 720.0, "{page}");
    for element in ["label", "picture"] {
        let rect: Vec<f64> = page[element]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let [top, bottom, left, right] = rect[..] else {
            unreachable!()
        };
        let inside = top >= 0.0 && bottom <= height && left >= 0.0 && right <= width;
        assert!(
            inside && bottom > top,
            "{element} at {rect:?} in {width}x{height}: {page}"
        );
    }
    drop(session);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_browser_shows_the_label_status_gives_and_the_picture() {
    let Some((chrome, driver)) = browser_or_skip() else {
        return;
    };
    let dir = tmp_dir("browser");
    let daemon = photo_daemon(&dir);
    let addr = daemon.addr;
    eventually("/readyz", || (get(addr, "/readyz").0 == 200).then_some(()));
    let (_, status) = get(addr, "/status");
    let status: Value = serde_json::from_str(&status).unwrap();
    let label = status["label"].as_str().unwrap().to_owned();

    let webdriver = WebDriver::start(&driver);
    let session = Session::open(&webdriver, &chrome, (1280, 800));
    let url = format!("http://scened:{TOKEN}@{addr}/");
    session.command("POST", "/url", Some(json!({ "url": url })));
    let shown = eventually("the page to show the label and the picture", || {
        let page = session.eval(
            "const $ = (id) => document.getElementById(id);
             const img = $('picture');
             return {label: $('label')?.textContent, fps: $('fps')?.textContent,
                     top: document.querySelectorAll('#top li').length,
                     width: img?.naturalWidth, height: img?.naturalHeight,
                     state: $('state')?.textContent,
                     updates: $('sparkline')?.points.numberOfItems};",
        );
        // Enough updates for the latency sparkline to show in the screenshot.
        let ready = page["label"] == label.as_str()
            && page["top"] == 5
            && page["width"].as_u64().is_some_and(|w| w > 0)
            && page["updates"].as_u64().is_some_and(|n| n >= 30);
        ready.then_some(page)
    });
    assert_eq!(shown["state"], "live", "{shown}");
    assert!(shown["fps"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);

    let png = session.command("GET", "/screenshot", None);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    let screenshot = image::load_from_memory(&png).unwrap();
    assert_eq!(screenshot.width(), 1280);
    // `SCENED_SCREENSHOT=$PWD/docs/live-view.jpg` keeps it, in the format its name says (the
    // README's picture is made so).
    let keep = std::env::var_os("SCENED_SCREENSHOT").map(PathBuf::from);
    let path = keep.unwrap_or_else(|| dir.join("live-view.png"));
    screenshot.to_rgb8().save(&path).unwrap();
    drop(session);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// With several cameras the page shows a picture per camera, each with its own label on it.
#[test]
fn with_several_cameras_the_page_shows_each_with_its_label() {
    let Some((chrome, driver)) = browser_or_skip() else {
        return;
    };
    let dir = tmp_dir("browser-cameras");
    let config = write_config(&dir, "two.toml", crate::cameras::TWO_CAMERAS);
    let daemon = Daemon::start(&["run", "--config", &config]);
    let addr = daemon.addr;
    let webdriver = WebDriver::start(&driver);
    let session = Session::open(&webdriver, &chrome, (1280, 800));
    let url = format!("http://{addr}/");
    session.command("POST", "/url", Some(json!({ "url": url })));
    let shown = eventually("a picture and a label for each camera", || {
        let page = session.eval(
            "return {one: document.getElementById('frame').hidden,
                     cameras: [...document.querySelectorAll('#cameras figure')].map((f) => ({
                       camera: f.dataset.camera,
                       width: f.querySelector('img').naturalWidth,
                       label: f.querySelector('.label').textContent}))};",
        );
        let cameras = page["cameras"].as_array()?;
        let ready = cameras.len() == 2
            && cameras.iter().all(|camera| {
                camera["width"].as_u64().is_some_and(|w| w > 0) && camera["label"] != "…"
            });
        ready.then_some(page)
    });
    let names: Vec<&Value> = shown["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|camera| &camera["camera"])
        .collect();
    assert_eq!(names, [&json!("a"), &json!("b")], "{shown}");
    assert_eq!(shown["one"], true, "the one big picture is hidden: {shown}");
    drop(session);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A pipe whose buffer holds one page: a reader that never reads fills it at once.
fn small_pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // The kernel rounds up to a page; the default is 16 pages. macOS cannot shrink a pipe
    // (no F_SETPIPE_SZ): there it fills at its own size, 16 to 64 KiB.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096)
    };
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// A stdout nobody reads is one output falling behind: `/status` and the live view keep
/// following the labels, and the events stdout missed are counted. Once stdout is read again,
/// the run stops cleanly.
#[test]
fn a_stdout_nobody_reads_stalls_neither_status_nor_the_live_view() {
    let (mut unread, stdout) = small_pipe();
    let mut command = scened_command(&[
        "run",
        "--source",
        "synthetic",
        "--fps",
        "60",
        "--every-frame",
    ]);
    command.stdout(Stdio::from(stdout));
    let daemon = Daemon::spawn(command);
    let addr = daemon.addr;
    // The counter appears when stdout's subscriber starts, which may come after the address
    // is printed: absent reads as nothing dropped yet.
    let dropped = || {
        let (code, scrape) = get(addr, "/metrics");
        assert_eq!(code, 200);
        let series = "scened_output_dropped_total{output=\"stdout\"} ";
        scrape
            .lines()
            .find_map(|line| line.strip_prefix(series)?.parse().ok())
            .unwrap_or(0.0)
    };
    let frames = || {
        let (code, body) = get(addr, "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["frames"]
            .as_u64()
            .unwrap()
    };
    let waited = Instant::now();
    // It moves once the pipe and the queue are full.
    while dropped() == 0.0 {
        assert!(
            waited.elapsed() < PATIENCE,
            "stdout never fell behind, {} frames labelled",
            frames()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = (frames(), dropped());
    let snapshot = request(addr, "GET", "/snapshot.jpg", &[]);
    assert_eq!(snapshot.code, 200);
    image::load_from_memory(&snapshot.body).expect("a JPEG of a frame captured now");
    std::thread::sleep(Duration::from_secs(1));
    let after = (frames(), dropped());
    assert!(after.0 > before.0, "/status stopped at {before:?}");
    assert!(after.1 > before.1, "stdout's drops not counted: {after:?}");
    // Read again, stdout takes the rest, `stopped` last.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        unread.read_to_string(&mut text).unwrap();
        text
    });
    daemon.stop();
    let text = reader.join().unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "stopped", "{last}");
}
