#!/usr/bin/env python3
"""tract (through scened) against LiteRT-XNNPACK, same files, same threads, same sitting.

    compare_runtimes.py [--scened target/release/scened] [--threads 1 2] [--runs 50] models/*.tflite

For each model and thread count it times LiteRT then scened back to back (interleaved, so drift
on a shared machine hits both alike), and prints a markdown table of medians and the ratio
tract / LiteRT. Both get the same committed photo: LiteRT at the model's size as the goldens
were made, scened from the same PNG (already at size, so not resampled). Only inference is
timed on either side.
"""
import argparse
import json
import pathlib
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--scened", default=str(ROOT / "target/release/scened"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--photo", default="chelsea")
    args = ap.parse_args()

    print("| model | threads | LiteRT-XNNPACK ms | tract ms | tract / LiteRT |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for model in args.models:
        for threads in args.threads:
            ref = litert_bench.bench(model, "litert-xnnpack", threads, args.photo, args.runs, args.warmup)
            got = tract(args.scened, model, threads, args.photo, args.runs, args.warmup)
            ratio = got["median_ms"] / ref["median_ms"]
            name = pathlib.Path(model).name
            print(f"| {name} | {threads} | {ref['median_ms']:.2f} | {got['median_ms']:.2f} | {ratio:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
