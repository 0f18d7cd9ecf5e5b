#!/usr/bin/env bash
# Peak resident memory of `scened run` for each shipped model, as users run it: the synthetic
# source at its default 30 fps, telemetry on (on a free port), the whole run from start to exit,
# model load included (the process's high-water mark, which `scened run` prints as "peak RSS").
#
#   scripts/peak_rss.sh [FRAMES [REPEATS]]     defaults: 150 frames, 3 runs per model
#
# Prints one Markdown table row per model: min, median and max peak RSS over the runs, in MiB.
# Uses target/release/scened (built first if missing). SCENED_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-150}
repeats=${2:-3}
bin=${SCENED_BIN:-target/release/scened}
[[ -x $bin ]] || cargo build --release --quiet

echo "| model | file MiB | peak RSS MiB (min / median / max of $repeats, $frames frames) |"
echo "|---|---:|---:|"
for model in models/*.tflite; do
    peaks=()
    for _ in $(seq "$repeats"); do
        peak=$("$bin" run --source synthetic --frames "$frames" --listen 127.0.0.1:0 \
            --model "$model" 2>&1 >/dev/null | sed -n 's/^peak RSS \([0-9.]*\) MiB$/\1/p')
        [[ -n $peak ]] || { echo "error: no peak RSS from $model" >&2; exit 1; }
        peaks+=("$peak")
    done
    read -r lo mid hi < <(printf '%s\n' "${peaks[@]}" | sort -n | awk '
        { v[NR] = $1 } END { print v[1], v[int((NR + 1) / 2)], v[NR] }')
    # wc, not GNU stat -c: the same on macOS.
    size=$(awk -v b="$(wc -c < "$model")" 'BEGIN { printf "%.1f", b / 1048576 }')
    echo "| $(basename "$model") | $size | $lo / $mid / $hi |"
done
