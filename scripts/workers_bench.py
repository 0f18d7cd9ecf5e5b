#!/usr/bin/env python3
"""What several inference workers gain: 1 against 2 workers (or more), same sitting.

For each model, runs `scened bench --config config/benchmark.toml` (blocking queues, the demo
clip looped) with each worker count in turn, round after round, so every count sees the same
machine load: as fast as the pipeline takes the clip (`--fps 0`) for throughput, and at the
config's 30 fps for capture-to-label latency. Prints the medians, the throughput ratio against
one worker and its ceiling on this machine's cores: with i the inference time per frame and o
the other stages' (capture with decode, resize, smooth; one worker, as fast as possible),
N workers on C cores take at most min(N, C·i/(i+o)) frames per inference time, i.e. a ratio of
2i/(i+o) for 2 workers on 2 cores.

That ceiling assumes the cores are there to be had. On a shared machine they may not be, so
each round also times `scened models bench` (inference alone) once on its own and as two
copies at once: N copies at once over one alone, N × t(one) / t(N at once), is how many
inferences the machine ran side by side in that sitting, the ceiling it actually offered.

    cargo build --release && scripts/workers_bench.py [--rounds 3] [--seconds 20] [--workers 1 2]
"""
import argparse
import json
import os
import statistics
import subprocess

BIN = "target/release/scened"
MODELS = ["models/efficientnet_lite0.fp32.tflite", "models/efficientnet_lite0.int8.tflite"]


def bench(model: str, workers: int, fps: str, seconds: float) -> dict:
    args = [BIN, "bench", "--config", "config/benchmark.toml", "--no-telemetry", "--json",
            "--model", model, "--workers", str(workers), "--fps", fps,
            "--duration", str(seconds)]
    out = subprocess.run(args, capture_output=True, text=True)
    # A missed [bench] threshold exits 1 with the summary printed: the numbers still count.
    if not out.stdout.strip():
        raise SystemExit(f"{' '.join(args)}: {out.stderr}")
    summary = json.loads(out.stdout)
    assert summary["setup"]["workers"] == workers, summary["setup"]
    p50 = {stage["name"]: stage["p50_ms"] for stage in summary["stages"]}
    return {
        "fps": summary["fps"],
        "infer": p50["infer"],
        "other": p50["capture"] + p50["resize"] + p50["smooth"],
        "e2e": summary["e2e_p50_ms"],
    }


def side_by_side(model: str, copies: int) -> float:
    """Median inference ms of `copies` `models bench` runs started together, averaged."""
    args = [BIN, "models", "bench", model, "--runs", "60",
            "--image", "tests/data/photos/full/coffee.jpg"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(copies)]
    return statistics.mean(json.loads(p.communicate()[0])["median_ms"] for p in procs)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=MODELS)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores; load average (1, 5, 15 min) at start {loadavg()}")
    runs = {}
    offered = {}
    for _ in range(a.rounds):
        for model in a.models:
            for workers in a.workers[1:]:
                alone, together = side_by_side(model, 1), side_by_side(model, workers)
                offered.setdefault((model, workers), []).append(workers * alone / together)
            for pace in ["0", "30"]:
                for workers in a.workers:
                    run = bench(model, workers, pace, a.seconds)
                    runs.setdefault((model, pace, workers), []).append(run)
    print(f"load average at the end {loadavg()}; {a.rounds} rounds of {a.seconds:.0f} s runs")
    med = lambda model, pace, workers, key: statistics.median(
        run[key] for run in runs[(model, pace, workers)])
    print(f"{'model':<32} {'pace':>6} {'workers':>7} {'fps':>7} {'infer p50':>9} "
          f"{'other p50':>9} {'e2e p50':>9}   (medians; ms)")
    for model in a.models:
        for pace in ["0", "30"]:
            for workers in a.workers:
                name = os.path.basename(model)
                m = lambda key: med(model, pace, workers, key)
                print(f"{name:<32} {'max' if pace == '0' else pace + ' fps':>6} {workers:>7} "
                      f"{m('fps'):7.1f} {m('infer'):9.2f} {m('other'):9.2f} {m('e2e'):9.2f}")
    cores = os.cpu_count()
    for model in a.models:
        one = med(model, "0", a.workers[0], "fps")
        i, o = med(model, "0", a.workers[0], "infer"), med(model, "0", a.workers[0], "other")
        for workers in a.workers[1:]:
            ratio = med(model, "0", workers, "fps") / one
            ceiling = min(workers, cores * i / (i + o))
            print(f"{os.path.basename(model)}: {workers} workers / {a.workers[0]} = {ratio:.2f}x "
                  f"as fast as possible (ceiling min(N, C*i/(i+o)) = {ceiling:.2f}, "
                  f"i = {i:.2f} ms, o = {o:.2f} ms; {workers} inferences side by side "
                  f"ran {statistics.median(offered[(model, workers)]):.2f}x one alone); "
                  f"capture-to-label p50 at 30 fps "
                  f"{med(model, '30', a.workers[0], 'e2e'):.2f} -> "
                  f"{med(model, '30', workers, 'e2e'):.2f} ms")


if __name__ == "__main__":
    main()
