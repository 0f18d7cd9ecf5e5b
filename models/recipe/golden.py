"""Input tensors exactly as the Rust side must build them, and LiteRT runs."""
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def normalize(rgb_u8, mean, std):
    """float32 NHWC [1,H,W,3]: (x - mean) / std, each step in float32."""
    x = rgb_u8.astype(np.float32)
    return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32))[None]


def round_half_away_from_zero(v):
    """Round a float32 array half away from zero (Rust's f32::round).

    Done in float64, where |v| + 0.5 is exact for every float32 v, so values
    just below .5 are not pushed over by the addition."""
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize(x_f32, scale, zero_point):
    """q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127).

    x / scale is an IEEE float32 division (scale as stored in the model, f32)."""
    v = (x_f32.astype(np.float32) / np.float32(scale)).astype(np.float32)
    q = round_half_away_from_zero(v) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def model_input(rgb_u8, mean, std, input_detail):
    x = normalize(rgb_u8, mean, std)
    if input_detail["dtype"] == np.int8:
        scale, zp = input_detail["quantization"]
        return quantize(x, scale, zp)
    assert input_detail["dtype"] == np.float32
    return x


# LiteRT's three kernel sets. They disagree on int8 models (different rounding in places), so
# another runtime is judged against all three.
KERNELS = {
    "xnnpack": OpResolverType.AUTO,  # the default: XNNPACK delegate, builtin kernels for the rest
    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,  # builtin optimized kernels
    "reference": OpResolverType.BUILTIN_REF,  # builtin reference kernels
}


def interpreter(path, threads=1, kernels="xnnpack"):
    it = Interpreter(model_path=str(path), num_threads=threads,
                     experimental_op_resolver_type=KERNELS[kernels])
    it.allocate_tensors()
    return it


def run(it, *xs):
    """Sets each input in order, invokes, returns a copy of the first output."""
    for detail, x in zip(it.get_input_details(), xs):
        it.set_tensor(detail["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def dequantize(y, output_detail):
    if output_detail["dtype"] == np.int8:
        scale, zp = output_detail["quantization"]
        return (y.astype(np.float64) - zp) * scale
    return y.astype(np.float64)


def top_k(probs, k=5):
    """Indices by descending value; ties go to the lower class index."""
    p = np.asarray(probs).reshape(-1)
    order = np.lexsort((np.arange(p.size), -p))
    return [int(i) for i in order[:k]]
