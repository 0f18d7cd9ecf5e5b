#!/usr/bin/env bash
# openh264 against FFmpeg's libavcodec, decoding the same H.264 bitstreams on one thread: the
# stream scripts/rtsp_server.py serves (x264 ultrafast/zerolatency, baseline, 2 Mbit/s, a key
# frame a second, a moving SMPTE pattern), 300 frames each at 640x480, 1280x720 and 1920x1080.
# openh264 is built here from the source the openh264 crate bundles (cargo's registry), with its
# build script's choices on x86-64: nasm assembly (-DUNIX64, X86_ASM) and -O3 C++.
# Prints CPU ms per frame, YUV output (no conversion to RGB), three runs each.
#
# usage: scripts/h264_decoders.sh   (needs g++, nasm, ffmpeg, GStreamer's Python bindings and
# the openh264-sys2 crate fetched: `cargo fetch`)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
SRC="$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src -maxdepth 1 -mindepth 1 -type d -exec sh -c 'ls -d "$1"/openh264-sys2-0.9.9' _ {} \; 2>/dev/null | head -1)/upstream/codec"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
find "$SRC/common" "$SRC/decoder" -name '*.asm' ! -name asm_inc.asm | while read -r f; do
    nasm -f elf64 -DUNIX64 -I"$SRC/common/x86/" -o "asm-$(echo "$f" | md5sum | cut -c1-12).o" "$f"
done
find "$SRC/common" "$SRC/decoder" -name '*.cpp' ! -name DllEntry.cpp | while read -r f; do
    g++ -O3 -fPIC -DX86_ASM -fno-strict-aliasing -I"$SRC/api/wels" -I"$SRC/common/inc" \
        -I"$SRC/decoder/core/inc" -I"$SRC/decoder/plus/inc" -c -o "cpp-$(echo "$f" | md5sum | cut -c1-12).o" "$f"
done
g++ -O3 -I"$SRC/api/wels" "$ROOT/scripts/openh264_decode.cpp" ./*.o -o openh264_decode -lpthread

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for size in 640x480 1280x720 1920x1080; do
    "$PYTHON" "$ROOT/scripts/rtsp_server.py" --write "$size.h264" --frames 300 --size "$size" \
        --pattern "smpte horizontal-speed=4"
    ./openh264_decode "$size.h264"
    for _ in 1 2 3; do
        utime=$(ffmpeg -hide_banner -nostdin -benchmark -threads 1 -i "$size.h264" -f null - 2>&1 \
            | sed -n 's/.*utime=\([0-9.]*\)s.*/\1/p')
        echo "$size.h264 libavcodec ms/frame=$("$PYTHON" -c "print(round($utime * 1000 / 300, 3))")"
    done
done
