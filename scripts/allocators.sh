#!/usr/bin/env bash
# scened's allocator set-up (glibc with one arena and no tcache, set by re-executing itself, and
# aligned blocks carved from malloc: pipeline/src/allocator.rs, installed by src/main.rs) against mimalloc and jemalloc through their
# crates.io crates, each as the global allocator with no re-execution. Builds the two variants
# by editing src/main.rs and Cargo.toml in place (restored on exit; the pipeline crate is not
# rebuilt), then for fp32 and int8 Lite0, ROUNDS times in turn: peak RSS of `scened run` on the
# synthetic source (150 frames, telemetry on, as scripts/peak_rss.sh) and the fps of `scened
# bench --fps 0 --frames 300`. One line per run.
#
#   scripts/allocators.sh [ROUNDS]      (default 3; run from a clean tree, machine otherwise idle)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=$(mktemp -d)
cp src/main.rs Cargo.toml Cargo.lock "$out/"
trap 'cp "$out/main.rs" src/main.rs; cp "$out/Cargo.toml" "$out/Cargo.lock" .' EXIT
cargo build --release --quiet --bin scened
cp target/release/scened "$out/scened-glibc"
for variant in "mimalloc:mimalloc = \"0.1.52\":mimalloc::MiMalloc" \
    "jemalloc:tikv-jemallocator = \"0.7.0\":tikv_jemallocator::Jemalloc"; do
    IFS=: read -r name dep alloc <<< "$variant"
    cp "$out/main.rs" src/main.rs; cp "$out/Cargo.toml" "$out/Cargo.lock" .
    sed -i "s|^\[dependencies\]|[dependencies]\n$dep|" Cargo.toml
    sed -i "s|^static ALLOCATOR: alloc::Allocator = alloc::Allocator;|static ALLOCATOR: $alloc = $alloc;|; s|^    alloc::tune();||" src/main.rs
    cargo build --release --quiet --bin scened 2>/dev/null
    cp target/release/scened "$out/scened-$name"
done
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for round in $(seq "$rounds"); do
    for name in glibc mimalloc jemalloc; do
        for model in efficientnet_lite0.fp32 efficientnet_lite0.int8; do
            bin="$out/scened-$name"
            peak=$("$bin" run --source synthetic --frames 150 --listen 127.0.0.1:0 \
                --model "models/$model.tflite" 2>&1 >/dev/null | sed -n 's/^peak RSS \([0-9.]*\) MiB$/\1/p')
            fps=$("$bin" bench --source synthetic --fps 0 --frames 300 --no-telemetry --json \
                --model "models/$model.tflite" 2>/dev/null |
                python3 -c 'import json,sys; print(round(json.load(sys.stdin)["fps"], 1))')
            echo "round $round  $name  $model  peak RSS $peak MiB  bench $fps fps"
        done
    done
done
