//! MQTT against a real broker: Debian's `mosquitto`, started here on a free loopback port,
//! read with `mosquitto_sub`, stopped, killed and restarted under a running `scened run`.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::run::{json_lines, of_kind, write_config};
use crate::telemetry::get;
use crate::util::*;

/// `name` on the PATH or where Debian and Homebrew put it (`mosquitto` is in an sbin).
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    dirs.map(|dir| dir.join(name))
        .find(|file| file.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: .ci/setup installs it (Debian: mosquitto, mosquitto-clients)")
        })
}

/// A mosquitto of our own, on a free loopback port, without persistence: a restart forgets
/// every retained message.
pub(crate) struct Broker {
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub(crate) fn start(dir: &Path) -> Self {
        Self::with(dir, "allow_anonymous true\n")
    }

    /// A broker whose config has `extra` after its listener line.
    fn with(dir: &Path, extra: &str) -> Self {
        let port = free_port().port();
        let config = dir.join("mosquitto.conf");
        let text = format!("listener {port} 127.0.0.1\npersistence false\n{extra}");
        std::fs::write(&config, text).unwrap();
        let mut broker = Self {
            port,
            config,
            child: None,
        };
        broker.up();
        broker
    }

    fn up(&mut self) {
        let child = Command::new(program("mosquitto"))
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs");
        let child = self.child.insert(child);
        eventually("mosquitto to listen", || {
            // A config it cannot use ends it at once: say so rather than time out.
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mosquitto -c {} exited: {status}", self.config.display());
            }
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    /// Gone at once, as a crash or a pulled cable would have it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mosquitto_sub` on this broker with `args`.
    fn sub(&self, args: &[&str]) -> Command {
        let mut command = Command::new(program("mosquitto_sub"));
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args);
        command
    }

    /// The message retained on `topic`, if any.
    fn retained(&self, topic: &str) -> Option<String> {
        self.retained_with(topic, &[])
    }

    fn retained_with(&self, topic: &str, args: &[&str]) -> Option<String> {
        // A retained message comes at once, flagged 1; 2 s without one means none.
        let out = self
            .sub(&["-t", topic, "-C", "1", "-W", "2", "-F", "%r %p"])
            .args(args)
            .output()
            .expect("mosquitto_sub runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim_end().strip_prefix("1 ").map(str::to_owned)
    }

    /// Waits for `topic` to hold `payload`, retained.
    fn await_retained(&self, topic: &str, payload: &str) {
        self.await_retained_with(topic, payload, &[]);
    }

    /// The same, `mosquitto_sub` given `args` (credentials, a CA).
    fn await_retained_with(&self, topic: &str, payload: &str, args: &[&str]) {
        eventually(&format!("{payload:?} retained on {topic}"), || {
            (self.retained_with(topic, args).as_deref() == Some(payload)).then_some(())
        });
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `mosquitto_sub` printing every message on `topic`, subscribed before this returns.
struct Listener {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(broker: &Broker, topic: &str) -> Self {
        let mut child = broker
            .sub(&["-t", topic, "-t", "probe", "-F", "%t %p"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub runs");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let listener = Self {
            child,
            lines,
            reader: Some(reader),
        };
        // Subscribed once a probe published now comes back.
        eventually("mosquitto_sub to subscribe", || {
            let port = broker.port.to_string();
            Command::new(program("mosquitto_pub"))
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "probe", "-m", "?"])
                .status()
                .expect("mosquitto_pub runs");
            thread::sleep(Duration::from_millis(100));
            listener.payloads("probe").first().map(|_| ())
        });
        listener
    }

    /// The payloads received on `topic` so far.
    fn payloads(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic} ");
        let lines = self.lines.lock().unwrap();
        let on_topic = lines.iter().filter_map(|l| l.strip_prefix(&prefix));
        on_topic.map(str::to_owned).collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A `scened run` whose stdout and stderr are collected as they come.
struct Scened {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// What a run left behind.
struct Ran {
    code: Option<i32>,
    lines: Vec<Value>,
    stderr: String,
}

impl Scened {
    fn start(config: &str, env: &[(&str, &str)]) -> Self {
        let mut child = scened_command(&["run", "--config", config])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        });
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut text = stderr.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            })
        };
        Self {
            child,
            stdout: Some(stdout),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Where it serves telemetry, once it says so.
    fn telemetry(&self) -> SocketAddr {
        eventually("scened to print its address", || {
            let err = self.stderr();
            let addr = err.split("http://").nth(1)?.lines().next()?.trim().parse();
            Some(addr.expect("a socket address"))
        })
    }

    /// Waits for the process to end by itself.
    fn wait(mut self) -> Ran {
        let status = wait(&mut self.child);
        let stdout = self.stdout.take().unwrap().join().unwrap();
        self.stderr_reader.take().unwrap().join().unwrap();
        Ran {
            code: status.code(),
            lines: json_lines(&stdout),
            stderr: self.stderr(),
        }
    }

    fn stop(self, number: libc::c_int) -> Ran {
        signal(&self.child, number);
        self.wait()
    }
}

impl Drop for Scened {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo clip looped at its 15 fps, reporting to `broker` as camera `porch`, with `mqtt`
/// added to the `[output.mqtt]` table.
fn run_config(dir: &Path, broker: &str, output: &str, mqtt: &str) -> String {
    let text = format!(
        "[source]\nkind = \"clip\"\nloop = true\n\
         [telemetry]\ncamera = \"porch\"\n\
         [output]\n{output}\n\
         [output.mqtt]\nbroker = \"{broker}\"\n{mqtt}"
    );
    write_config(dir, "scened.toml", &text)
}

/// The report's MQTT line: events, published, dropped and connections.
fn mqtt_report(stderr: &str) -> (u64, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("mqtt "))
        .unwrap_or_else(|| panic!("no mqtt line in the report: {stderr}"));
    let number = |after: &str| -> u64 {
        let at = line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {line}"));
        let before = line[..at].trim_end();
        let digits = before.rsplit([' ', '(']).next().unwrap();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{digits:?} in {line}"))
    };
    (
        number(" events"),
        number(" published"),
        number(" dropped"),
        number(" times"),
    )
}

const AVAILABILITY: &str = "scened/porch/availability";
const LABEL: &str = "scened/porch/label";
const EVENTS: &str = "scened/porch/events";

#[test]
fn a_running_scened_keeps_its_label_and_online_retained_and_says_offline_when_stopped() {
    let dir = tmp_dir("mqtt-clean");
    let broker = Broker::start(&dir);
    let events = Listener::start(&broker, EVENTS);
    let config = run_config(&dir, &broker.url(), "", "discovery = true");
    let scened = Scened::start(&config, &[]);

    broker.await_retained(AVAILABILITY, "online");
    let label = eventually("a retained label", || broker.retained(LABEL));
    let label: Value = serde_json::from_str(&label).unwrap();
    assert_eq!(label["event"], "label", "{label}");
    assert!(label["score"].as_f64().unwrap() > 0.0, "{label}");
    let discovery = "homeassistant/sensor/scened_porch/label/config";
    let sensor: Value = serde_json::from_str(&broker.retained(discovery).unwrap()).unwrap();
    assert_eq!(sensor["state_topic"], LABEL);
    assert_eq!(sensor["availability_topic"], AVAILABILITY);

    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    broker.await_retained(AVAILABILITY, "offline");
    // Every event on stdout went to the events topic, the same objects in the same order.
    let printed: Vec<String> = ran.lines.iter().map(Value::to_string).collect();
    assert!(printed.len() >= 3, "{printed:?}");
    let published = eventually("every event on the events topic", || {
        let got = events.payloads(EVENTS);
        (got.len() >= printed.len()).then_some(got)
    });
    let published: Vec<String> = published
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap().to_string())
        .collect();
    assert_eq!(published, printed);
    let n = printed.len() as u64;
    assert_eq!(mqtt_report(&ran.stderr), (n, n, 0, 1), "{}", ran.stderr);
}

/// With two cameras each publishes as its own camera: online, its label and only its events
/// under its topics, a discovery device each; both offline at a clean stop.
#[test]
fn several_cameras_publish_each_under_its_own_topics_with_a_discovery_entry_each() {
    let dir = tmp_dir("mqtt-cameras");
    let broker = Broker::start(&dir);
    let events = Listener::start(&broker, "scened/+/events");
    let text = format!(
        "{}[output.mqtt]\nbroker = \"{}\"\ndiscovery = true\n",
        crate::cameras::TWO_CAMERAS,
        broker.url()
    );
    let config = write_config(&dir, "scened.toml", &text);
    let scened = Scened::start(&config, &[]);
    for camera in ["a", "b"] {
        broker.await_retained(&format!("scened/{camera}/availability"), "online");
        let label = eventually("a retained label", || {
            broker.retained(&format!("scened/{camera}/label"))
        });
        let label: Value = serde_json::from_str(&label).unwrap();
        assert_eq!(label["camera"], camera, "{label}");
        let discovery = format!("homeassistant/sensor/scened_{camera}/label/config");
        let sensor: Value = serde_json::from_str(&broker.retained(&discovery).unwrap()).unwrap();
        assert_eq!(sensor["state_topic"], format!("scened/{camera}/label"));
    }
    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for camera in ["a", "b"] {
        broker.await_retained(&format!("scened/{camera}/availability"), "offline");
        let topic = format!("scened/{camera}/events");
        let published = eventually("the camera's stopped event", || {
            let got = events.payloads(&topic);
            got.last()
                .is_some_and(|last| last.contains("\"stopped\""))
                .then_some(got)
        });
        for payload in published {
            let event: Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(event["camera"], camera, "{event}");
        }
    }
    // A report line per camera's client.
    let lines = ran.stderr.lines().filter(|line| line.starts_with("mqtt "));
    assert_eq!(lines.count(), 2, "{}", ran.stderr);
}

#[test]
fn a_killed_scened_is_declared_offline_by_its_last_will() {
    let dir = tmp_dir("mqtt-kill");
    let broker = Broker::start(&dir);
    let config = run_config(&dir, &broker.url(), "", "keep_alive_seconds = 5");
    let mut scened = Scened::start(&config, &[]);
    broker.await_retained(AVAILABILITY, "online");
    scened.child.kill().unwrap();
    broker.await_retained(AVAILABILITY, "offline");
}

#[test]
fn a_broker_restarted_mid_run_gets_the_label_again_and_the_drops_are_counted() {
    let dir = tmp_dir("mqtt-restart");
    let mut broker = Broker::start(&dir);
    // Every frame's label, into a five-event outbox: the outage is sure to overflow it.
    let config = run_config(
        &dir,
        &broker.url(),
        "every_frame = true",
        "qos = 1\noutbox = 5",
    );
    let scened = Scened::start(&config, &[]);
    let telemetry = scened.telemetry();
    broker.await_retained(AVAILABILITY, "online");

    broker.kill();
    let down = SystemTime::now();
    thread::sleep(Duration::from_secs(3));
    broker.up();
    let up = SystemTime::now();
    // A restarted broker has no retained messages: these are published again.
    broker.await_retained(AVAILABILITY, "online");
    let label = eventually("the label again", || broker.retained(LABEL));
    assert!(label.starts_with(r#"{"event":"label""#), "{label}");
    let (_, scrape) = get(telemetry, "/metrics");
    // Every series carries camera="porch"; `label` picks one of several.
    let value = |name: &str, label: &str| -> f64 {
        let line = scrape.lines().find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        });
        let line = line.unwrap_or_else(|| panic!("no {name} {label} in {scrape}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("scened_mqtt_connected", ""), 1.0);
    assert_eq!(value("scened_mqtt_connections_total", ""), 2.0);
    assert!(value("scened_mqtt_connection_errors_total", "") >= 1.0);
    let evicted = value("scened_mqtt_events_dropped_total", "reason=\"evicted\"");
    assert!(evicted > 0.0, "{scrape}");

    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // It kept labelling while the broker was away…
    let during = of_kind(&ran.lines, "label")
        .into_iter()
        .filter(|l| {
            let ts = humantime::parse_rfc3339(l["ts"].as_str().unwrap()).unwrap();
            down < ts && ts < up
        })
        .count();
    assert!(during > 10, "{during} labels while the broker was down");
    // …and every event is either published or counted as dropped.
    let (events, published, dropped, connections) = mqtt_report(&ran.stderr);
    // What docs/events.md shows (`--no-capture`).
    let line = ran.stderr.lines().find(|l| l.starts_with("mqtt "));
    println!("{}", line.unwrap_or_default());
    assert_eq!(events, ran.lines.len() as u64, "{}", ran.stderr);
    assert_eq!(published + dropped, events);
    assert!(dropped >= 10, "{}", ran.stderr);
    assert_eq!(connections, 2);
    assert!(
        ran.stderr.contains("mqtt: connection lost"),
        "{}",
        ran.stderr
    );
}

#[test]
fn an_unreachable_broker_is_retried_and_the_run_goes_on() {
    let dir = tmp_dir("mqtt-unreachable");
    // Nothing listens on port 1; a .invalid name never resolves.
    for broker in ["mqtt://127.0.0.1:1", "mqtt://broker.invalid"] {
        let config = run_config(&dir, broker, "", "");
        let out = scened(&["run", "--config", &config, "--frames", "30", "--fps", "0"]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        let lines = json_lines(&out.stdout);
        assert!(!of_kind(&lines, "label").is_empty(), "labels printed");
        assert!(err.contains("mqtt: cannot connect"), "logged: {err}");
        assert!(!err.contains("panicked"), "{err}");
        // Nothing published; every event dropped, counted.
        let n = lines.len() as u64;
        assert_eq!(mqtt_report(&err), (n, 0, n, 0), "{err}");
    }
}

#[test]
fn a_password_from_the_environment_logs_in_and_a_wrong_one_is_retried() {
    let dir = tmp_dir("mqtt-password");
    let passwords = dir.join("passwords");
    let made = Command::new(program("mosquitto_passwd"))
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["scened", "s3cret"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(made.success());
    let auth = format!(
        "allow_anonymous false\npassword_file {}\n",
        passwords.display()
    );
    let broker = Broker::with(&dir, &auth);
    let mqtt = "username = \"scened\"\npassword_env = \"SCENED_TEST_MQTT_PASSWORD\"";
    let config = run_config(&dir, &broker.url(), "", mqtt);

    let scened = Scened::start(&config, &[("SCENED_TEST_MQTT_PASSWORD", "s3cret")]);
    let creds = ["-u", "scened", "-P", "s3cret"];
    broker.await_retained_with(AVAILABILITY, "online", &creds);
    assert_eq!(scened.stop(libc::SIGTERM).code, Some(0));

    let wrong = [("SCENED_TEST_MQTT_PASSWORD", "wrong")];
    refused_and_retried(&config, &wrong, "Connection refused");
}

/// A run `config` cannot connect with: the refusal is logged (saying `why`) and retried, the
/// run goes on and stops cleanly, never having connected.
fn refused_and_retried(config: &str, env: &[(&str, &str)], why: &str) {
    let scened = Scened::start(config, env);
    eventually("the refusal logged", || {
        scened
            .stderr()
            .contains("mqtt: cannot connect")
            .then_some(())
    });
    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains(why), "{}", ran.stderr);
    assert_eq!(mqtt_report(&ran.stderr).3, 0, "{}", ran.stderr);
}

/// `openssl` with `args` in `dir`, which must work.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (.ci/setup installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

#[test]
fn mqtts_connects_to_a_broker_whose_certificate_the_ca_file_vouches_for() {
    let dir = tmp_dir("mqtt-tls");
    let key = ["-newkey", "rsa:2048", "-nodes"];
    let ca = [
        "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    ];
    openssl(
        &dir,
        &[&ca[..], &key, &["-subj", "/CN=scened test CA"]].concat(),
    );
    let csr = [
        "req",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ];
    openssl(&dir, &[&csr[..], &key].concat());
    // mosquitto started as root reads its files as the `mosquitto` user it drops to; this
    // key is the test's own, thrown away with the directory.
    let server_key = dir.join("server.key");
    std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_file(&dir, "san.cnf", "subjectAltName = DNS:localhost\n");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
    let tls = format!(
        "allow_anonymous true\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
        dir.display()
    );
    let broker = Broker::with(&dir, &tls);
    let url = format!("mqtts://localhost:{}", broker.port);
    let ca_pem = dir.join("ca.pem");
    let ca = ["--cafile", arg(&ca_pem), "--insecure"];

    let config = run_config(&dir, &url, "", "ca_file = \"ca.pem\"");
    let scened = Scened::start(&config, &[]);
    broker.await_retained_with(AVAILABILITY, "online", &ca);
    assert_eq!(scened.stop(libc::SIGTERM).code, Some(0));

    // Another CA does not vouch for the broker: refused, logged, retried.
    openssl(
        &dir,
        &[
            &["req", "-x509", "-keyout", "other.key", "-out", "other.pem"][..],
            &key,
            &["-subj", "/CN=other"],
        ]
        .concat(),
    );
    let config = run_config(&dir, &url, "", "ca_file = \"other.pem\"");
    refused_and_retried(&config, &[], "TLS");
}

/// The camera's name when `[telemetry] camera` is unset: the host's.
fn host_camera() -> String {
    let host = scened_pipeline::telemetry::host_name().unwrap_or_default();
    scened_pipeline::telemetry::camera_of_host(&host)
}

#[test]
fn the_same_config_started_twice_is_refused_naming_the_camera_and_the_first_stays_online() {
    let dir = tmp_dir("mqtt-twice");
    let broker = Broker::start(&dir);
    // No camera named: both would publish as the host.
    let text = format!(
        "[source]\nkind = \"clip\"\nloop = true\n[output.mqtt]\nbroker = \"{}\"\ndiscovery = true\n",
        broker.url()
    );
    let config = write_config(&dir, "scened.toml", &text);
    let camera = host_camera();
    let availability = format!("scened/{camera}/availability");
    let instance = format!("scened/{camera}/instance");
    let first = Scened::start(&config, &[]);
    broker.await_retained(&availability, "online");
    let marker = broker
        .retained(&instance)
        .expect("the first's instance marker");
    let marker: Value = serde_json::from_str(&marker).unwrap();
    assert_eq!(marker["pid"], first.child.id(), "{marker}");

    let started = std::time::Instant::now();
    let second = scened(&["run", "--config", &config]);
    let took = started.elapsed();
    assert!(!second.status.success(), "{}", stderr(&second));
    assert!(took < Duration::from_secs(15), "refused after {took:?}");
    assert_one_line_error(
        &second,
        &format!("telemetry.camera: \"{camera}\" is already online"),
    );
    let err = stderr(&second);
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");

    // The first is untouched: still online, still its marker, still publishing.
    assert_eq!(broker.retained(&availability).as_deref(), Some("online"));
    let still: Value = serde_json::from_str(&broker.retained(&instance).unwrap()).unwrap();
    assert_eq!(still, marker);
    let ran = first.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // A clean stop frees the camera: offline, and no marker.
    broker.await_retained(&availability, "offline");
    assert_eq!(broker.retained(&instance), None);
    // Free, it starts.
    let again = scened(&["run", "--config", &config, "--frames", "5"]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn after_an_outage_the_state_topic_gets_the_label_of_now_once_and_the_events_their_history() {
    let dir = tmp_dir("mqtt-now");
    let mut broker = Broker::start(&dir);
    // One photo over and over, every frame's label: a steady label, thirty events a second.
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(data("photos/full/chelsea.png"), photos.join("chelsea.png")).unwrap();
    let text = format!(
        "[source]\nkind = \"images\"\ndir = \"{}\"\nloop = true\nfps = 10.0\n\
         [telemetry]\ncamera = \"porch\"\n[output]\nevery_frame = true\n\
         [output.mqtt]\nbroker = \"{}\"\n",
        photos.display(),
        broker.url()
    );
    let config = write_config(&dir, "scened.toml", &text);
    let scened = Scened::start(&config, &[]);
    broker.await_retained(AVAILABILITY, "online");
    eventually("a retained label", || broker.retained(LABEL));
    // Past the smoother's first frames, the label holds. With every frame's label on
    // `events`, the retained state changes only with the label.
    thread::sleep(Duration::from_secs(2));
    let steady = Listener::start(&broker, LABEL);
    let events = Listener::start(&broker, EVENTS);
    thread::sleep(Duration::from_secs(2));
    let on_events = events.payloads(EVENTS).len();
    assert!(on_events >= 10, "{on_events} events in 2 s");
    // A subscription gets the retained label at once; nothing more while it stays.
    assert_eq!(
        steady.payloads(LABEL).len(),
        1,
        "{:?}",
        steady.payloads(LABEL)
    );
    drop((steady, events));

    broker.kill();
    let down = SystemTime::now();
    // 4 s: scened's retries (0.5, 1.5, 3.5, 7.5 s after the loss) leave the listeners time to
    // subscribe before it is back.
    thread::sleep(Duration::from_secs(4));
    broker.up();
    let up = SystemTime::now();
    let state = Listener::start(&broker, LABEL);
    let events = Listener::start(&broker, EVENTS);
    broker.await_retained(AVAILABILITY, "online");
    // Time for a burst to show, were there one.
    thread::sleep(Duration::from_secs(2));
    let labels = state.payloads(LABEL);
    assert_eq!(
        labels.len(),
        1,
        "one label of now, not a replay: {labels:?}"
    );
    let now: Value = serde_json::from_str(&labels[0]).unwrap();
    let ts = humantime::parse_rfc3339(now["ts"].as_str().unwrap()).unwrap();
    assert!(ts > up, "the label of now, not of before the outage: {now}");
    // The events topic replays the outage, with the original timestamps.
    let during = events
        .payloads(EVENTS)
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter(|e| {
            let ts = humantime::parse_rfc3339(e["ts"].as_str().unwrap_or_default());
            ts.is_ok_and(|ts| down < ts && ts < up)
        })
        .count();
    assert!(during > 10, "{during} events of the outage replayed");

    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // Back is said as loudly as lost.
    let level = |what: &str| {
        let line = ran.stderr.lines().find(|l| l.contains(what));
        let line = line.unwrap_or_else(|| panic!("no {what:?} in {}", ran.stderr));
        ["ERROR", "WARN", "INFO"]
            .into_iter()
            .find(|level| line.contains(level))
    };
    assert_eq!(level("mqtt: connection lost"), Some("WARN"));
    assert_eq!(level("mqtt: broker back"), Some("WARN"));
}

/// A reload with a new `[output.mqtt]` moves the camera to the new topics, the old ones left
/// `offline`, while the pipeline labels on.
#[test]
fn a_reload_with_a_new_topic_prefix_moves_the_camera_to_it() {
    let dir = tmp_dir("mqtt-reload");
    let broker = Broker::start(&dir);
    let config = run_config(&dir, &broker.url(), "", "");
    let scened = Scened::start(&config, &[]);
    broker.await_retained(AVAILABILITY, "online");
    eventually("a retained label", || broker.retained(LABEL));

    run_config(&dir, &broker.url(), "", "topic_prefix = \"home\"");
    signal(&scened.child, libc::SIGHUP);
    broker.await_retained("home/porch/availability", "online");
    broker.await_retained(AVAILABILITY, "offline");
    let label = eventually("a retained label under the new prefix", || {
        broker.retained("home/porch/label")
    });
    let label: Value = serde_json::from_str(&label).unwrap();
    assert_eq!(label["event"], "label", "{label}");

    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    broker.await_retained("home/porch/availability", "offline");
    let reloaded = ran.lines.iter().find(|l| l["event"] == "reloaded");
    let reloaded = reloaded.unwrap_or_else(|| panic!("no reloaded event: {:?}", ran.lines));
    assert_eq!(reloaded["reconnected"], serde_json::json!(["output.mqtt"]));
    assert_eq!(reloaded["refused"], serde_json::json!([]));
}

/// A reload adding two cameras, one of them published as by another daemon, is refused whole:
/// the other camera added is never published either, and the running camera carries on.
#[test]
fn a_reload_adding_a_camera_claimed_elsewhere_adds_none() {
    let dir = tmp_dir("mqtt-reload-claimed");
    let broker = Broker::start(&dir);
    let cameras = |names: &[&str]| {
        let mut text = format!("[output.mqtt]\nbroker = \"{}\"\n", broker.url());
        for name in names {
            text += &format!("[cameras.{name}.source]\nkind = \"synthetic\"\nfps = 10.0\n");
        }
        text
    };
    let other = write_config(&dir, "other.toml", &cameras(&["taken"]));
    let other = Scened::start(&other, &[]);
    broker.await_retained("scened/taken/availability", "online");
    let config = write_config(&dir, "scened.toml", &cameras(&["kept"]));
    let scened = Scened::start(&config, &[]);
    broker.await_retained("scened/kept/availability", "online");

    write_config(&dir, "scened.toml", &cameras(&["kept", "fresh", "taken"]));
    signal(&scened.child, libc::SIGHUP);
    // The claim is a look at the broker's retained topics: well within this.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(broker.retained("scened/fresh/availability"), None);
    assert_eq!(
        broker.retained("scened/kept/availability").as_deref(),
        Some("online")
    );

    let ran = scened.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let failed = ran.lines.iter().find(|l| l["event"] == "reload_failed");
    let failed = failed.unwrap_or_else(|| panic!("no reload_failed: {:?}", ran.lines));
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("cameras.taken: \"taken\" is already online"),
        "{failed}"
    );
    let said = |what: &dyn Fn(&Value) -> bool| ran.lines.iter().any(what);
    assert!(!said(&|l| l["event"] == "reloaded"), "{:?}", ran.lines);
    assert!(!said(&|l| l["camera"] == "fresh"), "{:?}", ran.lines);
    let ran = other.stop(libc::SIGTERM);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
}
