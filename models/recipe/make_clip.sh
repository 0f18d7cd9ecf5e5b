#!/usr/bin/env bash
# Demo clip for the live pipeline: raw MJPEG (JPEG frames back to back, no
# container), 640x480 @ 15 fps; each photo is held for FRAMES frames with a
# slow centred zoom so a classifier sees a stable scene per segment.
#
#   make_clip.sh OUT.mjpeg FRAMES QSCALE PHOTO1 PHOTO2 ...
#
# QSCALE is ffmpeg's -q:v (2 = best, 31 = worst).
#
# Photos are first scaled/cropped to 4:3 at 3x the output size, so zoompan's
# integer source offsets do not make the zoom jitter.
set -euo pipefail
out=$1; frames=$2; qscale=$3; shift 3
n=$#
inputs=()
filters=""
i=0
for photo in "$@"; do
  inputs+=(-i "$photo")
  filters+="[$i:v]format=rgb24,scale=1920:1440:force_original_aspect_ratio=increase:flags=bicubic,crop=1920:1440,"
  filters+="zoompan=z='1+0.003*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=$frames:s=640x480:fps=15,setsar=1[v$i];"
  i=$((i + 1))
done
for ((j = 0; j < n; j++)); do filters+="[v$j]"; done
filters+="concat=n=$n:v=1:a=0,format=yuvj420p[out]"

# -bitexact keeps encoder version strings out of the frames (reproducible bytes).
ffmpeg -nostdin -hide_banner -loglevel error -y "${inputs[@]}" \
  -filter_complex "$filters" -map "[out]" \
  -fflags +bitexact -flags:v +bitexact -c:v mjpeg -q:v "$qscale" -f mjpeg "$out"
