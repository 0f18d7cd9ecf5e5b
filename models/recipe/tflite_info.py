"""Read the operator list of a .tflite flatbuffer (no interpreter involved)."""
import collections

from ai_edge_litert import schema_py_generated as schema

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

# The only builtin ops the Rust engine (tract-tflite) is expected to see.
ALLOWED_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX",
    "PAD", "MUL", "SUB",
}


def op_counts(path_or_bytes):
    """Ordered {op name: count} over all subgraphs, in first-use order."""
    buf = path_or_bytes
    if not isinstance(buf, (bytes, bytearray)):
        with open(buf, "rb") as f:
            buf = f.read()
    model = schema.Model.GetRootAs(buf, 0)
    counts = collections.OrderedDict()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            code = model.OperatorCodes(sg.Operators(i).OpcodeIndex())
            # builtin_code supersedes the deprecated int8 field (max of the two, per schema docs)
            b = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = _OP_NAMES.get(b, f"BUILTIN_{b}")
            if name == "CUSTOM":
                name = "CUSTOM:" + code.CustomCode().decode()
            counts[name] = counts.get(name, 0) + 1
    return counts


def check_ops(counts, what):
    bad = set(counts) - ALLOWED_OPS
    if bad:
        raise RuntimeError(f"{what}: ops outside the allowed set: {sorted(bad)}")
