//! Every numeric setting at its extremes (issue #25): each number in `config/scened.toml`, the
//! commented-out keys of its other kinds and tables included, and each flag that overrides one,
//! set to 0, the smallest positive float, the largest finite, a negative, and ±inf and NaN (TOML
//! has them), then driven through what `scened run` does — the whole config checked, the
//! pipeline built, and a short run, in a process of its own — must give a one-line error naming
//! the key, or a run that behaves. Never a panic, on any thread.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use toml::{Table, Value};

use crate::util::*;

const FLOATS: [f64; 8] = [
    0.0,
    5e-324,
    f64::MAX,
    -1.0,
    -f64::MAX,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];
const INTEGERS: [i64; 4] = [0, -1, i64::MAX, i64::MIN];

/// The tables `config/scened.toml` shows commented out, each replacing or joining the file's
/// own: every numeric key a user can set appears in one of them or in the file.
const VARIANTS: &str = r#"
[[variant]]
source = { kind = "synthetic", width = 640, height = 480, fps = 30.0 }
[[variant]]
source = { kind = "images", dir = "../tests/data/photos/full", loop = true, fps = 2.0, recursive = false, max_pixels = 67108864 }
[[variant]]
source = { kind = "camera", width = 1280, height = 720, fps = 30, format = "auto", max_pixels = 67108864, index = 0 }
[[variant]]
source = { kind = "clip", format = "yuyv", width = 640, height = 480, fps = 15.0, loop = true, max_pixels = 67108864 }
[[variant]]
smooth = { kind = "ema", alpha = 0.3 }
[[variant]]
smooth = { kind = "window", frames = 5 }
[[variant]]
stop = { after_frames = 900, after_seconds = 60.0, stall_seconds = 10.0 }
[[variant]]
output = { every_frame = false, mqtt = { broker = "mqtt://127.0.0.1:1", keep_alive_seconds = 30, qos = 0, outbox = 1000, image_every_seconds = 0 } }
"#;

/// A numeric setting: where it is (`edges.infer.capacity`, `resize.region[2]`).
struct Setting {
    table: Vec<String>,
    index: Option<usize>,
}

impl Setting {
    fn key(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.table.join(".")),
            None => self.table.join("."),
        }
    }

    fn slot<'a>(&self, doc: &'a mut Table) -> &'a mut Value {
        let (last, tables) = self.table.split_last().unwrap();
        let mut table = doc;
        for name in tables {
            table = table[name.as_str()].as_table_mut().unwrap();
        }
        let value = &mut table[last.as_str()];
        match self.index {
            Some(i) => &mut value.as_array_mut().unwrap()[i],
            None => value,
        }
    }
}

/// Every number in `table`, depth first.
fn settings(table: &Table, at: &[String], out: &mut Vec<(Setting, bool)>) {
    for (name, value) in table {
        let mut path = at.to_vec();
        path.push(name.clone());
        let setting = |index| Setting {
            table: path.clone(),
            index,
        };
        match value {
            Value::Integer(_) => out.push((setting(None), false)),
            Value::Float(_) => out.push((setting(None), true)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_float() || item.is_integer() {
                        out.push((setting(Some(i)), item.is_float()));
                    }
                }
            }
            Value::Table(inner) => settings(inner, &path, out),
            _ => {}
        }
    }
}

/// The file, with every number in it to drive; then the file with each variant's tables in
/// place of its own, with the numbers of those tables to drive.
fn documents() -> Vec<(Table, Vec<(Setting, bool)>)> {
    let file = std::fs::read_to_string(repo().join("config/scened.toml")).unwrap();
    let file: Table = file.parse().unwrap();
    let mut found = vec![];
    settings(&file, &[], &mut found);
    let mut documents = vec![(file.clone(), found)];
    let variants: Table = VARIANTS.parse().unwrap();
    for variant in variants["variant"].as_array().unwrap() {
        let mut doc = file.clone();
        let mut found = vec![];
        for (name, table) in variant.as_table().unwrap() {
            doc.insert(name.clone(), table.clone());
            let mut one = Table::new();
            one.insert(name.clone(), table.clone());
            settings(&one, &[], &mut found);
        }
        documents.push((doc, found));
    }
    documents
}

/// Reads the child's stderr to its end; once the child serves (the pipeline is built), lets it
/// run a moment and sends it SIGINT. The lines read.
fn stop_once_serving(child: &mut Child) -> Vec<String> {
    let (lines, got) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    let mut err = vec![];
    while let Ok(line) = got.recv_timeout(PATIENCE) {
        let serving = line.starts_with("serving");
        err.push(line);
        if serving {
            thread::sleep(Duration::from_millis(300));
            if child.try_wait().unwrap().is_none() {
                signal(child, libc::SIGINT);
            }
        }
    }
    reader.join().unwrap();
    err
}

/// What went wrong with scened in a run that ended with `status` and `err` on stderr: a
/// panic, a crash, more than one error line, a setting's error naming another key than `key`.
fn fault(status: std::process::ExitStatus, err: &[String], key: &str) -> Option<String> {
    let errors: Vec<&String> = err.iter().filter(|l| l.starts_with("error")).collect();
    let name = key.split('[').next().unwrap();
    // 1: an error; 2: a flag clap refused. 130 would be a drain that got stuck.
    let crashed = status.code().is_none_or(|code| code > 2);
    if crashed || err.iter().any(|l| l.contains("panicked")) {
        Some(format!("{status}: {err:?}"))
    } else if errors.len() > 1 {
        Some(format!("more than one error line: {err:?}"))
    } else if errors
        .iter()
        .any(|e| e.contains(" must be ") && !e.contains(name))
    {
        Some(format!("an error naming another key: {errors:?}"))
    } else {
        None
    }
}

/// One config through `scened run`, which checks it whole, builds the pipeline and runs it.
fn drive(dir: &Path, case: usize, text: &str, key: &str) -> Option<String> {
    let config = write_file(dir, &format!("case{case}.toml"), text);
    let mut child = scened_command(&["run", "--config", arg(&config)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = stop_once_serving(&mut child);
    fault(wait(&mut child), &err, key)
}

#[test]
fn every_numeric_setting_at_its_extremes_errors_or_runs() {
    let dir = tmp_dir("extremes");
    let mut cases = vec![];
    let mut covered = vec![];
    for (doc, found) in documents() {
        for (setting, float) in found {
            let values: Vec<Value> = if float {
                FLOATS.iter().map(|&v| Value::Float(v)).collect()
            } else {
                let ints = INTEGERS.iter().map(|&v| Value::Integer(v));
                ints.chain([Value::Float(0.5)]).collect()
            };
            let key = setting.key();
            covered.push(key.clone());
            for value in values {
                let mut doc = doc.clone();
                *setting.slot(&mut doc) = value.clone();
                cases.push((key.clone(), value, toml::to_string(&doc).unwrap()));
            }
        }
    }
    // Drift guard: every number the file shows, set or commented out, is driven.
    let file = std::fs::read_to_string(repo().join("config/scened.toml")).unwrap();
    for line in file.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        let Some((name, value)) = line.split_once(" = ") else {
            continue;
        };
        let key = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if key && value.starts_with(|c: char| c.is_ascii_digit() || c == '[') {
            assert!(
                covered
                    .iter()
                    .any(|k| k.split('[').next().unwrap().ends_with(name)),
                "{name} is in config/scened.toml but not driven here"
            );
        }
    }
    // A few at a time: most of a case is its process loading the model.
    let next = AtomicUsize::new(0);
    let faults = Mutex::new(vec![]);
    thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((key, value, text)) = cases.get(i) else {
                    break;
                };
                if let Some(fault) = drive(&dir, i, text, key) {
                    faults
                        .lock()
                        .unwrap()
                        .push(format!("{key} = {value}: {fault}"));
                }
            });
        }
    });
    let faults = faults.into_inner().unwrap();
    eprintln!("{} cases driven", cases.len());
    assert!(faults.is_empty(), "\n{}", faults.join("\n"));
}

/// The flags that override a number: `--fps`, `--duration`, `--frames`, `--workers`, as a
/// user gives them, on the synthetic source.
#[test]
fn numeric_flags_at_their_extremes_error_or_run() {
    let floats = [
        "0",
        "5e-324",
        "1.7976931348623157e308",
        "-1",
        "inf",
        "-inf",
        "NaN",
    ];
    let integers = ["0", "-1", "18446744073709551615", "18446744073709551616"];
    // Each flag with the key it overrides, which its errors name.
    let cases = floats
        .iter()
        .flat_map(|v| [("--fps", "fps", *v), ("--duration", "after_seconds", *v)])
        .chain(integers.iter().flat_map(|v| {
            [
                ("--frames", "after_frames", *v),
                ("--workers", "workers", *v),
            ]
        }));
    let mut faults = vec![];
    for (flag, key, value) in cases {
        let flag_value = format!("{flag}={value}");
        let mut child = scened_command(&["run", "--source", "synthetic", &flag_value])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = stop_once_serving(&mut child);
        if let Some(fault) = fault(wait(&mut child), &err, key) {
            faults.push(format!("{flag_value}: {fault}"));
        }
    }
    assert!(faults.is_empty(), "\n{}", faults.join("\n"));
}
