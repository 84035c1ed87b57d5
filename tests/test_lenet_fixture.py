"""LeNet built from real Caffe's files gives real Caffe's blobs, blob for blob."""

import numpy as np
import pytest

from cos import caffe
from cos.errors import NetError


def test_lenet_test_net_matches_real_caffe(caffe_fixtures):
    d = caffe_fixtures / "lenet"
    net = caffe.Net(str(d / "lenet_train_test.prototxt"), str(d / "lenet_iter_20.caffemodel"),
                    caffe.TEST)
    inputs = np.load(d / "lenet_inputs.npz")
    expected = np.load(d / "lenet_test_forward.npz")
    net.forward(data=inputs["test_data"], label=inputs["test_labels"])
    assert net.outputs == ["accuracy", "loss"]
    names = [k.split("/", 1)[1] for k in expected.keys()]
    assert set(names) <= set(net.blobs)
    for key, name in zip(expected.keys(), names):
        ref = expected[key]
        np.testing.assert_allclose(net.blobs[name].data, ref, rtol=1e-4,
                                   atol=1e-5 * max(1.0, float(np.abs(ref).max())), err_msg=name)


def test_lenet_runtime_layers_and_shapes(caffe_fixtures):
    d = caffe_fixtures / "lenet"
    net = caffe.Net(str(d / "lenet_train_test.prototxt"), caffe.TRAIN)
    shapes = {n: b.shape for n, b in net.blobs.items()}
    batch = shapes["data"][0]
    assert shapes["conv1"] == (batch, 20, 24, 24)
    assert shapes["pool2"] == (batch, 50, 4, 4)
    assert shapes["ip2"] == (batch, 10)
    assert sum(p.count for p in net.learnable_params) == 431080


def test_lenet_save_reload_gives_identical_outputs(caffe_fixtures, tmp_path):
    d = caffe_fixtures / "lenet"
    proto = str(d / "lenet_train_test.prototxt")
    net = caffe.Net(proto, str(d / "lenet_iter_20.caffemodel"), caffe.TEST)
    inputs = np.load(d / "lenet_inputs.npz")
    feed = dict(data=inputs["test_data"], label=inputs["test_labels"])
    want = {k: v.copy() for k, v in net.forward(blobs=["ip2"], **feed).items()}
    saved = tmp_path / "again.caffemodel"
    net.save(str(saved))
    again = caffe.Net(proto, caffe.TEST, weights=str(saved))
    got = again.forward(blobs=["ip2"], **feed)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_lenet_weights_into_wrong_shaped_net_name_the_layer(caffe_fixtures, tmp_path):
    d = caffe_fixtures / "lenet"
    text = (d / "lenet_train_test.prototxt").read_text().replace("num_output: 500",
                                                                "num_output: 400")
    proto = tmp_path / "narrow.prototxt"
    proto.write_text(text)
    with pytest.raises(NetError, match=r"^Cannot copy param 0 weights from layer 'ip1'; shape "
                                       r"mismatch. Source param shape is \[500, 800\]; target "
                                       r"param shape is \[400, 800\]$"):
        caffe.Net(str(proto), caffe.TEST, weights=str(d / "lenet_iter_20.caffemodel"))
