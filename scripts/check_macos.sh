#!/usr/bin/env bash
# Type-checks and lints, on Linux, everything scened compiles for macOS: the whole workspace
# for aarch64-apple-darwin, every target (library, binary, unit and integration tests), so
# every `cfg(target_os = "macos")` line is checked (the camera module's macOS branches,
# camera/macos.rs and macos/session.rs, src/main.rs's Info.plist embedding, the tests' macOS branches), with
# Cargo.lock's versions (--locked).
#
# Checking never links, and the Rust side of a crate does not need its C parts, but their build
# scripts run and compile C for the target (mozjpeg, ring, tract's assembly, objc2's exception
# helper), which needs Apple's clang and SDK. So the C compiler and archiver for the target are
# stand-ins that write empty objects and archives: the C is not checked here, only Rust. The
# macOS CI job builds and runs it all for real.
#
# Needs the Rust target: `rustup target add aarch64-apple-darwin` (.ci/setup does it). Its own
# target folder (target/check-macos), so the Linux build is not disturbed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=aarch64-apple-darwin
rustup target list --installed | grep -qx "$TARGET" || {
    echo "check_macos: the $TARGET target is missing: rustup target add $TARGET" >&2
    exit 1
}
STANDIN="$ROOT/target/check-macos/standin"
mkdir -p "$STANDIN"
cat > "$STANDIN/cc" <<'SH'
#!/bin/sh
# Stand-in C compiler: an empty file wherever -o points (preprocessing prints nothing).
out=
while [ $# -gt 0 ]; do
    [ "$1" = -o ] && out=$2
    shift
done
[ -z "$out" ] || : > "$out"
SH
cat > "$STANDIN/ar" <<'SH'
#!/bin/sh
# Stand-in archiver: an empty archive for each .a named.
for arg in "$@"; do
    case $arg in *.a) [ -f "$arg" ] || printf '!<arch>\n' > "$arg" ;; esac
done
SH
# libproc (metrics-process's macOS side) generates its bindings from the SDK's <libproc.h> in a
# build script that, run on Linux, generates nothing; it ships the same bindings for docs.rs,
# used under `--cfg docsrs`, which this wrapper gives that one crate.
cat > "$STANDIN/rustc" <<'SH'
#!/bin/sh
case " $* " in
    *" --crate-name libproc "*) exec "$@" --cfg docsrs ;;
    *) exec "$@" ;;
esac
SH
chmod +x "$STANDIN/cc" "$STANDIN/ar" "$STANDIN/rustc"
cd "$ROOT"
# SDKROOT: the C builds would otherwise ask `xcrun` where the SDK is.
env CC_aarch64_apple_darwin="$STANDIN/cc" CXX_aarch64_apple_darwin="$STANDIN/cc" \
    AR_aarch64_apple_darwin="$STANDIN/ar" SDKROOT=/nonexistent RUSTC_WRAPPER="$STANDIN/rustc" \
    CARGO_TARGET_DIR="$ROOT/target/check-macos" \
    cargo clippy --quiet --locked --target "$TARGET" --workspace --all-targets -- -D warnings
echo "check_macos: the workspace type-checks and lints clean for $TARGET"
