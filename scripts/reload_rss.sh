#!/usr/bin/env bash
# Resident memory around a model swap by reload (docs/memory.md#a-model-swap): `scened run` on
# the synthetic source at 15 fps with model A, then its config rewritten to model B and SIGHUP;
# the old model is dropped once the workers have taken the new one, so both are resident only
# for a moment. Reads /proc/PID/status: VmRSS before the swap, VmHWM (the process's peak) after
# it, VmRSS once it settled; and, for scale, model B's own run from the start.
#
#   scripts/reload_rss.sh [A B [SWAPS]]   defaults: efficientnet_lite0.int8 → …lite2.int8, 0
#
# With SWAPS, then SWAPS more swaps B → A → B …, 5 s apart, each line the RSS and peak after it.
#
# Uses target/release/scened (built first if missing). SCENED_BIN overrides the binary. Linux
# only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:-efficientnet_lite0.int8}
b=${2:-efficientnet_lite2.int8}
swaps=${3:-0}
bin=${SCENED_BIN:-target/release/scened}
[[ -x $bin ]] || cargo build --release --quiet
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
config() { printf '[source]\nkind = "synthetic"\nfps = 15.0\n\n[infer]\nmodel = "%s"\n' \
    "$PWD/models/$1.tflite" > "$dir/run.toml"; }
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$pid/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

config "$a"
"$bin" run --config "$dir/run.toml" --no-telemetry > "$dir/events" 2>/dev/null &
pid=$!
sleep 8
before=$(kib VmRSS) peak_before=$(kib VmHWM)
config "$b"
kill -HUP "$pid"
sleep 8
grep -q '"event":"reloaded"' "$dir/events" || { echo "error: no reloaded event" >&2; exit 1; }
peak=$(kib VmHWM) after=$(kib VmRSS)
model=$b
for i in $(seq "$swaps"); do
    [[ $model == "$a" ]] && model=$b || model=$a
    config "$model"
    kill -HUP "$pid"
    sleep 5
    echo "swap $i to $model: RSS $(mib "$(kib VmRSS)") MiB, peak $(mib "$(kib VmHWM)") MiB"
done
kill -INT "$pid"; wait "$pid"

config "$b"
"$bin" run --config "$dir/run.toml" --no-telemetry > /dev/null 2>&1 &
pid=$!
sleep 8
alone=$(kib VmHWM)
kill -INT "$pid"; wait "$pid"

echo "| swap | RSS before | peak before | peak with the swap | RSS after | $b alone, peak |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| $a → $b | $(mib "$before") | $(mib "$peak_before") | $(mib "$peak") | $(mib "$after") | $(mib "$alone") |"
