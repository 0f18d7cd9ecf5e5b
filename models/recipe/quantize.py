"""The full-integer conversion every committed int8 model is made with, in one place.

export.py (the shipped models) and int8_ops.py (the single-op models that judge scened's int8
kernels) must convert the same way, or the op models would judge kernels for a different
quantization than the shipped models use.
"""


def full_int8(converter, representative):
    """Sets `converter` (a tf.lite.TFLiteConverter) to full-integer int8: int8 in and out,
    per-channel int8 weights (the converter's default), activations calibrated on
    `representative` (a function yielding lists of float32 inputs); returns it."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter
