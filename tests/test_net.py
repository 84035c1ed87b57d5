"""Net construction and execution: filtering, splits, wiring, loss weights, sharing,
need-backward, pycaffe views, both execution paths, save/load, errors."""

import numpy as np
import pytest
import torch

from cos.engine.layer import TEST, TRAIN
from cos.engine.net import Net
from cos.errors import NetError
from cos.proto import caffe_pb2
from cos.proto.text import parse_net_text

IP = """layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" {extra}
  inner_product_param {{ num_output: {n} weight_filler {{ type: "gaussian" std: 0.5 }}
                         bias_filler {{ type: "constant" value: 0.1 }} }} }}"""


def net_text(*layers, inputs='shape { dim: 4 dim: 3 } shape { dim: 4 }', force=False):
    head = 'name: "t"\n' + ("force_backward: true\n" if force else "")
    head += f'layer {{ name: "data" type: "Input" top: "data" top: "label" input_param {{ {inputs} }} }}\n'
    return head + "\n".join(layers)


def ip(name, bottom, top, n, extra=""):
    return IP.format(name=name, bottom=bottom, top=top, n=n, extra=extra)


LOSS = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "%s" bottom: "label" top: "loss" }'


def make(text, phase=TRAIN, **kw):
    return Net(parse_net_text(text), phase, seed=kw.pop("seed", 3), **kw)


def feed(net, rng=np.random.default_rng(0)):
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.integers(0, 3, net.blobs["label"].shape)


# ---- filtering --------------------------------------------------------------------

def test_include_exclude_by_phase_stage_and_level():
    text = net_text(
        ip("a", "data", "a", 3, 'include { phase: TRAIN }'),
        ip("b", "data", "b", 3, 'include { phase: TEST stage: "s1" }'),
        ip("c", "data", "c", 3, 'exclude { min_level: 2 }'),
        ip("d", "data", "d", 3, 'include { not_stage: "s1" }'))
    param = parse_net_text(text)

    def names(net):
        return [n for n in net._layer_names if not n.endswith("_split")]
    assert names(Net(param, TRAIN)) == ["data", "a", "c", "d"]
    assert names(Net(param, TEST, stages=("s1",))) == ["data", "b", "c"]
    assert names(Net(param, TEST, level=2)) == ["data", "d"]


def test_include_and_exclude_together_is_an_error():
    text = net_text(ip("a", "data", "a", 3, 'include { phase: TRAIN } exclude { phase: TEST }'))
    with pytest.raises(NetError, match="layer 'a'.*include or exclude"):
        make(text)


# ---- splits, outputs, loss weights -------------------------------------------------

def test_split_naming_and_sorted_outputs():
    text = net_text(ip("ip", "data", "ip", 3),
                    'layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" }',
                    LOSS % "ip")
    net = make(text, TEST)
    assert "ip_ip_0_split" in net._layer_names
    assert "label_data_1_split" in net._layer_names
    assert net.top_names["ip_ip_0_split"] == ["ip_ip_0_split_0", "ip_ip_0_split_1"]
    assert net.bottom_names["acc"] == ["ip_ip_0_split_0", "label_data_1_split_0"]
    assert net.bottom_names["loss"] == ["ip_ip_0_split_1", "label_data_1_split_1"]
    assert net.outputs == ["acc", "loss"]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["acc"] == 0.0


def test_explicit_loss_weight_reserves_split_slot_zero():
    text = net_text(ip("ip", "data", "ip", 3, "loss_weight: 2"), LOSS % "ip")
    net = make(text)
    split = net.layers[net._layer_names.index("ip_ip_0_split")]
    assert list(split.param.loss_weight) == [2.0, 0.0]
    assert net.bottom_names["loss"][0] == "ip_ip_0_split_1"
    feed(net)
    loss = net.forward_loss()
    expected = 2 * net.blobs["ip"].data.sum() + float(net.blobs["loss"].data)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_loss_layer_gets_default_weight_in_saved_model():
    net = make(net_text(ip("ip", "data", "ip", 3), LOSS % "ip"))
    saved = {l.name: l for l in net.to_proto().layer}
    assert list(saved["loss"].loss_weight) == [1.0]
    assert saved["ip"].phase == caffe_pb2.TRAIN


# ---- params --------------------------------------------------------------------------

def test_param_sharing_by_name_accumulates_into_one_diff():
    share = 'param { name: "w" } param { name: "b" }'
    text = net_text(ip("a", "data", "a", 3, share), ip("b", "data", "b", 3, share), LOSS % "a",
                    'layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "b" bottom: "label" top: "l2" }')
    net = make(text)
    assert net.params["a"][0] is net.params["b"][0]
    assert len(net.learnable_params) == 2
    feed(net)
    net.clear_param_diffs()
    net.forward_backward()
    one = net.params["a"][0].diff.copy()
    # Same inputs through both layers: the shared diff is twice one layer's gradient.
    net2 = make(net_text(ip("a", "data", "a", 3), LOSS % "a"))
    net2.params["a"][0].data[...] = net.params["a"][0].data
    net2.params["a"][1].data[...] = net.params["a"][1].data
    net2.blobs["data"].data[...] = net.blobs["data"].data
    net2.blobs["label"].data[...] = net.blobs["label"].data
    net2.clear_param_diffs()
    net2.forward_backward()
    np.testing.assert_allclose(one, 2 * net2.params["a"][0].diff, rtol=1e-5)


def test_sharing_with_mismatched_shapes_is_an_error():
    text = net_text(ip("a", "data", "a", 3, 'param { name: "w" }'),
                    ip("b", "data", "b", 4, 'param { name: "w" }'))
    with pytest.raises(NetError, match="layer 'b'.*share param 'w'"):
        make(text)


def test_lr_mult_zero_and_propagate_down_cut_backward():
    text = net_text(ip("a", "data", "a", 3, 'param { lr_mult: 0 } param { lr_mult: 0 }'),
                    ip("b", "a", "b", 3), LOSS % "b")
    net = make(text)
    need = dict(zip(net._layer_names, net._layer_need))
    assert need["a"] is False and need["b"] is True
    assert net.params_lr[:2] == [0.0, 0.0]
    text = net_text(ip("a", "data", "a", 3), ip("b", "a", "b", 3, "propagate_down: false"),
                    LOSS % "b")
    net = make(text)
    need = dict(zip(net._layer_names, net._layer_need))
    assert need["a"] is False and need["b"] is True


# ---- execution paths --------------------------------------------------------------

def two_layer():
    return make(net_text(ip("a", "data", "a", 5), 'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }',
                         ip("b", "a", "b", 3), LOSS % "b", force=True),
                dtype=torch.float64)


def test_pycaffe_backward_equals_training_path():
    net = two_layer()
    feed(net)
    net.forward()
    net.clear_param_diffs()
    net.backward()
    py_diffs = [p.diff.copy() for p in net.learnable_params]
    data_diff = net.blobs["data"].diff.copy()
    net.clear_param_diffs()
    net.forward_backward()
    for a, b in zip(py_diffs, net.learnable_params):
        np.testing.assert_allclose(a, b.diff, rtol=1e-10)
    assert np.abs(data_diff).sum() > 0  # force_backward reaches the data


def test_param_diffs_accumulate_bottom_diffs_overwrite():
    net = two_layer()
    feed(net)
    net.forward()
    net.clear_param_diffs()
    net.backward()
    once = net.params["b"][0].diff.copy()
    data_once = net.blobs["data"].diff.copy()
    net.backward()
    np.testing.assert_allclose(net.params["b"][0].diff, 2 * once)
    np.testing.assert_allclose(net.blobs["data"].diff, data_once)


def test_partial_forward_backward_with_hand_set_diff():
    net = two_layer()
    feed(net)
    out = net.forward(end="a")
    assert set(out) == {"a"}
    net.blobs["a"].diff[...] = 1.0
    net.clear_param_diffs()
    net.backward(start="a")
    # dW of layer a = Σ_n x_n for every output row (top diff of ones).
    expected = np.tile(net.blobs["data"].data.sum(axis=0), (5, 1))
    np.testing.assert_allclose(net.params["a"][0].diff, expected, rtol=1e-10)


def test_views_write_through():
    net = two_layer()
    w = net.params["a"][0].data
    w[...] = 0.25
    assert float(net.params["a"][0].tensor.detach()[0, 0]) == 0.25
    net.blobs["data"].data[...] = 2.0
    feed_out = net.forward()
    assert "loss" in feed_out and np.isfinite(feed_out["loss"])


def test_forward_inputs_keyword_and_unknown_input():
    net = two_layer()
    out = net.forward(data=np.ones((4, 3)), label=np.zeros(4))
    assert out["loss"].shape == ()
    with pytest.raises(NetError, match="'nope' is not an input"):
        net.forward(nope=np.ones(3))


# ---- persistence ------------------------------------------------------------------

def test_save_and_reload_gives_identical_outputs(tmp_path):
    net = two_layer()
    feed(net)
    before = net.forward()["loss"].copy()
    path = tmp_path / "m.caffemodel"
    net.save(path)
    other = make(net_text(ip("a", "data", "a", 5), 'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }',
                          ip("b", "a", "b", 3), LOSS % "b", force=True),
                 dtype=torch.float64, seed=99, weights=str(path))
    other.blobs["data"].data[...] = net.blobs["data"].data
    other.blobs["label"].data[...] = net.blobs["label"].data
    np.testing.assert_allclose(other.forward()["loss"], before, rtol=1e-6)


def test_v1_model_loads(tmp_path):
    net = make(net_text(ip("a", "data", "a", 3), LOSS % "a"))
    old = caffe_pb2.NetParameter(name="v1")
    layer = old.layers.add(name="a", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    for blob in net.params["a"]:
        bp = layer.blobs.add()
        bp.num, bp.channels = 1, 1
        bp.height, bp.width = (blob.shape + (1,))[:2] if len(blob.shape) == 2 else (1, blob.shape[0])
        bp.data.extend((blob.data * 3).ravel().tolist())
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(old.SerializeToString())
    net.copy_from(str(path))
    np.testing.assert_allclose(net.params["a"][1].data, np.full(3, 0.3), rtol=1e-6)


# ---- errors ------------------------------------------------------------------------

def test_unknown_layer_type():
    with pytest.raises(NetError, match="layer 'x': unknown layer type 'Bogus'"):
        make(net_text('layer { name: "x" type: "Bogus" bottom: "data" top: "y" }'))


def test_missing_bottom():
    with pytest.raises(NetError, match="layer 'a': bottom 'nothing' is not produced"):
        make(net_text(ip("a", "nothing", "a", 3)))


def test_duplicate_top():
    with pytest.raises(NetError, match="top 'a' is produced by multiple sources"):
        make(net_text(ip("a", "data", "a", 3), ip("b", "data", "a", 3)))


def test_incompatible_shapes():
    text = net_text(ip("a", "data", "a", 3),
                    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "a" bottom: "data" top: "l" }')
    with pytest.raises(NetError, match="layer 'loss'.*label count"):
        make(text)


def test_weights_with_wrong_shapes(tmp_path):
    small = make(net_text(ip("a", "data", "a", 3), LOSS % "a"))
    path = tmp_path / "small.caffemodel"
    small.save(path)
    with pytest.raises(NetError, match="Cannot copy param 0 weights from layer 'a'; shape mismatch"):
        make(net_text(ip("a", "data", "a", 4), LOSS % "a"), weights=str(path))
