"""Read a legacy (non-zip) PyTorch ``.pth`` state dict with pickle + numpy only.

Why: the recipe must not depend on torch.  The weight packages ship files in
PyTorch's legacy serialization format: five pickles back to back (magic number,
protocol version, sys info, the object tree, the list of storage keys), followed
by the raw storages, each as an int64 element count and then little-endian data.
Tensors in the object tree reference storages by persistent id; we rebuild them
as numpy arrays once the storage bytes have been read.
"""
import collections
import pickle
import struct

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.data = None  # filled after the object pickle


class _LazyTensor:
    """Placeholder for torch._utils._rebuild_tensor_v2 until storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        base = self.storage.data
        item = base.itemsize
        arr = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
        )
        return np.array(arr, copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_args):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_args):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind = pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind!r}")
        storage_type, root_key, _location, numel, view_metadata = pid[1:6]
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if root_key not in self._storages:
            self._storages[root_key] = _Storage(storage_type.dtype, numel)
        return self._storages[root_key]


def load_state_dict(path):
    """Return an OrderedDict name -> numpy array."""
    storages = {}
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch file (magic {magic!r})")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info (endianness, type sizes)
        tree = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != st.numel:
                raise ValueError(f"storage {key}: size {numel} != {st.numel}")
            raw = f.read(numel * st.dtype.itemsize)
            st.data = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<")).astype(st.dtype)
    out = collections.OrderedDict()
    for name, value in tree.items():
        out[name] = value.materialize() if isinstance(value, _LazyTensor) else value
    return out
