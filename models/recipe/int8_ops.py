#!/usr/bin/env python3
"""Single-op int8 models and LiteRT's outputs for them, the judge of scened's integer kernels.

Run from the repository root:
    /opt/scened-venv/bin/python models/recipe/int8_ops.py

Writes tests/data/ops/: for each op below, `<op>.tflite` (made by the TF converter exactly as
the shipped int8 models are, by `quantize.full_int8`: full-integer, int8 in and out,
per-channel int8 weights),
`<op>.input<i>.npy` (random int8 inputs, SAMPLES of them stacked on a leading axis) and
`<op>.<kernels>.npy` (LiteRT's output for each sample on each of its three kernel sets:
xnnpack, builtin, reference), plus summary.json (where the kernel sets disagree) and
SHA256SUMS. Then adds `<photo>.output_reference.npy` (builtin reference kernels) beside the
committed goldens of the three int8 models, computed from the committed input tensors.
Everything is seeded; nothing is fetched.
"""
import hashlib
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import golden  # noqa: E402
import quantize  # noqa: E402
import tflite_info  # noqa: E402

ROOT = HERE.parent.parent
OPS_DIR = ROOT / "tests" / "data" / "ops"
GOLDEN_DIR = ROOT / "tests" / "data" / "golden"
INT8_MODELS = ["efficientnet_lite0.int8", "efficientnet_lite2.int8", "mobilenet_v2_twin.int8"]
SEED = 20261129
SAMPLES = 3


def conv(h, w, cin, cout, k, stride, act):
    """CONV_2D, SAME padding, bias, fused activation (ReLU6 or none)."""
    def build(rng):
        kernel = rng.normal(0, 1 / np.sqrt(k * k * cin), (k, k, cin, cout)).astype(np.float32)
        # Per-channel weight ranges that differ widely, as folded batch norm makes them.
        kernel *= rng.uniform(0.2, 3.0, cout).astype(np.float32)
        bias = rng.normal(0, 0.5, cout).astype(np.float32)

        def fn(x):
            import tensorflow as tf
            y = tf.nn.conv2d(x, kernel, strides=stride, padding="SAME") + bias
            return tf.nn.relu6(y) if act == "relu6" else y
        return fn
    return {"inputs": [[1, h, w, cin]], "build": build, "op": "CONV_2D"}


def depthwise(h, w, c, k, stride, act="relu6"):
    """DEPTHWISE_CONV_2D (multiplier 1), SAME padding, bias, fused ReLU6."""
    def build(rng):
        kernel = rng.normal(0, 1 / k, (k, k, c, 1)).astype(np.float32)
        kernel *= rng.uniform(0.2, 3.0, (1, 1, c, 1)).astype(np.float32)
        bias = rng.normal(0, 0.5, c).astype(np.float32)

        def fn(x):
            import tensorflow as tf
            y = tf.nn.depthwise_conv2d(x, kernel, strides=[1, stride, stride, 1],
                                       padding="SAME") + bias
            return tf.nn.relu6(y) if act == "relu6" else y
        return fn
    return {"inputs": [[1, h, w, c]], "build": build, "op": "DEPTHWISE_CONV_2D"}


def add(h, w, c, act=None):
    """ADD of two inputs calibrated on different ranges, so each has its own scale and zero
    point and the output a third."""
    def build(rng):
        def fn(a, b):
            import tensorflow as tf
            y = a + b
            return tf.nn.relu6(y) if act == "relu6" else y
        return fn
    return {"inputs": [[1, h, w, c]] * 2, "ranges": [(-3.0, 5.0), (-1.0, 0.6)],
            "build": build, "op": "ADD"}


def avg_pool(h, w, c, k, stride, padding):
    def build(rng):
        def fn(x):
            import tensorflow as tf
            return tf.nn.avg_pool2d(x, k, stride, padding)
        return fn
    return {"inputs": [[1, h, w, c]], "build": build, "op": "AVERAGE_POOL_2D"}


def softmax(n):
    def build(rng):
        def fn(x):
            import tensorflow as tf
            return tf.nn.softmax(x)
        return fn
    def sample(rng, shape):
        # Logits as a classifier's: most low, a few high, some of those nearly tied, so the
        # probabilities are not all zero.
        x = rng.integers(-128, 0, shape)
        top = rng.choice(shape[-1], 8, replace=False)
        x[..., top] = rng.integers(90, 128, (*shape[:-1], 8))
        return x.astype(np.int8)
    return {"inputs": [[1, n]], "ranges": [(-12.0, 9.0)], "build": build, "op": "SOFTMAX",
            "sample": sample}


# The shapes the shipped int8 models use (1×1 convs, the 3×3 stride-2 stem, depthwise 3×3 and
# 5×5 at stride 1 and 2, residual ADDs, global average pooling, the final SOFTMAX), kept small;
# odd sizes and channel counts that are not multiples of a vector width exercise every tail,
# and odd and even inputs the two ways SAME padding splits at stride 2.
OPS = {
    "conv1x1_relu6": conv(10, 10, 20, 24, 1, 1, "relu6"),
    "conv1x1_linear": conv(7, 9, 40, 36, 1, 1, None),
    "conv1x1_head": conv(1, 1, 96, 100, 1, 1, None),
    "conv3x3_s1_relu6": conv(9, 9, 8, 16, 3, 1, "relu6"),
    "conv3x3_s2_relu6": conv(12, 12, 3, 16, 3, 2, "relu6"),
    "conv3x3_s2_odd_relu6": conv(11, 11, 3, 8, 3, 2, "relu6"),
    "dw3x3_s1_relu6": depthwise(10, 10, 24, 3, 1),
    "dw3x3_s2_relu6": depthwise(12, 12, 24, 3, 2),
    "dw5x5_s1_relu6": depthwise(9, 9, 40, 5, 1),
    "dw5x5_s2_relu6": depthwise(13, 13, 40, 5, 2),
    "dw3x3_s1_linear": depthwise(8, 8, 20, 3, 1, act=None),
    "add": add(6, 6, 24),
    "add_relu6": add(5, 5, 20, act="relu6"),
    "avgpool_global": avg_pool(7, 7, 40, 7, 1, "VALID"),
    "avgpool_3x3_s2_same": avg_pool(9, 9, 16, 3, 2, "SAME"),
    "softmax": softmax(1000),
}


def convert(spec, rng):
    import tensorflow as tf

    fn = spec["build"](rng)
    sig = [tf.TensorSpec(s, tf.float32) for s in spec["inputs"]]
    concrete = tf.function(fn, input_signature=sig).get_concrete_function()
    ranges = spec.get("ranges", [(-4.0, 4.0)] * len(sig))

    def representative():
        for _ in range(32):
            yield [rng.uniform(lo, hi, s).astype(np.float32)
                   for s, (lo, hi) in zip(spec["inputs"], ranges)]

    c = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    return quantize.full_int8(c, representative).convert()


def steps(a, b):
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"max_steps": int(d.max()), "values_differing": int((d > 0).sum()), "values": int(d.size)}


def write_op(name, spec, rng):
    blob = convert(spec, rng)
    ops = dict(tflite_info.op_counts(blob))
    if ops != {spec["op"]: 1}:
        raise RuntimeError(f"{name}: expected one {spec['op']}, the converter wrote {ops}")
    path = OPS_DIR / f"{name}.tflite"
    path.write_bytes(blob)
    its = {k: golden.interpreter(path, kernels=k) for k in golden.KERNELS}
    details = its["xnnpack"].get_input_details()
    sample = spec.get("sample", lambda rng, shape: rng.integers(-128, 128, shape, dtype=np.int8))
    inputs = [sample(rng, (SAMPLES, *d["shape"])) for d in details]
    for i, x in enumerate(inputs):
        np.save(OPS_DIR / f"{name}.input{i}.npy", x)
    outputs = {}
    for kernels, it in its.items():
        ys = np.stack([golden.run(it, *(x[s] for x in inputs)) for s in range(SAMPLES)])
        np.save(OPS_DIR / f"{name}.{kernels}.npy", ys)
        outputs[kernels] = ys
    out = its["xnnpack"].get_output_details()[0]
    return {
        "op": spec["op"],
        "bytes": len(blob),
        "inputs": [{"shape": [int(v) for v in d["shape"]],
                    "scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}
                   for d in details],
        "output": {"shape": [int(v) for v in out["shape"]],
                   "scale": float(out["quantization"][0]), "zero_point": int(out["quantization"][1])},
        "xnnpack_vs_builtin": steps(outputs["xnnpack"], outputs["builtin"]),
        "reference_vs_builtin": steps(outputs["reference"], outputs["builtin"]),
        "xnnpack_vs_reference": steps(outputs["xnnpack"], outputs["reference"]),
    }


def write_model_references():
    """Builtin reference kernels' outputs beside the committed goldens of each int8 model."""
    spreads = {}
    for stem in INT8_MODELS:
        it = golden.interpreter(ROOT / "models" / f"{stem}.tflite", kernels="reference")
        worst = {}
        for x_path in sorted((GOLDEN_DIR / stem).glob("*.input.npy")):
            photo = x_path.name.removesuffix(".input.npy")
            y = golden.run(it, np.load(x_path))
            np.save(GOLDEN_DIR / stem / f"{photo}.output_reference.npy", y)
            xnn = np.load(GOLDEN_DIR / stem / f"{photo}.output.npy")
            builtin = np.load(GOLDEN_DIR / stem / f"{photo}.output_builtin.npy")
            sets = [xnn, builtin, y]
            worst[photo] = max(steps(a, b)["max_steps"] for a in sets for b in sets)
        spreads[stem] = worst
    return spreads


def main():
    OPS_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    summary = {
        "runtime": f"ai-edge-litert {golden_version()}, num_threads=1",
        "kernels": {k: str(v) for k, v in golden.KERNELS.items()},
        "inputs": f"{SAMPLES} samples per input, uniform random int8 (SOFTMAX: a few high"
                  f" logits among low ones), seed {SEED}",
        "ops": {},
    }
    for name, spec in OPS.items():
        summary["ops"][name] = write_op(name, spec, rng)
        s = summary["ops"][name]
        print(f"{name:22s} {s['bytes']:6d} B  xnnpack-builtin {s['xnnpack_vs_builtin']['max_steps']}"
              f"  reference-builtin {s['reference_vs_builtin']['max_steps']}", flush=True)
    summary["model_photo_spread"] = write_model_references()
    (OPS_DIR / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    files = sorted(p for p in OPS_DIR.iterdir() if p.suffix in (".tflite", ".npy"))
    (OPS_DIR / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in files))
    print(json.dumps(summary["model_photo_spread"], indent=1))


def golden_version():
    import importlib.metadata as md
    return md.version("ai-edge-litert")


if __name__ == "__main__":
    main()
