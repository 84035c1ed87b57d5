"""MemoryData, CoSData and Data layers in real nets: feeds, pycaffe arrays, a real LMDB,
and `cos-caffe train` on a tiny LeNet-like net reading LMDBs through Data layers."""

import gc
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

from cos import caffe
from cos.engine.net import Net
from cos.errors import DataError, NetError
from cos.proto import caffe_pb2
from cos.proto.datum import encode_datum
from cos.proto.text import parse_net_text

REPO = Path(__file__).resolve().parents[1]
TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def write_lmdb(path, images, labels):
    """A real LMDB of raw Datums (C,H,W uint8), keys %05d in order."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(zip(images, labels)):
            c, h, w = img.shape
            datum = caffe_pb2.Datum(channels=c, height=h, width=w, label=int(label),
                                    data=img.tobytes())
            txn.put(b"%05d" % i, datum.SerializeToString())
    env.close()
    return str(path)


def digits(n, side=8, seed=0):
    """n 1 x side x side images whose bright column depends on the label (0..2)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 1, side, side), dtype=np.uint8)
    for img, label in zip(images, labels):
        img[0, :, 1 + 2 * label] = 250
    return images, labels


# ---- MemoryData ----------------------------------------------------------------------

MEMORY_NET = """
name: "mem"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_set_input_arrays_walks_batches_in_order_and_wraps():
    net = Net(parse_net_text(MEMORY_NET), TEST)
    data = np.arange(6 * 6, dtype=np.float32).reshape(6, 1, 2, 3)
    labels = np.array([0, 1, 1, 0, 1, 0], np.float32)
    net.set_input_arrays(data, labels)
    for start in (0, 2, 4, 0):
        net.forward()
        np.testing.assert_array_equal(net.blobs["data"].data, data[start:start + 2])
        np.testing.assert_array_equal(net.blobs["label"].data.reshape(-1),
                                      labels[start:start + 2])


@pytest.mark.parametrize("data,labels,words", [
    (np.zeros((4, 1, 2, 3)), np.zeros(4, np.float32), "float32"),
    (np.zeros((3, 1, 2, 3), np.float32), np.zeros(3, np.float32), "multiple of batch_size 2"),
    (np.zeros((4, 1, 3, 2), np.float32), np.zeros(4, np.float32), r"expected N x 1 x 2 x 3"),
    (np.zeros((4, 1, 2, 3), np.float32), np.zeros(3, np.float32), "give 4 labels"),
])
def test_set_input_arrays_errors_name_the_layer(data, labels, words):
    net = Net(parse_net_text(MEMORY_NET), TEST)
    with pytest.raises(NetError, match=f"layer 'data' \\(MemoryData\\).*{words}"):
        net.set_input_arrays(data, labels)


def test_forward_without_data_names_the_layer():
    net = Net(parse_net_text(MEMORY_NET), TEST)
    with pytest.raises(NetError, match="layer 'data'.*set_input_arrays"):
        net.forward()


def test_set_feed_takes_lists_and_batch_objects_and_checks_shapes():
    from cos.data.feeder import Batch
    net = Net(parse_net_text(MEMORY_NET), TEST)
    layer = net.layer_dict["data"]
    first = [np.ones((2, 1, 2, 3), np.float32), np.zeros((2, 1, 1, 1), np.float32)]
    second = Batch([np.full((2, 1, 2, 3), 2, np.float32), np.ones(2, np.float32)], ["a", "b"], 2)
    bad = [np.ones((2, 1, 3, 2), np.float32), np.zeros(2, np.float32)]
    layer.set_feed(iter([first, second, bad]))
    net.forward()
    assert net.blobs["data"].data.sum() == 12 and net.blobs["label"].data.shape == (2,)
    net.forward()
    assert net.blobs["data"].data.sum() == 24 and net.blobs["label"].data.sum() == 2
    with pytest.raises(DataError, match=r"layer 'data': top 'data' is \(2, 1, 2, 3\) but the "
                                        r"fed array is \(2, 1, 3, 2\)"):
        net.forward()
    with pytest.raises(NetError, match="no more batches"):
        net.forward()


def test_memory_data_top_is_the_declared_size_and_needs_dims():
    text = MEMORY_NET.replace("height: 2 width: 3 }",
                              "height: 2 width: 2 } transform_param { crop_size: 2 }")
    net = Net(parse_net_text(text), TEST)
    assert net.blobs["data"].shape == (2, 1, 2, 2)
    with pytest.raises(NetError, match="memory_data_param.channels must be >= 1"):
        Net(parse_net_text(MEMORY_NET.replace("channels: 1 ", "")), TEST)


# ---- CoSData -------------------------------------------------------------------------

COS_NET = """
name: "cos"
layer { name: "data" type: "CoSData" top: "img" top: "seq" top: "vec" top: "label"
  cos_data_param { batch_size: 4
    top { name: "img" type: RAW_IMAGE channels: 3 height: 8 width: 8 out_height: 5 out_width: 6
          transform_param { crop_size: 5 } }
    top { name: "seq" type: INT_ARRAY channels: 7 sample_num_axes: 1 transpose: true }
    top { name: "vec" type: FLOAT_ARRAY channels: 2 height: 3 sample_num_axes: 2 }
    top { name: "label" type: STRING channels: 1 height: 1 width: 1 sample_num_axes: 1 } } }
"""


def test_cos_data_shapes_transpose_and_sample_axes():
    net = Net(parse_net_text(COS_NET), TEST, dtype=torch.float64)
    shapes = [net.blobs[n].shape for n in ("img", "seq", "vec", "label")]
    assert shapes == [(4, 3, 5, 6), (7, 4), (4, 2, 3), (4, 1)]
    layer = net.layer_dict["data"]
    assert layer.is_data and not layer.has_backward
    # fed batch-major, as the Batcher stacks samples; the transposed top becomes (C, batch)
    seq = np.arange(28, dtype=np.float32).reshape(4, 7)
    arrays = [np.ones(shapes[0], np.float32) * 0, seq, np.ones(shapes[2], np.float32) * 2,
              np.ones(shapes[3], np.float32) * 3]
    layer.set_feed([arrays])
    out = net.forward()
    np.testing.assert_array_equal(out["seq"], seq.T)
    for k, name in ((0, "img"), (2, "vec"), (3, "label")):
        assert out[name].dtype == np.float64 and (out[name] == k).all()


def test_cos_data_top_count_must_match():
    text = COS_NET.replace('top: "label"\n', "\n", 1)
    with pytest.raises(NetError, match="3 top names but cos_data_param lists 4"):
        Net(parse_net_text(text), TEST)
    bad = COS_NET.replace("sample_num_axes: 1 transpose: true", "transpose: true")
    with pytest.raises(NetError, match="'seq': transpose needs sample_num_axes: 1"):
        Net(parse_net_text(bad), TEST)


# ---- Data (LMDB) ---------------------------------------------------------------------

DATA_NET = """
name: "reader"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "db" batch_size: 4 backend: LMDB }
        transform_param { scale: 0.00390625 } }
"""


def test_pycaffe_data_layer_reads_batches_in_key_order_and_wraps(tmp_path, monkeypatch):
    images, labels = digits(10)
    write_lmdb(tmp_path / "db", images, labels)
    (tmp_path / "net.prototxt").write_text(DATA_NET)
    monkeypatch.chdir(tmp_path)  # the source is relative to the CWD, like Caffe
    net = caffe.Net("net.prototxt", caffe.TEST)
    assert net.blobs["data"].shape == (4, 1, 8, 8) and net.blobs["label"].shape == (4,)
    order = list(range(10)) + list(range(10))
    for start in (0, 4, 8, 2):
        out = net.forward(blobs=["data"])
        rows = order[start:start + 4]
        np.testing.assert_allclose(out["data"], images[rows] / 256.0, rtol=1e-6)
        np.testing.assert_array_equal(out["label"], labels[rows])


def test_rand_skip_crop_and_encoded_records(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)  # BGR HWC
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, img in enumerate(colour):
            txn.put(b"%05d" % i, encode_datum(img, label=i, fmt="png").SerializeToString())
    env.close()
    monkeypatch.chdir(tmp_path)
    net = Net(parse_net_text(DATA_NET.replace("backend: LMDB", "backend: LMDB rand_skip: 3")
                             .replace("scale: 0.00390625", "crop_size: 4")), TEST)
    assert net.blobs["data"].shape == (4, 3, 4, 4)  # C and H, W from the first record, cropped
    out = net.forward()
    assert out["label"].tolist() == [3, 4, 0, 1]  # skipped 3 only on the first pass
    want = colour[3].transpose(2, 0, 1)[:, 1:5, 1:5]  # TEST: centre crop
    np.testing.assert_array_equal(net.blobs["data"].data[0], want)


def test_random_transform_is_seeded_from_the_net(tmp_path, monkeypatch):
    images, labels = digits(8)
    write_lmdb(tmp_path / "db", images, labels)
    monkeypatch.chdir(tmp_path)
    text = DATA_NET.replace("scale: 0.00390625", "mirror: true crop_size: 6")

    def batches(seed):
        net = Net(parse_net_text(text), TRAIN, seed=seed)
        return [net.forward(blobs=["data"])["data"].copy() for _ in range(2)]
    first, again, other = batches(3), batches(3), batches(4)
    assert first[0].shape == (4, 1, 6, 6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_hosts_can_feed_a_data_layer(tmp_path, monkeypatch):
    images, labels = digits(4)
    write_lmdb(tmp_path / "db", images, labels)
    monkeypatch.chdir(tmp_path)
    net = Net(parse_net_text(DATA_NET), TEST)
    layer = net.layer_dict["data"]
    layer.set_feed([[np.full((4, 1, 8, 8), 0.5, np.float32), np.ones((4, 1, 1, 1), np.float32)]])
    out = net.forward()
    assert (out["data"] == 0.5).all() and out["label"].tolist() == [1, 1, 1, 1]
    assert layer._batcher is None  # no reader thread was started


def test_data_layer_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NetError, match="layer 'data' \\(Data\\): backend LEVELDB is not supported"):
        Net(parse_net_text(DATA_NET.replace("LMDB", "LEVELDB")), TEST)
    with pytest.raises(DataError, match="LMDB directory not found"):
        Net(parse_net_text(DATA_NET), TEST)
    images, labels = digits(3)
    write_lmdb(tmp_path / "db", images, labels)
    with pytest.raises(NetError, match="rand_skip 3 skips all 3 records"):
        Net(parse_net_text(DATA_NET.replace("backend: LMDB", "backend: LMDB rand_skip: 3")), TEST)


def test_reader_thread_stops_when_the_net_is_collected(tmp_path, monkeypatch):
    images, labels = digits(6)
    write_lmdb(tmp_path / "db", images, labels)
    monkeypatch.chdir(tmp_path)
    net = Net(parse_net_text(DATA_NET), TEST)
    net.forward()
    thread = net.layer_dict["data"]._batcher.thread
    assert thread.is_alive() and thread.daemon
    del net
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_label_out_of_range_names_the_loss_layer(tmp_path, monkeypatch):
    images, labels = digits(4)
    write_lmdb(tmp_path / "db", images, labels)  # labels 0, 1, 2, 0
    monkeypatch.chdir(tmp_path)
    text = DATA_NET + """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
    net = Net(parse_net_text(text), TEST)
    with pytest.raises(NetError, match=r"layer 'loss' \(SoftmaxWithLoss\): label 2 is out of "
                                       r"range: valid labels are 0\.\.1"):
        net.forward()


@pytest.mark.parametrize("loss,extra", [
    ("SoftmaxWithLoss", ""), ("HingeLoss", ""), ("MultinomialLogisticLoss", ""),
    ("SoftmaxWithLoss", "loss_param { ignore_label: 5 }")])
def test_every_indexing_loss_checks_its_labels(loss, extra):
    net = Net(parse_net_text(MEMORY_NET.replace('type: "SoftmaxWithLoss"',
                                                f'type: "{loss}" {extra}')), TEST)
    data = np.ones((2, 1, 2, 3), np.float32)
    net.set_input_arrays(data, np.array([1, 5], np.float32))
    if extra:  # the ignore label is never out of range
        assert np.isfinite(net.forward()["loss"])
        return
    with pytest.raises(NetError, match=f"layer 'loss' \\({loss}\\): label 5 is out of range"):
        net.forward()
    net.set_input_arrays(data, np.array([-1, 0], np.float32))
    with pytest.raises(NetError, match="label -1 is out of range: valid labels are 0..1"):
        net.forward()


# ---- cos-caffe train with Data layers ---------------------------------------------------

LENET = """
name: "tinylenet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        data_param { source: "train_lmdb" batch_size: 8 backend: LMDB }
        transform_param { scale: 0.00390625 } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
        data_param { source: "test_lmdb" batch_size: 5 backend: LMDB }
        transform_param { scale: 0.00390625 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy"
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""
SOLVER = """
net: "lenet.prototxt"
test_iter: 2
test_interval: 4
base_lr: 0.05
momentum: 0.9
lr_policy: "fixed"
display: 2
max_iter: 8
snapshot: 8
snapshot_prefix: "snaps/tiny"
random_seed: 5
"""


@pytest.mark.slow
def test_cos_caffe_trains_from_lmdb_data_layers(tmp_path):
    write_lmdb(tmp_path / "train_lmdb", *digits(30, seed=1))
    write_lmdb(tmp_path / "test_lmdb", *digits(12, seed=2))
    (tmp_path / "lenet.prototxt").write_text(LENET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "cos.tools.caffe_cli", "train", "-solver",
                        "solver.prototxt"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=150)
    assert r.returncode == 0, r.stderr
    losses = [float(m) for m in re.findall(r"Iteration \d+ .*loss = ([-\d.e+naif]+)", r.stderr)]
    assert losses and all(math.isfinite(v) for v in losses), r.stderr
    tests = re.findall(r"Test net output #\d+: accuracy = ([\d.e+-]+)", r.stderr)
    assert tests and all(0.0 <= float(a) <= 1.0 for a in tests), r.stderr
    assert (tmp_path / "snaps" / "tiny_iter_8.caffemodel").exists()
    assert (tmp_path / "snaps" / "tiny_iter_8.solverstate").exists()
