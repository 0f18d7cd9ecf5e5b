#!/usr/bin/env bash
# What decoding a network camera costs, per frame, at 640x480, 1280x720 and 1920x1080, 15 fps:
# scened's decode stage (openh264, then the picture to RGB) as `scened bench` reports it for a
# live RTSP stream from GStreamer's server, and FFmpeg's libavcodec decoding the same encoder's
# output from a file on one thread (CPU time over frames), plain and converted to RGB.
# Also MJPEG: scened's JPEG decode of FFmpeg's MJPEG stream at the same sizes.
#
# usage: scripts/decode_bench.sh [SECONDS]   (default 20 per run; needs a release build,
# GStreamer's RTSP server and ffmpeg: .ci/setup installs them)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_EACH="${1:-20}"
SCENED="$ROOT/target/release/scened"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
# Textured and moving, as a camera's picture is; a ball on black would flatter every decoder.
PATTERN="smpte horizontal-speed=4"
TMP="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
calc() { "$PYTHON" -c "print(round($1, 3))"; }

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "size       decoder                          ms/frame   cores at 15 fps"
for size in 640x480 1280x720 1920x1080; do
    port=$(free_port)
    "$PYTHON" "$ROOT/scripts/rtsp_server.py" --port "$port" --size "$size" --pattern "$PATTERN" \
        > "$TMP/server.out" &
    server=$!
    until grep -q ready "$TMP/server.out"; do sleep 0.1; done
    "$SCENED" bench --source "rtsp://127.0.0.1:$port/test" --duration "$SECONDS_EACH" \
        --json --no-telemetry 2>/dev/null > "$TMP/bench.json" || true
    kill "$server"; wait "$server" 2>/dev/null || true
    ms=$(json 'd["decode"]["mean_ms"]' < "$TMP/bench.json")
    printf '%-10s %-32s %8.2f   %6.3f\n' "$size" "openh264 + RGB (scened bench)" "$ms" \
        "$(calc "$ms*15/1000")"

    # The same encoder settings into a file, for FFmpeg to decode.
    frames=$((15 * SECONDS_EACH))
    "$PYTHON" "$ROOT/scripts/rtsp_server.py" --write "$TMP/clip.h264" --frames "$frames" \
        --size "$size" --pattern "$PATTERN"
    for out in "yuv420p:libavcodec (FFmpeg 1 thread)" "rgb24:libavcodec + RGB (swscale)"; do
        pix=${out%%:*}; name=${out#*:}
        utime=$(ffmpeg -hide_banner -nostdin -benchmark -threads 1 -i "$TMP/clip.h264" \
            -pix_fmt "$pix" -f null - 2>&1 | sed -n 's/.*utime=\([0-9.]*\)s.*/\1/p')
        ms=$(calc "$utime*1000/$frames")
        printf '%-10s %-32s %8.2f   %6.3f\n' "$size" "$name" "$ms" "$(calc "$ms*15/1000")"
    done

    # MJPEG at the same size, FFmpeg serving it (one client, then it exits).
    port=$(free_port)
    ffmpeg -hide_banner -nostdin -loglevel error -re -f lavfi -i "testsrc2=size=$size:rate=15" \
        -q:v 5 -f mpjpeg -content_type "multipart/x-mixed-replace;boundary=ffmpeg" \
        -listen 1 "http://127.0.0.1:$port/cam.mjpg" &
    mjpeg=$!
    sleep 2
    "$SCENED" bench --source "http://127.0.0.1:$port/cam.mjpg" --duration "$SECONDS_EACH" \
        --json --no-telemetry 2>/dev/null > "$TMP/bench.json" || true
    kill "$mjpeg" 2>/dev/null; wait "$mjpeg" 2>/dev/null || true
    ms=$(json 'd["decode"]["mean_ms"]' < "$TMP/bench.json")
    printf '%-10s %-32s %8.2f   %6.3f\n' "$size" "JPEG (scened bench, MJPEG)" "$ms" \
        "$(calc "$ms*15/1000")"
done
