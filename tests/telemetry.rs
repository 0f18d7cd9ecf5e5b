//! Telemetry against real components: the daemon's HTTP endpoints, Debian's `prometheus`
//! scraping it and evaluating every dashboard and alert query, `promtool`'s checks, and the
//! dashboard type-checked against Grafana's schema by `tsc`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use scened_pipeline::metrics;
use serde_json::Value;

use crate::mqtt::Broker;
use crate::run::write_config;
use crate::util::*;

/// The synthetic source's frame rate in these runs: far more than inference takes on any
/// machine, so the daemon is over budget and the overload alerts have something to show.
const OVERLOAD_FPS: &str = "240";

/// `GET`-style request over plain HTTP/1.0; the status code and the body.
pub(crate) fn http(method: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    let response = crate::http::request(addr, method, path, &[]);
    (
        response.code,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http("GET", addr, path)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `scened run` serving telemetry on a free port, stopped with SIGTERM on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Daemon {
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut command = scened_command(args);
        command.stdout(Stdio::null());
        Self::spawn(command)
    }

    /// Runs `command` (a `scened run` or `bench`, its stdout set by the caller) and waits for
    /// the address it serves on.
    pub(crate) fn spawn(mut command: Command) -> Self {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, addr) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("http://").nth(1) {
                    let _ = found.send(url.trim().parse::<SocketAddr>());
                }
            }
        });
        let addr = addr
            .recv_timeout(PATIENCE)
            .expect("scened prints the address it serves on")
            .expect("a socket address");
        Self { child, addr }
    }

    /// [`start`](Self::start), with its stdout's events, a JSON object a line, as they come;
    /// the reader ends with it.
    pub(crate) fn start_printing(
        args: &[&str],
    ) -> (Self, mpsc::Receiver<Value>, thread::JoinHandle<()>) {
        let mut command = scened_command(args);
        command.stdout(Stdio::piped());
        let mut daemon = Self::spawn(command);
        let stdout = daemon.child.stdout.take().expect("stdout piped");
        let (lines, events) = mpsc::channel::<Value>();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let _ = lines.send(event);
            }
        });
        (daemon, events, reader)
    }

    /// SIGTERM, then the exit status, which must be a clean 0.
    pub(crate) fn stop(self) {
        self.stop_with(0);
    }

    /// SIGTERM, then the exit status, which must be `code`.
    fn stop_with(mut self, code: i32) {
        signal(&self.child, libc::SIGTERM);
        let status = wait(&mut self.child);
        assert_eq!(status.code(), Some(code), "scened after SIGTERM: {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `prometheus`, run by hand on a free loopback port with its own storage.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus with grafana/prometheus.yml, pointed at `target`, scraping and
    /// evaluating the alert rules every second.
    fn start(target: SocketAddr, dir: &Path) -> Self {
        let shipped = std::fs::read_to_string(repo().join("grafana/prometheus.yml")).unwrap();
        let rules = repo().join("grafana/alerts.yml");
        let mut config = shipped.clone();
        for (from, to) in [
            ("127.0.0.1:9898", target.to_string()),
            ("5s", "1s".to_owned()),
            ("- alerts.yml", format!("- {}", rules.display())),
        ] {
            assert!(
                config.contains(from),
                "grafana/prometheus.yml has no {from}"
            );
            config = config.replace(from, &to);
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let addr = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus installed (.ci/setup installs it)");
        let prometheus = Self { child, addr };
        eventually("prometheus to be ready", || {
            TcpStream::connect(addr).ok()?;
            (get(addr, "/-/ready").0 == 200).then_some(())
        });
        prometheus
    }

    /// The result vector of an instant query; a query Prometheus refuses fails the test.
    fn query(&self, expr: &str) -> Vec<Value> {
        let (code, body) = get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code, 200, "{expr}: {body}");
        assert_eq!(json["status"], "success", "{expr}: {body}");
        json["data"]["result"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `expr` of the dashboard, with Grafana's variables as Grafana would fill them in.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("grafana/dashboards/scened.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| {
            target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$camera", ".*")
        })
        .collect();
    assert!(exprs.len() >= 15, "{exprs:?}");
    for expr in &exprs {
        assert!(!expr.contains('$'), "an unfilled variable in {expr}");
    }
    exprs
}

/// Every `expr:` of the alert rules file, as written.
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("grafana/alerts.yml")).unwrap();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("expr: "))
        .map(str::to_owned)
        .collect()
}

/// The left side of an expression's top-level comparison: the quantity an alert watches.
fn quantity(expr: &str) -> &str {
    let mut depth = 0i32;
    let bytes = expr.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'<' | b'>' | b'=' | b'!' if depth == 0 && bytes.get(i - 1) == Some(&b' ') => {
                return expr[..i].trim_end();
            }
            _ => {}
        }
    }
    panic!("no top-level comparison in {expr}");
}

/// Metric names an expression uses (ours and the process's), without histogram suffixes.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("scened_") || word.starts_with("process_"))
        .map(|word| word.trim_end_matches("_bucket").to_owned())
        .collect()
}

#[test]
fn every_metric_a_panel_or_alert_uses_is_named_in_the_metrics_module() {
    let exprs: Vec<String> = dashboard_exprs().into_iter().chain(alert_exprs()).collect();
    assert_eq!(alert_exprs().len(), 10);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| !metrics::ALL.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "not in pipeline/src/metrics.rs: {unknown:?}"
    );
    // The dashboard shows every metric there is.
    let unshown: Vec<&&str> = metrics::ALL
        .iter()
        .filter(|name| !used.contains(**name))
        .collect();
    assert!(unshown.is_empty(), "no panel or alert uses {unshown:?}");
    assert_eq!(
        quantity("sum(rate(x[1m])) / sum(rate(y{a=\"b\"}[1m])) > 0.5"),
        "sum(rate(x[1m])) / sum(rate(y{a=\"b\"}[1m]))"
    );
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_every_dashboard_and_alert_query_has_data() {
    let dir = tmp_dir("prometheus");
    // Two inference workers and a broker to publish to, so that the per-worker and the MQTT
    // series and panels have data too.
    let broker = Broker::start(&dir);
    let mqtt = format!("[output.mqtt]\nbroker = \"{}\"", broker.url());
    let config = write_config(&dir, "mqtt.toml", &mqtt);
    let daemon = Daemon::start(&[
        "run",
        "--config",
        &config,
        "--source",
        "synthetic",
        "--fps",
        OVERLOAD_FPS,
        "--workers",
        "2",
    ]);

    // The endpoints, as an orchestrator and a person would use them.
    assert_eq!(get(daemon.addr, "/healthz"), (200, "ok\n".into()));
    eventually("/readyz to say ready", || {
        (get(daemon.addr, "/readyz") == (200, "ready\n".into())).then_some(())
    });
    // Ready at the first label; each worker's first frame may take longer than another's.
    let status = eventually("each worker to have run a frame", || {
        let (code, body) = get(daemon.addr, "/status");
        assert_eq!(code, 200);
        let status: Value = serde_json::from_str(&body).unwrap();
        let workers = status["workers"].as_array().unwrap();
        let ran = workers.iter().all(|w| w["frames"].as_u64().unwrap() > 0);
        ran.then_some(status)
    });
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["model"], crate::run::default_model());
    assert_eq!(status["dtype"], "int8");
    assert!(status["label"].is_string(), "{status}");
    assert!(status["fps"].as_f64().unwrap() > 0.0, "{status}");
    assert!(
        status["last_latency_ms"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    let workers = status["workers"].as_array().unwrap();
    let numbers: Vec<&Value> = workers.iter().map(|w| &w["worker"]).collect();
    assert_eq!(numbers, [0, 1], "{status}");
    for worker in workers {
        assert!(worker["frames"].as_u64().unwrap() > 0, "{status}");
        assert_eq!(worker["errors"], 0, "{status}");
    }
    assert_eq!(http("POST", daemon.addr, "/metrics").0, 405);
    assert_eq!(get(daemon.addr, "/admin").0, 404);

    // A real scrape passes Prometheus's own lint and holds every metric there is.
    let (code, scrape) = get(daemon.addr, "/metrics");
    assert_eq!(code, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool installed (.ci/setup installs prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let lint = promtool.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    for name in metrics::ALL {
        assert!(
            scrape.contains(&format!("\n{name}")),
            "{name} missing from the scrape"
        );
    }
    for worker in ["0", "1"] {
        let bucket = format!(
            "scened_stage_duration_seconds_bucket{{stage=\"infer\",worker=\"{worker}\",le=\"0.0333\"}}"
        );
        assert!(scrape.contains(&bucket), "{bucket} missing from the scrape");
    }

    let prometheus = Prometheus::start(daemon.addr, &dir);
    // Enough scrapes for every rate(), and the rules evaluated at least once after them.
    eventually("five scrapes of scened", || {
        let series = prometheus.query("count_over_time(scened_build_info[1m]) >= 5");
        (!series.is_empty()).then_some(())
    });
    thread::sleep(Duration::from_secs(2));

    let exprs = dashboard_exprs();
    let empty: Vec<&String> = exprs
        .iter()
        .filter(|expr| prometheus.query(expr).is_empty())
        .collect();
    assert!(
        empty.is_empty(),
        "dashboard queries with no data: {empty:#?}"
    );

    // Prometheus loaded the rules and evaluates them without error…
    let (_, rules) = get(prometheus.addr, "/api/v1/rules");
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let loaded = rules["data"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(loaded.len(), alert_exprs().len(), "{rules}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    // …each watches a quantity that has data…
    for expr in alert_exprs() {
        let watched = quantity(&expr);
        assert!(
            !prometheus.query(watched).is_empty(),
            "alert quantity with no data: {watched}"
        );
    }
    // …and the overload alerts do fire on an overloaded daemon (they are pending: their
    // `for` has not elapsed).
    for name in [
        "ScenedFpsBelowTarget",
        "ScenedLatencyOverFramePeriod",
        "ScenedDroppingFrames",
    ] {
        let rule = loaded.iter().find(|r| r["name"] == name).unwrap();
        let expr = rule["query"].as_str().unwrap();
        assert!(
            !prometheus.query(expr).is_empty(),
            "{name} does not fire on an overloaded daemon: {expr}"
        );
    }
    // Nothing fails on frames and no stage fails, so these stay quiet.
    for quiet in ["frame_errors", "stage_failures"] {
        let expr = alert_exprs().into_iter().find(|e| e.contains(quiet));
        assert!(prometheus.query(&expr.unwrap()).is_empty(), "{quiet}");
    }

    drop(prometheus);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn promtool_accepts_the_alert_rules_and_every_dashboard_query() {
    let check = |file: &Path| {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(file)
            .output()
            .expect("promtool installed (.ci/setup installs prometheus)");
        assert!(
            out.status.success(),
            "promtool check rules {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    check(&repo().join("grafana/alerts.yml"));
    // Each dashboard query as a recording rule (a rules file may be JSON, which is YAML).
    let rules: Vec<Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, expr)| serde_json::json!({"record": format!("scened:panel_{i}"), "expr": expr}))
        .collect();
    let dir = tmp_dir("promtool");
    let file = dir.join("dashboard-rules.yml");
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, groups.to_string()).unwrap();
    check(&file);
    // And it would catch a broken one.
    std::fs::write(
        &file,
        serde_json::json!({"groups": [{"name": "bad", "rules": [
            {"record": "scened:bad", "expr": "rate(scened_frames_total[1m]"}]}]})
        .to_string(),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_dashboard_type_checks_against_grafana_s_schema() {
    let check_dir = repo().join("grafana/check");
    assert!(
        check_dir.join("node_modules/@grafana/schema").is_dir(),
        "run `npm ci --prefix grafana/check` (.ci/setup does) first"
    );
    let check = |dir: &Path| {
        Command::new("node")
            .arg(check_dir.join("check.mjs"))
            .arg(dir)
            .output()
            .expect("node installed")
    };
    let out = check(&repo().join("grafana/dashboards"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A misspelt key is caught.
    let text = std::fs::read_to_string(repo().join("grafana/dashboards/scened.json")).unwrap();
    let dir = tmp_dir("dashboard-typo");
    std::fs::write(
        dir.join("typo.json"),
        text.replacen("\"gridPos\"", "\"gridPosition\"", 1),
    )
    .unwrap();
    let out = check(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("gridPosition"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_metrics_port_in_use_is_one_clean_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = scened(&["run", "--source", "synthetic", "--listen", &addr]);
    assert_one_line_error(&out, &format!("telemetry.listen: cannot listen on {addr}"));
}

#[test]
fn without_telemetry_nothing_is_served() {
    let out = scened(&[
        "run",
        "--source",
        "synthetic",
        "--duration",
        "1",
        "--no-telemetry",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("http://"), "{}", stderr(&out));
}

/// A soak is watched the way a daemon is: `scened bench` serves the same metrics while it runs.
#[test]
fn metrics_stay_live_during_a_bench() {
    let dir = tmp_dir("bench-telemetry");
    let config = crate::run::write_config(
        &dir,
        "bench.toml",
        "[source]\nkind = \"synthetic\"\nfps = 30.0\n\
         [bench]\nmin_fps = 0.01\nmax_p99_ms = 600000.0\nmax_deadline_miss_ratio = 1.0\n\
         max_drop_ratio = 1.0\nmax_rss_slope_mb_per_h = 1e12\nmax_p99_drift = 1e12\n",
    );
    let daemon = Daemon::start(&["bench", "--config", &config]);
    let labelled = |addr| {
        let (code, body) = get(addr, "/metrics");
        assert_eq!(code, 200);
        body.lines()
            .find(|l| l.starts_with(metrics::FRAMES_TOTAL) && l.contains("stage=\"smooth\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let first = eventually("frames counted during the bench", || {
        labelled(daemon.addr).filter(|&n| n > 0.0)
    });
    eventually("the count growing", || {
        labelled(daemon.addr).filter(|&n| n > first)
    });
    // Stopped within seconds, before the memory warm-up is over: the bench could not measure
    // memory growth, so its verdict fails (bench::thresholds_judge_what_was_measured_…).
    daemon.stop_with(1);
}

/// What a fleet installs: the systemd unit passes `systemd-analyze verify` (pointed at this
/// build), the launchd agent reads as a property list running `scened run --config`, and the
/// fleet's scrape config passes `promtool check config` (with a token file where it names one).
#[test]
fn the_shipped_units_and_the_fleet_scrape_config_are_valid() {
    let dir = tmp_dir("fleet");
    let unit = std::fs::read_to_string(repo().join("deploy/scened.service")).unwrap();
    let exec = "ExecStart=/usr/local/bin/scened run --config /etc/scened/scened.toml";
    assert!(unit.contains(exec), "{unit}");
    let here = format!(
        "ExecStart={} run --config /etc/scened/scened.toml",
        env!("CARGO_BIN_EXE_scened")
    );
    std::fs::write(dir.join("scened.service"), unit.replace(exec, &here)).unwrap();
    if cfg!(target_os = "linux") {
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join("scened.service"))
            .output()
            .expect("systemd-analyze (.ci/setup installs systemd)");
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    } else {
        eprintln!("SKIPPED systemd-analyze verify: no systemd off Linux (the Linux job runs it)");
    }

    let agent = Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(repo().join("deploy/io.github.scened.plist"))
        .output()
        .unwrap();
    assert!(
        agent.status.success(),
        "{}",
        String::from_utf8_lossy(&agent.stderr)
    );
    let agent: Value = serde_json::from_slice(&agent.stdout).unwrap();
    let args: Vec<&str> = agent["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[1..3], ["run", "--config"], "{agent}");
    assert_eq!(agent["KeepAlive"]["SuccessfulExit"], false, "{agent}");

    let token = dir.join("scened-token");
    std::fs::write(&token, "a-token-of-at-least-sixteen-bytes").unwrap();
    let fleet = std::fs::read_to_string(repo().join("grafana/prometheus-fleet.yml")).unwrap();
    let fleet = fleet
        .replace("/etc/prometheus/scened-token", &token.display().to_string())
        .replace(
            "- alerts.yml",
            &format!("- {}", repo().join("grafana/alerts.yml").display()),
        );
    std::fs::write(dir.join("prometheus.yml"), fleet).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}
