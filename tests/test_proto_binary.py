"""Binary protos: caffemodels, solverstates and mean files round-trip; bad files give clear errors."""

import os

import numpy as np
import pytest

from cos.errors import CosError, ParseError
from cos.proto import binary, blobs, caffe_pb2


def _model():
    net = caffe_pb2.NetParameter(name="tiny")
    layer = net.layer.add(name="ip", type="InnerProduct", bottom=["data"], top=["ip"])
    layer.phase = caffe_pb2.TRAIN
    weights = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    blobs.array_to_blob(weights, blob=layer.blobs.add())
    blobs.array_to_blob(np.array([0.5, -1, 2], np.float32), blob=layer.blobs.add())
    return net, weights


def test_caffemodel_round_trip(tmp_path):
    net, weights = _model()
    path = tmp_path / "m.caffemodel"
    binary.write_binary(net, str(path))
    back = binary.read_net_binary(str(path))
    assert back == net
    np.testing.assert_array_equal(blobs.blob_to_array(back.layer[0].blobs[0]), weights)
    binary.write_binary(back, str(tmp_path / "again.caffemodel"))
    assert (tmp_path / "again.caffemodel").read_bytes() == path.read_bytes()


def test_real_caffe_model_is_byte_identical(caffe_fixtures, tmp_path):
    src = caffe_fixtures / "lenet" / "lenet_iter_20.caffemodel"
    net = binary.read_net_binary(str(src))
    assert [l.name for l in net.layer][:1] == ["data"]
    conv1 = next(l for l in net.layer if l.name == "conv1")
    assert blobs.blob_to_array(conv1.blobs[0]).shape == (20, 1, 5, 5)
    out = tmp_path / "copy.caffemodel"
    binary.write_binary(net, str(out))
    assert out.read_bytes() == src.read_bytes()


def test_v1_caffemodel_is_upgraded(tmp_path):
    old = caffe_pb2.NetParameter(name="old")
    layer = old.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    layer.blobs_lr.extend([1, 2])
    blobs.array_to_blob(np.ones((2, 2), np.float32), blob=layer.blobs.add())
    path = tmp_path / "v1.caffemodel"
    binary.write_binary(old, str(path))
    net = binary.read_net_binary(str(path))
    assert net.layer[0].type == "InnerProduct" and not len(net.layers)
    assert [p.lr_mult for p in net.layer[0].param] == [1, 2]


def test_solverstate_round_trip(tmp_path):
    state = caffe_pb2.SolverState(iter=20, learned_net="snap_iter_20.caffemodel", current_step=1)
    blobs.array_to_blob(np.full((3, 4), 0.25, np.float32), blob=state.history.add())
    path = tmp_path / "snap_iter_20.solverstate"
    binary.write_binary(state, str(path))
    back = binary.read_solver_state(str(path))
    assert back == state and back.iter == 20
    binary.write_binary(back, str(tmp_path / "b.solverstate"))
    assert (tmp_path / "b.solverstate").read_bytes() == path.read_bytes()


def test_mean_file_round_trip_legacy_dims(tmp_path):
    mean = caffe_pb2.BlobProto(num=1, channels=2, height=2, width=3)
    mean.data.extend(np.linspace(0, 1, 12, dtype=np.float32).tolist())
    path = tmp_path / "mean.binaryproto"
    binary.write_binary(mean, str(path))
    back = binary.read_blob_proto(str(path))
    assert back == mean
    arr = blobs.blob_to_array(back)
    assert arr.shape == (1, 2, 2, 3) and arr.dtype == np.float32
    binary.write_binary(back, str(tmp_path / "b.binaryproto"))
    assert (tmp_path / "b.binaryproto").read_bytes() == path.read_bytes()


def test_write_replaces_atomically(tmp_path):
    net, _ = _model()
    path = tmp_path / "m.caffemodel"
    path.write_bytes(b"old")
    binary.write_binary(net, str(path))
    assert os.listdir(tmp_path) == ["m.caffemodel"]
    assert binary.read_net_binary(str(path)) == net


def test_truncated_model(tmp_path):
    net, _ = _model()
    data = net.SerializeToString()
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ParseError) as info:
        binary.read_net_binary(str(path))
    message = str(info.value)
    assert str(path) in message and "not a Caffe NetParameter (binary .caffemodel)" in message
    assert "truncated" in message and "\n" not in message


@pytest.mark.parametrize("payload", [
    b"name: \"LeNet\"\nlayer { name: \"conv1\" }\n",          # a prototxt
    b"\x89PNG\r\n\x1a\n" + bytes(range(64)),                 # an image
    b"",                                                     # empty
])
def test_non_caffe_files(tmp_path, payload):
    path = tmp_path / "weird.caffemodel"
    path.write_bytes(payload)
    with pytest.raises(ParseError, match="not a Caffe NetParameter") as info:
        binary.read_net_binary(str(path))
    assert str(path) in str(info.value)


def test_hdf5_weights_are_named(tmp_path):
    path = tmp_path / "lenet_iter_20.caffemodel.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ParseError, match="an HDF5 file, not a Caffe NetParameter") as info:
        binary.read_net_binary(str(path))
    assert str(path) in str(info.value) and "BINARYPROTO" in str(info.value)


def test_unknown_fields_rejected_for_each_kind(tmp_path):
    # Field 15 (varint) exists in none of these messages.
    path = tmp_path / "f.bin"
    path.write_bytes(bytes([15 << 3, 1]))
    with pytest.raises(ParseError, match="not a Caffe SolverState"):
        binary.read_solver_state(str(path))
    with pytest.raises(ParseError, match="not a Caffe BlobProto"):
        binary.read_blob_proto(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(CosError) as info:
        binary.read_net_binary(str(tmp_path / "none.caffemodel"))
    assert "none.caffemodel" in str(info.value) and "not found" in str(info.value)


@pytest.mark.slow
def test_model_over_64_megabytes_parses(tmp_path):
    # Old protobuf readers stop at 64 MB; Caffe allows 2 GB. Build the bytes directly (fast).
    count = 20_000_000  # 80 MB of float32
    values = np.arange(count, dtype=np.float32)
    data_field = b"\x2a" + _varint(values.nbytes) + values.tobytes()        # BlobProto.data (5)
    shape = b"\x08" + _varint(count)                                       # BlobShape.dim
    blob = b"\x3a" + _varint(len(shape)) + shape + data_field               # shape (7), data
    layer = b"\x0a\x02ip\x12\x0cInnerProduct" + b"\x3a" + _varint(len(blob)) + blob
    model = b"\xa2\x06" + _varint(len(layer)) + layer                      # NetParameter.layer (100)
    path = tmp_path / "big.caffemodel"
    path.write_bytes(model)
    net = binary.read_net_binary(str(path))
    stored = net.layer[0].blobs[0]
    assert len(stored.data) == count and stored.data[count - 1] == values[-1]


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
