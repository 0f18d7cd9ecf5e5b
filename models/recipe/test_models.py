"""Tiny models of awkward forms for scened's preparation and refusal tests (tests/data/models/).

Each is a valid TFLite file that scened must either rewrite (with LiteRT's output on a fixed
input saved beside it, to compare) or refuse with a clear reason; weights are random (seeded)
because only the graph's form matters. Run from the repo root:
    /opt/scened-venv/bin/python models/recipe/test_models.py
"""
import os

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

OUT = "tests/data/models"


def convert(model, name):
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(tflite)
    print(name, len(tflite), "bytes")
    return tflite


def golden(tflite, name, int8=False):
    """LiteRT's output on a fixed input: <name>.input.npy / <name>.output.npy. A float model
    gets a smooth ramp on its default kernels; an int8 one a spread of every int8 value on the
    builtin kernels, the ones scened's int8 kernels reproduce."""
    interp = Interpreter(model_content=tflite, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if int8 else OpResolverType.AUTO))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    n = int(np.prod(inp["shape"]))
    if int8:
        x = (np.arange(n) * 37 % 256 - 128).astype(np.int8).reshape(inp["shape"])
    else:
        x = np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape(inp["shape"])
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"])
    stem = os.path.join(OUT, name.removesuffix(".tflite"))
    np.save(stem + ".input.npy", x)
    np.save(stem + ".output.npy", y)


def convert_int8(model, name, float_fallback=False):
    """Full-integer int8 conversion (int8 in and out), calibrated on seeded noise; with
    `float_fallback`, ops without an int8 kernel in TFLite stay float between DEQUANTIZE and
    QUANTIZE."""
    rng = np.random.default_rng(7)
    shape = [d or 1 for d in model.input_shape]

    def representative():
        for _ in range(16):
            yield [rng.uniform(-1, 1, shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
        [tf.lite.OpsSet.TFLITE_BUILTINS] if float_fallback else [])
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tflite = conv.convert()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(tflite)
    print(name, len(tflite), "bytes")
    return tflite


def main():
    os.makedirs(OUT, exist_ok=True)
    tf.keras.utils.set_random_seed(7)
    # Global pooling through GlobalAveragePooling2D lowers to MEAN, which tract rounds.
    x = inp = tf.keras.Input((32, 32, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(10, activation="softmax")(x)
    mean_pool = convert(tf.keras.Model(inp, x), "mean_pool.fp32.tflite")
    golden(mean_pool, "mean_pool.fp32.tflite")
    # MEAN over channels: no pooling op expresses it, so scened must refuse it.
    x = inp = tf.keras.Input((8, 8, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3)(x)
    x = tf.keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=3, keepdims=True))(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(5, activation="softmax")(x)
    convert(tf.keras.Model(inp, x), "mean_channels.fp32.tflite")
    # An op tract-tflite does not implement (CUMSUM).
    x = inp = tf.keras.Input((8, 8, 3), batch_size=1)
    x = tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1))(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(5, activation="softmax")(x)
    convert(tf.keras.Model(inp, x), "cumsum.fp32.tflite")
    # A valid classifier of feature vectors, not images.
    x = inp = tf.keras.Input((16,), batch_size=1)
    x = tf.keras.layers.Dense(4, activation="softmax")(x)
    convert(tf.keras.Model(inp, x), "not_image.fp32.tflite")
    # A user's int8 classifier whose global pooling is MEAN and whose head FULLY_CONNECTED, two
    # ops scened has no int8 kernel for: each runs lowered to float on its own.
    x = inp = tf.keras.Input((16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(10, activation="softmax")(x)
    golden(convert_int8(tf.keras.Model(inp, x), "mean_fc.int8.tflite"), "mean_fc.int8.tflite", int8=True)
    # An int8 model with an op neither scened's kernels nor tract run (CUMSUM, left in float).
    x = inp = tf.keras.Input((8, 8, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1))(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(5, activation="softmax")(x)
    convert_int8(tf.keras.Model(inp, x), "cumsum.int8.tflite", float_fallback=True)
    np.random.seed(7)
    with open(os.path.join(OUT, "random.tflite"), "wb") as f:
        f.write(np.random.bytes(4096))


if __name__ == "__main__":
    main()
