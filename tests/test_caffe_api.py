"""pycaffe's surface through `from cos import caffe`: constructors, attributes, views,
forward/backward with start/end, forward_all, save/reload, module globals."""

import collections

import numpy as np
import pytest

from cos import caffe
from cos.errors import NetError

NET = """name: "api"
layer { name: "in" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture
def proto(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    return str(path)


def inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3, 4, 4)).astype(np.float32),
            rng.integers(0, 3, n).astype(np.float32))


def test_globals():
    assert (caffe.TRAIN, caffe.TEST) == (0, 1)
    assert {"Convolution", "InnerProduct", "Input", "Split"} <= set(caffe.layer_type_list())
    assert caffe.io.Transformer is not None
    caffe.set_mode_cpu()


def test_net_attributes(proto):
    net = caffe.Net(proto, caffe.TEST)
    assert net.inputs == ["data", "label"]
    assert net.outputs == ["loss", "prob"]
    assert list(net.blobs) == ["data", "label", "conv", "ip", "ip_ip_0_split_0",
                               "ip_ip_0_split_1", "prob", "loss"]
    assert isinstance(net.params, collections.OrderedDict)
    assert list(net.params) == ["conv", "ip"]
    assert [b.shape for b in net.params["ip"]] == [(3, 8), (3,)]
    assert [layer.type for layer in net.layers] == ["Input", "Convolution", "ReLU",
                                                    "InnerProduct", "Split", "Softmax",
                                                    "SoftmaxWithLoss"]
    assert net._layer_names[4] == "ip_ip_0_split"
    assert net.layer_dict["conv"] is net.layers[1]
    assert net.top_names["relu"] == ["conv"] and net.bottom_names["loss"] == ["ip_ip_0_split_1",
                                                                               "label"]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["prob"] == 0.0
    blob = net.blobs["data"]
    assert (blob.num, blob.channels, blob.height, blob.width, blob.count) == (2, 3, 4, 4, 96)


def test_legacy_and_keyword_weights_agree(proto, tmp_path):
    caffe.set_random_seed(5)
    net = caffe.Net(proto, caffe.TEST)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    a = caffe.Net(proto, weights, caffe.TEST)
    b = caffe.Net(proto, caffe.TEST, weights=weights)
    data, label = inputs()
    want = net.forward(data=data, label=label)["prob"].copy()
    for other in (a, b):
        np.testing.assert_array_equal(other.forward(data=data, label=label)["prob"], want)
    with pytest.raises(RuntimeError, match="missing.prototxt"):
        caffe.Net(str(tmp_path / "missing.prototxt"), caffe.TEST)


def test_set_random_seed_makes_init_repeatable(proto):
    caffe.set_random_seed(11)
    first = caffe.Net(proto, caffe.TRAIN).params["conv"][0].data.copy()
    caffe.set_random_seed(11)
    np.testing.assert_array_equal(caffe.Net(proto, caffe.TRAIN).params["conv"][0].data, first)


def test_views_write_through_to_the_engine(proto):
    net = caffe.Net(proto, caffe.TEST)
    net.params["ip"][0].data[...] = 0
    net.params["ip"][1].data[...] = [1.0, 2.0, 3.0]
    data, label = inputs()
    out = net.forward(data=data, label=label)
    np.testing.assert_allclose(out["prob"][0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(),
                               rtol=1e-6)
    net.blobs["data"].data[...] = 0  # write into the input view, no keywords
    net.forward()
    np.testing.assert_array_equal(net.blobs["conv"].data, 0)


def test_forward_backward_start_end(proto):
    net = caffe.Net(proto, caffe.TRAIN)
    data, label = inputs()
    full = net.forward(data=data, label=label)
    part = net.forward(start="ip", end="prob")
    assert list(part) == ["prob"]
    np.testing.assert_allclose(part["prob"], full["prob"])
    net.clear_param_diffs()
    bottoms = net.backward(start="prob", end="ip")
    assert list(bottoms) == ["conv"]
    np.testing.assert_allclose(bottoms["conv"], 0, atol=1e-6)  # softmax rows sum to 1
    diffs = net.backward(diffs=["conv"])
    assert set(diffs) == {"data", "label", "conv"}
    assert np.abs(net.params["conv"][0].diff).sum() > 0


def test_forward_all_pads_and_trims(proto):
    net = caffe.Net(proto, caffe.TEST)
    data, label = inputs(5, seed=1)
    out = net.forward_all(data=data, label=label)
    assert out["prob"].shape == (5, 3)
    for k in range(0, 5, 2):
        chunk = net.forward(data=np.pad(data[k:k + 2], [(0, 2 - len(data[k:k + 2]))] + [(0, 0)] * 3),
                            label=np.pad(label[k:k + 2], (0, 2 - len(label[k:k + 2]))))
        np.testing.assert_allclose(out["prob"][k:k + 2], chunk["prob"][:len(data[k:k + 2])],
                                   rtol=1e-6)


def test_forward_all_with_backward(proto):
    net = caffe.Net(proto, caffe.TRAIN)
    data, label = inputs(3, seed=2)
    fwd, bwd = net.forward_backward_all(data=data, label=label)
    assert fwd["prob"].shape == (3, 3) and bwd["data"].shape == (3, 3, 4, 4)


def test_set_input_arrays_needs_memory_data(proto):
    net = caffe.Net(proto, caffe.TEST)
    with pytest.raises(NetError, match="MemoryData"):
        net.set_input_arrays(*inputs())
