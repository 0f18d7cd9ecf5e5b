//! scened's pipeline library.
//!
//! Each box is a thread run by [`runner`]; each arrow is a bounded [`queue`] edge with a
//! declared [`queue::WhenFull`] policy, named after the stage it feeds. [`pipeline`] wires them
//! from one [`config`].
//!
//! ```text
//!  source ──Frame──▶ resize ──ModelInput──▶ infer ──Scores──▶ smooth ──Smoothed──▶ out
//!         "resize"           "infer"              "smooth"            "sink"
//! ```
//!
//! Every item carries the [`frame::Stamp`] of the frame it came from, so the runner can
//! measure frame age when inference starts, and the pipeline's end each label's
//! capture-to-label latency as it leaves. A stage is a plain `process(input) -> Result<output>`
//! call ([`stage::Stage`]): the runner owns receiving, timing, counting, dropping, panics and
//! shutdown. The pipeline publishes what comes out ([`bus`]): the event stream ([`events`])
//! and every frame's result; stdout, MQTT, `/status`, `/events` and the live view subscribe,
//! each with its own queue and policy for falling behind.
//!
//! The modules stand on floors, lowest first; a module imports only from floors below its
//! own (and its own), never from above, so each floor can be read and tested without the ones
//! above it (`the_modules_import_each_other_in_no_loop` keeps it so):
//!
//! | floor | modules |
//! |---|---|
//! | 0. the ground: the vocabulary every floor shares | [`frame`] (the items that flow, the label that leaves), [`error`] (a config's bad value, a TOML error, an error's chain), [`metrics`] (every name, once), [`contain`] (panics), [`jpeg`] (JPEG framing), [`rss`], [`stats`], [`npy`], [`allocator`] (the memory allocator the binary installs), `cpu` (x86-64: the features a build may need) |
//! | 1. plumbing | [`queue`] (edges and their policies), [`bus`] (one publisher, many subscribers), [`events`] (the event stream), [`stage`] (the stage and source traits, the stop request), [`decode`] (still images), [`verdict`] (`[bench]`'s thresholds) |
//! | 2. the stages, in data-flow order | [`source`] (camera, clip, images, synthetic), [`resize`], [`infer`] (the tract engine, the int8 kernels, the stage), [`smooth`] (with [`labels`]: groups, `unknown`) |
//! | 3. the runner | [`runner`] (the one thread loop, workers, the watchdog, the report) |
//! | 4. outputs | [`telemetry`] (HTTP: metrics, `/status`, the live view), [`mqtt`] |
//! | 5. wiring | [`config`] (the file, composed of each part's table), [`pipeline`] (the stages wired and run, changed between frames by a reload), [`daemon`] (a pipeline with its outputs), [`reload`] (a new config applied to a running daemon) |
//! | 6. tools on top | [`classify`] (still images), [`eval`] (the study's table), [`bench`] (verdicts), [`models`] (a model's report, its inference timed) |

pub mod allocator;
pub mod bench;
pub mod bus;
pub mod classify;
pub mod config;
pub mod contain;
#[cfg(target_arch = "x86_64")]
pub mod cpu;
pub mod daemon;
pub mod decode;
pub mod error;
pub mod eval;
pub mod events;
pub mod frame;
pub mod infer;
pub mod jpeg;
pub mod labels;
pub mod metrics;
pub mod models;
pub mod mqtt;
pub mod npy;
pub mod pipeline;
pub mod queue;
pub mod reload;
pub mod resize;
pub mod rss;
pub mod runner;
pub mod smooth;
pub mod source;
pub mod stage;
pub mod stats;
pub mod telemetry;
pub mod verdict;

#[cfg(test)]
mod floors {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module → the top-level modules its code names as `crate::…`. Comments and
    /// `#[cfg(test)]` modules are left out: a test may exercise a floor with real parts from
    /// above it.
    fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files = vec![src.to_owned()];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
            if module == "lib" || path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("\n#[cfg(test)]\nmod ").next().unwrap();
            let code = code
                .split("\n#[cfg(test)]\npub(crate) mod ")
                .next()
                .unwrap();
            let named = graph.entry(module.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    if !rest[..end].is_empty() && rest[..end] != module {
                        named.insert(rest[..end].to_owned());
                    }
                }
            }
        }
        graph
    }

    /// The modules reachable from `from`, `from` excluded unless it is on a loop.
    fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&String> = graph[from].iter().collect();
        while let Some(module) = next.pop() {
            if seen.insert(module.clone()) {
                next.extend(graph.get(module).into_iter().flatten());
            }
        }
        seen
    }

    #[test]
    fn the_modules_import_each_other_in_no_loop() {
        let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        assert!(graph.len() > 20, "{graph:?}");
        let loops: Vec<String> = graph
            .keys()
            .filter_map(|module| {
                let reach = reachable(&graph, module);
                let back: Vec<&str> = reach
                    .iter()
                    .filter(|other| *other != module && reachable(&graph, other).contains(module))
                    .map(String::as_str)
                    .collect();
                (!back.is_empty()).then(|| format!("{module} ⇄ {}", back.join(", ")))
            })
            .collect();
        assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
    }
}
