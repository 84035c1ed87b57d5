"""BlobProto ↔ NumPy: N-D shapes, legacy 4-D dims, double precision, diffs, shape checks."""

import numpy as np
import pytest

from cos.errors import CosError
from cos.proto import blobs, caffe_pb2


def test_array_round_trip_nd():
    arr = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 2)).astype(np.float32)
    blob = blobs.array_to_blob(arr)
    assert list(blob.shape.dim) == [2, 3, 4, 5, 2]
    assert blobs.legacy_shape(blob) is None
    back = blobs.blob_to_array(blob)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, arr)
    # What comes back parses again to the same message.
    again = caffe_pb2.BlobProto.FromString(blob.SerializeToString())
    np.testing.assert_array_equal(blobs.blob_to_array(again), arr)


def test_diff_written_and_read():
    arr = np.ones((2, 2), np.float32)
    blob = blobs.array_to_blob(arr, diff=arr * 3)
    np.testing.assert_array_equal(blobs.blob_to_array(blob, diff=True), arr * 3)


def test_float64_input_is_stored_as_float32():
    blob = blobs.array_to_blob(np.array([1 / 3], np.float64))
    assert not len(blob.double_data)
    assert blobs.blob_to_array(blob)[0] == np.float32(1 / 3)


def test_legacy_dims_take_precedence_over_shape():
    blob = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=3)
    blob.shape.dim.extend([99])  # ignored when any legacy field is present
    blob.data.extend(range(6))
    assert blobs.legacy_shape(blob) == (1, 1, 2, 3)
    assert blobs.blob_to_array(blob).shape == (1, 1, 2, 3)


def test_legacy_partial_fields_count_as_legacy():
    blob = caffe_pb2.BlobProto(width=4)
    blob.data.extend([0.0] * 0)
    assert blobs.legacy_shape(blob) == (0, 0, 0, 4)


def test_double_data_preferred():
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.append(2)
    blob.data.extend([9, 9])
    blob.double_data.extend([0.1, 0.2])
    arr = blobs.blob_to_array(blob)
    assert arr.dtype == np.float64 and arr.tolist() == [0.1, 0.2]
    blob.double_diff.extend([1.5, 2.5])
    assert blobs.blob_to_array(blob, diff=True).tolist() == [1.5, 2.5]


def test_count_mismatch_names_blob():
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 2])
    blob.data.extend([1, 2, 3])
    with pytest.raises(CosError, match=r"conv1 weights: holds 3 values.*\[2, 2\]"):
        blobs.blob_to_array(blob, where="conv1 weights")


def test_scalar_blob():
    blob = caffe_pb2.BlobProto()
    blob.data.append(4)
    assert blobs.blob_to_array(blob).shape == ()


def test_shapes_match_caffe_copy_rule():
    legacy = caffe_pb2.BlobProto(num=1, channels=1, height=4096, width=9216)
    assert blobs.shapes_match(legacy, (4096, 9216))
    assert not blobs.shapes_match(legacy, (9216, 4096))
    assert blobs.shapes_match(caffe_pb2.BlobProto(num=1, channels=1, height=1, width=10), (10,))
    modern = blobs.array_to_blob(np.zeros((3, 4), np.float32))
    assert blobs.shapes_match(modern, (3, 4)) and not blobs.shapes_match(modern, (1, 3, 4))
    assert not blobs.shapes_match(legacy, (1, 1, 1, 4096, 9216))


def test_unpacked_and_split_encodings_are_read():
    # Caffe writes packed values, but a reader must accept unpacked ones and split runs too.
    values = np.array([1.5, -2.0, 3.25], np.float32)
    shape = b"\x3a\x02\x08\x03"                                     # shape { dim: 3 }
    unpacked = b"".join(b"\x2d" + v.tobytes() for v in values)     # field 5, fixed32 each
    blob = caffe_pb2.BlobProto.FromString(shape + unpacked)
    np.testing.assert_array_equal(blobs.blob_to_array(blob), values)
    split = b"\x2a\x04" + values[:1].tobytes() + b"\x2a\x08" + values[1:].tobytes()
    blob = caffe_pb2.BlobProto.FromString(shape + split)
    np.testing.assert_array_equal(blobs.blob_to_array(blob), values)


def test_wire_bytes_match_protobuf_encoding():
    arr = np.array([[1, 2], [3, 4]], np.float32)
    fast = blobs.array_to_blob(arr, diff=-arr)
    slow = caffe_pb2.BlobProto()
    slow.shape.dim.extend([2, 2])
    slow.data.extend(arr.ravel().tolist())
    slow.diff.extend((-arr).ravel().tolist())
    assert fast.SerializeToString() == slow.SerializeToString()


def test_large_blob_round_trip_is_exact():
    arr = np.random.default_rng(1).standard_normal(3_000_000).astype(np.float32)
    blob = caffe_pb2.BlobProto.FromString(blobs.array_to_blob(arr).SerializeToString())
    back = blobs.blob_to_array(blob)
    assert back.flags.writeable and back.dtype == np.float32
    np.testing.assert_array_equal(back, arr)
