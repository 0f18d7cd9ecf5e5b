#!/usr/bin/env python3
"""What instrumentation costs a frame: the pipeline with telemetry on vs off, same sitting.

Runs `scened run --config config/benchmark.toml --fps 0` (blocking queues, the demo clip looped
as fast as the pipeline takes it) alternately with telemetry on and `--no-telemetry`, so both
see the same machine load, and prints the median throughput and CPU time per frame of each and
their ratio. While telemetry is on, /metrics is scraped every second, as Prometheus would.

    cargo build --release && scripts/telemetry_cost.py [--pairs 8] [--seconds 6]
"""
import argparse
import re
import resource
import statistics
import subprocess
import threading
import time
import urllib.request

BIN = "target/release/scened"


def run(telemetry: bool, seconds: float):
    args = [BIN, "run", "--config", "config/benchmark.toml", "--fps", "0",
            "--duration", str(seconds)]
    args += ["--listen", "127.0.0.1:0"] if telemetry else ["--no-telemetry"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    scraper = None
    stop = threading.Event()
    for line in proc.stderr:
        lines.append(line)
        m = re.search(r"http://(\S+)", line)
        if m:
            def scrape(addr=m.group(1)):
                while not stop.wait(1.0):
                    try:
                        urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read()
                    except OSError:
                        pass
            scraper = threading.Thread(target=scrape, daemon=True)
            scraper.start()
    proc.wait()
    stop.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = "".join(lines)
    smooth = next(l for l in lines if l.startswith("smooth"))
    frames, fps = int(smooth.split()[2]), float(smooth.split()[4])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, report
    return fps, cpu / frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args()
    on, off = [], []
    for _ in range(a.pairs):
        on.append(run(True, a.seconds))
        off.append(run(False, a.seconds))
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"pairs {a.pairs} x {a.seconds} s, load average {load}")
    print(f"telemetry on : {med(on, 0):6.1f} fps, {med(on, 1) * 1e3:6.2f} ms CPU per frame")
    print(f"telemetry off: {med(off, 0):6.1f} fps, {med(off, 1) * 1e3:6.2f} ms CPU per frame")
    print(f"on/off: fps {med(on, 0) / med(off, 0):.3f}, CPU per frame {med(on, 1) / med(off, 1):.3f}")


if __name__ == "__main__":
    main()
