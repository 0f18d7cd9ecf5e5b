#!/usr/bin/env bash
# The tests whose answers depend on the CPU's arithmetic, built for arm64 Linux and run under
# qemu-aarch64 (`-cpu max`: NEON, dot product, fp16): tract's arm64 float kernels and scened's
# arm64 int8 path against LiteRT's outputs, every int8 kernel bit for bit, and the Mac camera's
# portable decisions (docs/macos.md#what-was-checked-where). The nearest this machine comes to
# an Apple Silicon Mac: the same instruction set and kernels, not macOS.
#
#   scripts/arm64_numerics.sh
#
# Only the library-level tests: an integration test that runs the scened binary would need
# binfmt_misc to run an arm64 executable. Needs the Rust target and a cross toolchain:
#   rustup target add aarch64-unknown-linux-gnu
#   apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user
# About 20 minutes to build and 5 to run on 2 cores; not part of .ci/run for that reason.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || {
    echo "arm64_numerics: rustup target add aarch64-unknown-linux-gnu" >&2
    exit 1
}
for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-aarch64; do
    command -v "$tool" >/dev/null || {
        echo "arm64_numerics: $tool missing: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user" >&2
        exit 1
    }
done
export CARGO_TARGET_DIR="$PWD/target/arm64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# nokhwa's V4L bindings are generated from the cross sysroot's headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu"
cargo nextest run --locked --target aarch64-unknown-linux-gnu --workspace --no-fail-fast \
    -E 'test(/^engine::|^int8_ops::|^infer::|^source::camera::/)'
