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
    floats, doubles = _values(blob, diff)
    arr = doubles if doubles.size else floats
    shape = blob_shape(blob)
    count = int(np.prod(shape)) if shape else 1
    if arr.size != count:
        raise CosError(f"{where}: holds {arr.size} values but its shape {list(shape)} "
                       f"needs {count}")
    return arr.reshape(shape)


# BlobProto field numbers of the value arrays: (float field, double field).
_DATA_FIELDS, _DIFF_FIELDS = (5, 8), (6, 9)


def _values(blob, diff):
    """(float32 values, float64 values) read straight from the wire bytes.

    Going through the repeated-field containers costs ~0.1 s per million values; the wire
    bytes of a packed field are already the little-endian array.
    """
    float_field, double_field = _DIFF_FIELDS if diff else _DATA_FIELDS
    chunks = {float_field: [], double_field: []}
    for number, wire_type, payload in _fields(blob.SerializeToString()):
        if number in chunks:
            chunks[number].append((wire_type, payload))
    return (_join(chunks[float_field], "<f4"), _join(chunks[double_field], "<f8"))


def _join(chunks, dtype):
    # Wire type 2 = a packed run; 5/1 = one unpacked fixed32/fixed64 value (both are legal).
    parts = [np.frombuffer(payload, dtype=dtype) for _, payload in chunks]
    if not parts:
        return np.zeros(0, dtype=np.dtype(dtype).newbyteorder("="))
    return np.concatenate(parts).astype(np.dtype(dtype).newbyteorder("="), copy=True)


def _fields(data):
    """(number, wire type, payload bytes or None) for each top-level field of a message."""
    view, pos = memoryview(data), 0
    while pos < len(view):
        key, pos = _varint(view, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(view, pos)
            yield number, wire_type, None
        elif wire_type == 2:
            size, pos = _varint(view, pos)
            yield number, wire_type, view[pos:pos + size]
            pos += size
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            yield number, wire_type, view[pos:pos + size]
            pos += size
        else:
            raise CosError(f"BlobProto: unexpected wire type {wire_type}")


def _varint(view, pos):
    value = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def array_to_blob(arr, diff=None, blob=None):
    """Write `shape` + float32 `data` (+ `diff`) into a BlobProto, as current Caffe does."""
    from . import caffe_pb2
    blob = blob if blob is not None else caffe_pb2.BlobProto()
    arr = np.asarray(arr)
    blob.shape.dim.extend(int(d) for d in arr.shape)
    # Merge pre-encoded packed fields: far faster than extending the repeated fields.
    wire = _packed(5, arr)
    if diff is not None:
        wire += _packed(6, diff)
    blob.MergeFromString(wire)
    return blob


def _packed(number, values):
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _encode_varint(number << 3 | 2) + _encode_varint(len(raw)) + raw


def _encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def shapes_match(blob, target_shape):
    """Caffe's copy rule: legacy dims compare right-aligned against the target padded with 1s."""
    legacy = legacy_shape(blob)
    target = tuple(int(s) for s in target_shape)
    if legacy is None:
        return tuple(int(d) for d in blob.shape.dim) == target
    if len(target) > 4:
        return False
    return legacy == (1,) * (4 - len(target)) + target
