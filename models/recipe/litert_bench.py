#!/usr/bin/env python3
"""Time LiteRT (ai-edge-litert) on .tflite files.

    litert_bench.py models/*.tflite [--runs 50] [--warmup 5] [--threads 1 2] [--markdown]

For each model: XNNPACK (the default delegate) at each thread count, then the
builtin kernels with XNNPACK off (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
at the same thread counts.  The input is a committed test photo at the model's
size, prepared exactly as the goldens are.  Only invoke() is timed.  Prints one
JSON line per configuration, then a markdown table with --markdown.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import golden  # noqa: E402

ROOT = HERE.parent.parent
MEAN, STD = [127.0] * 3, [128.0] * 3


def bench(path, runtime, threads, photo, runs, warmup):
    it = golden.interpreter(path, threads=threads, kernels=runtime.removeprefix("litert-"))
    inp = it.get_input_details()[0]
    size = int(inp["shape"][1])
    rgb = np.asarray(Image.open(ROOT / "tests/data/photos" / str(size) / f"{photo}.png").convert("RGB"))
    it.set_tensor(inp["index"], golden.model_input(rgb, MEAN, STD, inp))
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {
        "model": pathlib.Path(path).name,
        "runtime": runtime,
        "threads": threads,
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[min(len(times) - 1, int(np.ceil(0.9 * len(times))) - 1)], 3),
        "runs": runs,
    }


def main():
    ap = argparse.ArgumentParser(description="LiteRT latency benchmark")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--photo", default="chelsea", help="tests/data/photos/<size>/<photo>.png")
    ap.add_argument("--no-builtin", action="store_true", help="XNNPACK only")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    runtimes = ["litert-xnnpack"] + ([] if args.no_builtin else ["litert-builtin"])
    rows = []
    for path in args.models:
        for runtime in runtimes:
            for threads in args.threads:
                row = bench(path, runtime, threads, args.photo, args.runs, args.warmup)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.markdown:
        print()
        print("| model | runtime | threads | median ms | p90 ms | runs |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['runs']} |")


if __name__ == "__main__":
    main()
