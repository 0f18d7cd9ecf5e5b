"""TensorFlow graphs for the shipped classifiers.

Every model ends in the same head, chosen for the Rust engine (tract-tflite):
  AVERAGE_POOL_2D over the whole feature map  (not MEAN: tract mis-computes it)
  1x1 CONV_2D with bias as the classifier     (not FULLY_CONNECTED on 4-D input)
  RESHAPE to [1, 1000], SOFTMAX.
"""
import math

import numpy as np
import tensorflow as tf

NUM_CLASSES = 1000

# --------------------------------------------------------------------------
# EfficientNet-Lite, ported from the efficientnet-lite-pytorch description
# (itself a port of tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py)
# --------------------------------------------------------------------------

# (repeats, kernel, stride, expand_ratio, in_filters, out_filters); no SE, id_skip on.
_LITE_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

# name -> (width_coefficient, depth_coefficient, resolution)
LITE_PARAMS = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite2": (1.1, 1.2, 260),
}

_BN_EPS = 1e-3  # batch_norm_epsilon of the Lite builder


def _round_filters(filters, width, divisor=8):
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:  # never round down by more than 10%
        new += divisor
    return int(new)


def _round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


def lite_block_specs(name):
    """Expanded per-block list: (kernel, stride, expand, in_f, out_f)."""
    width, depth, _ = LITE_PARAMS[name]
    specs = []
    last = len(_LITE_BLOCKS) - 1
    for i, (r, k, s, e, fin, fout) in enumerate(_LITE_BLOCKS):
        fin, fout = _round_filters(fin, width), _round_filters(fout, width)
        # Lite variants keep the stem (32 ch) and the first/last stage repeats fixed.
        if i == 0:
            fin = 32
        if i not in (0, last):
            r = _round_repeats(r, depth)
        for j in range(r):
            specs.append((k, s if j == 0 else 1, e, fin if j == 0 else fout, fout))
    return specs


def _fold_bn(sd, bn):
    """BatchNorm (inference) as per-channel scale and bias."""
    gamma, beta = sd[bn + ".weight"], sd[bn + ".bias"]
    mean, var = sd[bn + ".running_mean"], sd[bn + ".running_var"]
    scale = gamma / np.sqrt(var.astype(np.float64) + _BN_EPS)
    return scale, beta - mean * scale


def _conv_bn(sd, conv, bn):
    """Torch conv weight (O,I,kh,kw) + BN -> TF kernel (kh,kw,I,O) and bias, float32."""
    w = sd[conv + ".weight"].astype(np.float64)
    scale, bias = _fold_bn(sd, bn)
    w = w * scale[:, None, None, None]
    return w.transpose(2, 3, 1, 0).astype(np.float32), bias.astype(np.float32)


def _dw_bn(sd, conv, bn):
    """Torch depthwise weight (C,1,kh,kw) + BN -> TF depthwise kernel (kh,kw,C,1)."""
    w = sd[conv + ".weight"].astype(np.float64)
    scale, bias = _fold_bn(sd, bn)
    w = w * scale[:, None, None, None]
    return w.transpose(2, 3, 0, 1).astype(np.float32), bias.astype(np.float32)


def _conv(x, w, b, stride=1, relu6=True):
    # SAME padding: TF's rule (extra pad bottom/right) is exactly the static
    # padding the PyTorch port computes, so no explicit PAD op is needed.
    y = tf.nn.bias_add(tf.nn.conv2d(x, tf.constant(w), stride, "SAME"), tf.constant(b))
    return tf.nn.relu6(y) if relu6 else y


def _dwconv(x, w, b, stride):
    y = tf.nn.depthwise_conv2d(x, tf.constant(w), [1, stride, stride, 1], "SAME")
    return tf.nn.relu6(tf.nn.bias_add(y, tf.constant(b)))


def _classifier_head(x, fc_w, fc_b):
    """Whole-map AVERAGE_POOL_2D + 1x1 CONV_2D classifier + RESHAPE + SOFTMAX."""
    h, w = int(x.shape[1]), int(x.shape[2])
    x = tf.nn.avg_pool2d(x, ksize=[h, w], strides=[1, 1], padding="VALID")
    # fc weight (1000, C) -> 1x1 conv kernel (1, 1, C, 1000)
    k = fc_w.T[None, None, :, :].astype(np.float32)
    x = tf.nn.bias_add(tf.nn.conv2d(x, tf.constant(k), 1, "VALID"), tf.constant(fc_b.astype(np.float32)))
    x = tf.reshape(x, [1, NUM_CLASSES])
    return tf.nn.softmax(x)


def efficientnet_lite_fn(name, sd):
    """Concrete function [1,S,S,3] float32 (normalized) -> [1,1000] softmax.

    Weights are graph constants (BN folded into the convs in float64)."""
    _, _, res = LITE_PARAMS[name]
    specs = lite_block_specs(name)
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    assert n_blocks == len(specs), f"{name}: {n_blocks} blocks in weights, {len(specs)} in spec"

    stem = _conv_bn(sd, "_conv_stem", "_bn0")
    blocks = []
    for i, (k, s, e, fin, fout) in enumerate(specs):
        p = f"_blocks.{i}."
        blk = {"stride": s, "skip": s == 1 and fin == fout}
        if e != 1:
            blk["expand"] = _conv_bn(sd, p + "_expand_conv", p + "_bn0")
        blk["dw"] = _dw_bn(sd, p + "_depthwise_conv", p + "_bn1")
        blk["project"] = _conv_bn(sd, p + "_project_conv", p + "_bn2")
        assert blk["dw"][0].shape[:2] == (k, k), (name, i, blk["dw"][0].shape)
        assert blk["project"][0].shape[2:] == (fin * e, fout), (name, i, blk["project"][0].shape)
        blocks.append(blk)
    head = _conv_bn(sd, "_conv_head", "_bn1")
    fc_w, fc_b = sd["_fc.weight"], sd["_fc.bias"]

    @tf.function(input_signature=[tf.TensorSpec([1, res, res, 3], tf.float32, name="input")])
    def forward(x):
        x = _conv(x, *stem, stride=2)
        for blk in blocks:
            inp = x
            if "expand" in blk:
                x = _conv(x, *blk["expand"])
            x = _dwconv(x, *blk["dw"], blk["stride"])
            x = _conv(x, *blk["project"], relu6=False)
            if blk["skip"]:
                x = x + inp
        x = _conv(x, *head)
        return {"probabilities": _classifier_head(x, fc_w, fc_b)}

    return forward.get_concrete_function()


# --------------------------------------------------------------------------
# MobileNetV2 1.0/224 latency twin (untrained)
# --------------------------------------------------------------------------

def mobilenet_v2_twin_fn(calib_images, seed=20240601):
    """Untrained MobileNetV2 1.0/224 with the shared head.

    Same ops and FLOPs as the real network; its predictions are meaningless.
    calib_images: float32 [N,224,224,3], already normalized.

    With Keras' default init (BN = identity) the activations die out over the
    17 blocks and every photo gives the same flat softmax, which makes a useless
    golden test and a degenerate int8 calibration.  So each BatchNorm's moving
    statistics are set, layer by layer, to the batch statistics of its input
    on the photos (data-dependent init, no training): activations stay O(1)
    and the output depends on the input.  Nothing else is fitted.
    """
    import keras

    keras.utils.set_random_seed(seed)  # deterministic initialisers
    base = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=1.0, include_top=False, weights=None
    )
    x = keras.layers.AveragePooling2D(pool_size=7, name="global_pool")(base.output)
    x = keras.layers.Conv2D(NUM_CLASSES, 1, use_bias=True, name="classifier")(x)
    x = keras.layers.Reshape((NUM_CLASSES,), name="logits")(x)
    x = keras.layers.Softmax(name="probabilities")(x)
    model = keras.Model(base.input, x, name="mobilenet_v2_twin")

    calib = tf.constant(calib_images, tf.float32)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            feats = keras.Model(model.input, layer.input)(calib, training=False)
            mean, var = tf.nn.moments(feats, axes=[0, 1, 2])
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
    # Random logits are tiny, so the softmax is flat and an int8 output (step
    # 1/256) would read -128 everywhere.  Scale the classifier to a logit std
    # of 3 on the photos so the top classes stand out.
    clf = model.get_layer("classifier")
    logits = keras.Model(model.input, clf.output)(calib, training=False)
    clf.kernel.assign(clf.kernel * (3.0 / float(tf.math.reduce_std(logits))))

    @tf.function(input_signature=[tf.TensorSpec([1, 224, 224, 3], tf.float32, name="input")])
    def forward(x):
        return {"probabilities": model(x, training=False)}

    # Freeze: the converter would otherwise keep Keras' resource variables
    # (VAR_HANDLE / READ_VARIABLE ops) instead of constant weights.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(forward.get_concrete_function())
