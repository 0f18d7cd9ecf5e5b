#!/usr/bin/env bash
# docs/results.md's tables, in one sitting: `scened eval` of the six shipped models on eval/photos,
# then tract against LiteRT-XNNPACK on the same files, one thread, back to back
# (compare_runtimes.py). Release build; PYTHON is the recipe's venv (requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-/opt/scened-venv/bin/python}
cargo build --release -q
MODELS=(models/{mobilenet_v2_twin,efficientnet_lite0,efficientnet_lite2}.{fp32,int8}.tflite)
target/release/scened eval --data eval/photos --threads 1 $(printf -- '--model %s ' "${MODELS[@]}")
echo
"$PYTHON" models/recipe/compare_runtimes.py --threads 1 --runs 40 "${MODELS[@]}"
