#!/usr/bin/env python3
"""What the live view costs: the pipeline with 0 and with N viewers on /stream.mjpeg, same sitting.

Runs `scened bench --json` on a synthetic 1280x720 source paced at 30 fps (the live defaults:
drop-oldest queues in front of inference) alternately with no viewer and with N viewers reading
/stream.mjpeg as fast as it comes, so both see the same machine load. Prints the medians of the
labelled fps, the capture-to-label p50, the CPU time per second and the peak RSS of each, the
with/without ratios, and what one viewer costs in CPU and resident memory.

    cargo build --release && scripts/live_view_cost.py [--pairs 6] [--seconds 20] [--viewers 3]
"""
import argparse
import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
import threading
import urllib.request

BIN = "target/release/scened"
CONFIG = """
[source]
kind = "synthetic"
width = 1280
height = 720
fps = 30.0

[telemetry]
listen = "127.0.0.1:0"

# Measure, never judge.
[bench]
min_fps = 0.01
max_p99_ms = 1e9
max_deadline_miss_ratio = 1.0
max_drop_ratio = 1.0
max_rss_slope_mb_per_h = 1e12
max_p99_drift = 1e12
"""


def watch(addr: str, stop: threading.Event, parts: list):
    """One viewer: reads the stream as fast as it comes until `stop`, counting bytes."""
    with urllib.request.urlopen(f"http://{addr}/stream.mjpeg", timeout=10) as stream:
        while not stop.is_set():
            try:
                chunk = stream.read(1 << 16)
            except http.client.IncompleteRead:
                break  # the run ended: scened closed the stream mid-chunk
            if not chunk:
                break
            parts.append(len(chunk))


def run(config: str, seconds: float, viewers: int):
    args = [BIN, "bench", "--json", "--config", config, "--duration", str(seconds)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    threads, received = [], []
    for line in proc.stderr:
        m = re.search(r"http://(\S+)", line)
        if m:
            for _ in range(viewers):
                t = threading.Thread(target=watch, args=(m.group(1), stop, received), daemon=True)
                t.start()
                threads.append(t)
            break
    out, err = proc.communicate()
    stop.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert viewers == 0 or sum(received) > 0, "the viewers got nothing"
    return {
        "fps": summary["fps"],
        "p50_ms": summary["e2e_p50_ms"],
        "cpu_per_s": cpu / summary["seconds"],
        "rss_mb": summary["rss_peak_mb"],
        "viewer_mb_per_s": sum(received) / 2**20 / summary["seconds"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--viewers", type=int, default=3)
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(CONFIG)
    without, with_ = [], []
    try:
        for _ in range(a.pairs):
            without.append(run(f.name, a.seconds, 0))
            with_.append(run(f.name, a.seconds, a.viewers))
    finally:
        os.unlink(f.name)
    med = lambda runs, key: statistics.median(r[key] for r in runs)
    load = os.getloadavg()[0]
    n = a.viewers
    print(f"pairs {a.pairs} x {a.seconds} s, synthetic 1280x720 at 30 fps, load average {load:.2f}")
    for name, runs in [("0 viewers", without), (f"{n} viewers", with_)]:
        print(f"{name:>9}: {med(runs, 'fps'):5.1f} fps, p50 {med(runs, 'p50_ms'):6.1f} ms, "
              f"CPU {med(runs, 'cpu_per_s'):.3f} s/s, peak RSS {med(runs, 'rss_mb'):6.1f} MiB")
    print(f"{n} viewers / 0: fps {med(with_, 'fps') / med(without, 'fps'):.3f}, "
          f"p50 {med(with_, 'p50_ms') / med(without, 'p50_ms'):.3f}")
    # The viewers share one encoder: the first pays for it, the others only for sending.
    cpu = med(with_, "cpu_per_s") - med(without, "cpu_per_s")
    rss = med(with_, "rss_mb") - med(without, "rss_mb")
    print(f"{n} viewers cost: CPU {cpu * 100:+.1f} % of a core ({cpu * 100 / n:+.1f} % each), "
          f"RSS {rss:+.1f} MiB ({rss / n:+.1f} MiB each); "
          f"each got {med(with_, 'viewer_mb_per_s') / n:.2f} MiB/s of JPEG")


if __name__ == "__main__":
    main()
