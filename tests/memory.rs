//! Peak memory of `scened run` as users run it (issue #11): fp32 EfficientNet-Lite0 in 64 MiB
//! for the whole run, model load included. Memory, unlike time, is deterministic enough for a
//! bound in a test; `scripts/peak_rss.sh` measures every shipped model (docs/memory.md).

use crate::run::LITE0;
use crate::util::*;

/// The promise. Measured here with the machine loaded: 52–55 MiB for the release build
/// (docs/memory.md), 57–58 MiB for the test build this runs (unoptimized code is larger). The
/// bound fails a load that holds a third copy of the weights (+18 MiB) or an allocator left at
/// glibc's defaults (+20 to 40 MiB).
const LIMIT_MIB: f64 = 64.0;

#[test]
fn fp32_lite0_runs_within_its_memory_limit() {
    let model = model(LITE0);
    let out = scened(&[
        "run",
        "--source",
        "synthetic",
        "--frames",
        "60",
        "--model",
        arg(&model),
    ]);
    let report = stderr(&out);
    assert!(out.status.success(), "{report}");
    let peak: f64 = report
        .lines()
        .find_map(|line| line.strip_prefix("peak RSS ")?.strip_suffix(" MiB"))
        .unwrap_or_else(|| panic!("no peak RSS in:\n{report}"))
        .parse()
        .unwrap();
    assert!(
        peak <= LIMIT_MIB,
        "peak RSS {peak} MiB over {LIMIT_MIB} MiB"
    );
}
