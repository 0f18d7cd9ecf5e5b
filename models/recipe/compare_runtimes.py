#!/usr/bin/env python3
"""tract (through scened) against LiteRT-XNNPACK, same files, same threads, same sitting.

    compare_runtimes.py [--scened target/release/scened] [--threads 1 2] [--runs 50]
                        [--rounds 3] models/*.tflite

Each round times every (model, threads) configuration once on LiteRT then once on scened, back
to back, so drift on a shared machine hits both alike; a configuration's figure is the median
over rounds of each run's median. Prints one markdown table per file (tract / LiteRT), then,
for every model given as both `<stem>.fp32.tflite` and `<stem>.int8.tflite`, the ratios the
int8 path is judged by: tract int8 / tract fp32, tract int8 / LiteRT int8, and tract fp32 /
LiteRT fp32; and, when 1 and 2 threads were both timed, the scaling each runtime gets from a
second thread (2-thread time / 1-thread time). Both runtimes get the same committed photo: LiteRT at the model's size as the
goldens were made, scened from the same PNG (already at size, so not resampled). Only
inference is timed on either side.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import litert_bench  # noqa: E402

ROOT = HERE.parent.parent


def tract(scened, model, threads, photo, runs, warmup):
    size = litert_bench.golden.interpreter(model, threads=1).get_input_details()[0]["shape"][1]
    image = ROOT / "tests/data/photos" / str(size) / f"{photo}.png"
    out = subprocess.run(
        [scened, "models", "bench", model, "--threads", str(threads), "--runs", str(runs),
         "--warmup", str(warmup), "--image", str(image)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.splitlines()[0])


def cpu_name():
    """The CPU, as lscpu names it: every figure is quoted beside it."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--scened", default=str(ROOT / "target/release/scened"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--photo", default="chelsea")
    args = ap.parse_args()

    configs = [(m, t) for m in args.models for t in args.threads]
    times = {c: {"litert": [], "tract": []} for c in configs}
    for r in range(args.rounds):
        for model, threads in configs:
            ref = litert_bench.bench(model, "litert-xnnpack", threads, args.photo, args.runs, args.warmup)
            got = tract(args.scened, model, threads, args.photo, args.runs, args.warmup)
            times[(model, threads)]["litert"].append(ref["median_ms"])
            times[(model, threads)]["tract"].append(got["median_ms"])
        print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}",
              file=sys.stderr, flush=True)
    ms = {c: {k: statistics.median(v) for k, v in t.items()} for c, t in times.items()}

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| model | threads | LiteRT-XNNPACK ms | tract ms | tract / LiteRT |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for model, threads in configs:
        m = ms[(model, threads)]
        name = pathlib.Path(model).name
        print(f"| {name} | {threads} | {m['litert']:.2f} | {m['tract']:.2f} | {m['tract'] / m['litert']:.2f}× |")

    if 1 in args.threads and 2 in args.threads:
        print()
        print("| model | tract 2T / 1T | LiteRT 2T / 1T | tract / LiteRT 1T | tract / LiteRT 2T |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for model in args.models:
            one, two = ms[(model, 1)], ms[(model, 2)]
            print(f"| {pathlib.Path(model).name} | {two['tract'] / one['tract']:.2f} | "
                  f"{two['litert'] / one['litert']:.2f} | {one['tract'] / one['litert']:.2f}× | "
                  f"{two['tract'] / two['litert']:.2f}× |")

    by_name = {pathlib.Path(m).name: m for m in args.models}
    pairs = sorted({n.rsplit(".", 2)[0] for n in by_name
                    if n.endswith(".int8.tflite") and n.replace(".int8.", ".fp32.") in by_name})
    if not pairs:
        return
    print()
    print("| model | threads | tract int8 / tract fp32 | tract int8 / LiteRT int8 | tract fp32 / LiteRT fp32 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for stem in pairs:
        for threads in args.threads:
            i8 = ms[(by_name[f"{stem}.int8.tflite"], threads)]
            f32 = ms[(by_name[f"{stem}.fp32.tflite"], threads)]
            print(f"| {stem} | {threads} | {i8['tract'] / f32['tract']:.2f}× | "
                  f"{i8['tract'] / i8['litert']:.2f}× | {f32['tract'] / f32['litert']:.2f}× |")


if __name__ == "__main__":
    main()
