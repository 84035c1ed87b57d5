"""BlobProto ↔ NumPy, honouring Caffe's legacy 4-D dims and double-precision fields."""

import numpy as np

from ..errors import CosError

LEGACY = ("num", "channels", "height", "width")


def legacy_shape(blob):
    """(num, channels, height, width) if any legacy field is present, else None."""
    if any(blob.HasField(f) for f in LEGACY):
        return tuple(int(getattr(blob, f)) for f in LEGACY)
    return None


def blob_shape(blob):
    shape = legacy_shape(blob)
    return shape if shape is not None else tuple(int(d) for d in blob.shape.dim)


def blob_to_array(blob, diff=False, where="blob"):
    """The blob's data (or diff) as an ndarray of its shape (float32, or float64 for double_data)."""
    if diff:
        values = blob.double_diff if len(blob.double_diff) else blob.diff
    else:
        values = blob.double_data if len(blob.double_data) else blob.data
    dtype = np.float64 if (len(blob.double_diff) if diff else len(blob.double_data)) else np.float32
    arr = np.array(values, dtype=dtype)
    shape = blob_shape(blob)
    count = int(np.prod(shape)) if shape else 1
    if arr.size != count:
        raise CosError(f"{where}: holds {arr.size} values but its shape {list(shape)} "
                       f"needs {count}")
    return arr.reshape(shape)


def array_to_blob(arr, diff=None, blob=None):
    """Write `shape` + float32 `data` (+ `diff`) into a BlobProto, as current Caffe does."""
    from . import caffe_pb2
    blob = blob if blob is not None else caffe_pb2.BlobProto()
    arr = np.asarray(arr)
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float32, copy=False).ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff, dtype=np.float32).ravel().tolist())
    return blob


def shapes_match(blob, target_shape):
    """Caffe's copy rule: legacy dims compare right-aligned against the target padded with 1s."""
    legacy = legacy_shape(blob)
    target = tuple(int(s) for s in target_shape)
    if legacy is None:
        return tuple(int(d) for d in blob.shape.dim) == target
    if len(target) > 4:
        return False
    return legacy == (1,) * (4 - len(target)) + target
