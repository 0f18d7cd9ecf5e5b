"""Tiny, deliberately unsuitable models for scened's refusal tests (tests/data/models/).

Each is a valid TFLite file that scened must refuse with a clear reason; weights are random
(seeded) because only the graph's form matters. Run from the repo root:
    /opt/scened-venv/bin/python models/recipe/test_models.py
"""
import os

import numpy as np
import tensorflow as tf

OUT = "tests/data/models"


def convert(model, name):
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(tflite)
    print(name, len(tflite), "bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    tf.keras.utils.set_random_seed(7)
    # Global pooling through GlobalAveragePooling2D lowers to MEAN, which tract rounds.
    x = inp = tf.keras.Input((32, 32, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(10, activation="softmax")(x)
    convert(tf.keras.Model(inp, x), "mean_pool.fp32.tflite")
    # A valid classifier of feature vectors, not images.
    x = inp = tf.keras.Input((16,), batch_size=1)
    x = tf.keras.layers.Dense(4, activation="softmax")(x)
    convert(tf.keras.Model(inp, x), "not_image.fp32.tflite")
    np.random.seed(7)
    with open(os.path.join(OUT, "random.tflite"), "wb") as f:
        f.write(np.random.bytes(4096))


if __name__ == "__main__":
    main()
