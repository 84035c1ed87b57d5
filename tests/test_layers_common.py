"""Softmax, Accuracy, ArgMax, Reduction, Input and DummyData vs NumPy references."""

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import cos.engine.layers  # noqa: F401  (registers the layer types)
from cos.engine.layer import TEST, layer_class
from cos.errors import NetError
from cos.proto import caffe_pb2

RNG = np.random.default_rng(5)


def make(text, shapes, ntops=1):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.name = "c"
    lp.top.extend([f"t{k}" for k in range(ntops)])
    layer = layer_class(lp.type, lp.name)(lp, TEST, torch.float64, "cpu",
                                          torch.Generator().manual_seed(0))
    layer.setup(shapes)
    return layer


def fwd(layer, *arrays):
    return [t.detach().numpy() for t in layer.forward([torch.tensor(a) for a in arrays])]


def close(a, b, rtol=1e-5):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def test_softmax_axis_forward_backward():
    x = RNG.normal(size=(2, 3, 4))
    dy = RNG.normal(size=x.shape)
    layer = make('type: "Softmax" softmax_param { axis: -1 }', [x.shape])
    xt = torch.tensor(x, requires_grad=True)
    y = layer.forward([xt])[0]
    y.backward(torch.tensor(dy))
    e = np.exp(x - x.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    close(y.detach().numpy(), p)
    close(xt.grad.numpy(), p * (dy - (dy * p).sum(-1, keepdims=True)))
    assert torch.autograd.gradcheck(lambda t: layer.forward([t])[0], (xt.detach().requires_grad_(),))


def test_accuracy_ties_count_against_and_top_k():
    x = np.array([[1.0, 1.0, 0.5],    # label 0 ties with class 1: wrong at top 1, right at top 2
                  [0.1, 0.9, 0.0],    # label 1 wins
                  [0.3, 0.3, 0.3],    # all tied: label 2 right only at top 3
                  [0.5, 0.2, 0.9]])   # label 1 last
    lab = np.array([0.0, 1.0, 2.0, 1.0])
    for k, want in [(1, 1 / 4), (2, 2 / 4), (3, 4 / 4)]:
        layer = make(f'type: "Accuracy" accuracy_param {{ top_k: {k} }}', [x.shape, lab.shape])
        close(fwd(layer, x, lab)[0], want)
    assert not layer.has_backward


def test_accuracy_ignore_label_per_class_and_axis():
    x = RNG.normal(size=(2, 3, 5))
    lab = RNG.integers(0, 3, size=(2, 5)).astype(float)
    lab[0, 0] = lab[1, 3] = 7
    layer = make('type: "Accuracy" accuracy_param { ignore_label: 7 }', [x.shape, lab.shape], 2)
    acc, per = fwd(layer, x, lab)
    pred = x.argmax(1)
    valid = lab != 7
    close(acc, ((pred == lab) & valid).sum() / valid.sum())
    for c in range(3):
        sel = valid & (lab == c)
        close(per[c], (pred[sel] == c).mean() if sel.any() else 0.0)
    x2 = np.moveaxis(x, 1, 2)
    layer = make('type: "Accuracy" accuracy_param { axis: 2 ignore_label: 7 }', [x2.shape, lab.shape])
    close(fwd(layer, x2, lab)[0], acc)
    layer = make('type: "Accuracy" accuracy_param { ignore_label: 7 }', [x.shape, lab.shape])
    assert fwd(layer, x, np.full(lab.shape, 7.0))[0] == 0.0      # no valid position


def test_accuracy_bad_label_and_top_k():
    layer = make('type: "Accuracy"', [(2, 3), (2,)])
    with pytest.raises(NetError, match="'c'.*label 5"):
        fwd(layer, np.zeros((2, 3)), np.array([0.0, 5.0]))
    with pytest.raises(NetError, match="top_k"):
        make('type: "Accuracy" accuracy_param { top_k: 4 }', [(2, 3), (2,)]).reshape([(2, 3), (2,)])


def test_argmax_ties_pick_larger_index_and_shapes():
    x = np.array([[[3.0, 1.0, 3.0, 2.0]], [[0.0, 5.0, 5.0, 5.0]]])    # (2, 1, 4)
    layer = make('type: "ArgMax"', [x.shape])
    assert layer.reshape([x.shape]) == [(2, 1, 1)]
    close(fwd(layer, x)[0].reshape(-1), [2, 3])
    layer = make('type: "ArgMax" argmax_param { top_k: 3 out_max_val: true }', [x.shape])
    assert layer.reshape([x.shape]) == [(2, 2, 3)]
    out = fwd(layer, x)[0]
    close(out[:, 0], [[2, 0, 3], [3, 2, 1]])
    close(out[:, 1], [[3, 3, 2], [5, 5, 5]])


def test_argmax_axis():
    x = RNG.normal(size=(2, 4, 3))
    layer = make('type: "ArgMax" argmax_param { axis: 1 top_k: 2 }', [x.shape])
    assert layer.reshape([x.shape]) == [(2, 2, 3)]
    order = np.argsort(-x, axis=1, kind="stable")[:, :2]
    close(fwd(layer, x)[0], order)
    layer = make('type: "ArgMax" argmax_param { axis: 1 out_max_val: true }', [x.shape])
    close(fwd(layer, x)[0], x.max(1, keepdims=True))
    with pytest.raises(NetError, match="top_k"):
        make('type: "ArgMax" argmax_param { axis: 1 top_k: 5 }', [x.shape]).reshape([x.shape])


@pytest.mark.parametrize("op,f,df", [
    ("SUM", lambda v: v.sum(-1), lambda v: np.ones_like(v)),
    ("ASUM", lambda v: np.abs(v).sum(-1), np.sign),
    ("SUMSQ", lambda v: (v * v).sum(-1), lambda v: 2 * v),
    ("MEAN", lambda v: v.mean(-1), lambda v: np.full_like(v, 1 / v.shape[-1])),
])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reduction(op, f, df, axis):
    x = RNG.normal(size=(2, 3, 4))
    layer = make(f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: -1.5 }}',
                 [x.shape])
    a = axis % 3
    lead = x.shape[:a]
    xt = torch.tensor(x, requires_grad=True)
    y = layer.forward([xt])[0]
    dy = RNG.normal(size=lead)
    y.backward(torch.tensor(dy))
    flat = x.reshape(lead + (-1,))
    close(y.detach().numpy(), -1.5 * f(flat))
    close(xt.grad.numpy(), (-1.5 * np.asarray(dy)[..., None] * df(flat)).reshape(x.shape))
    assert layer.reshape([x.shape]) == [lead]


def test_input_shapes():
    layer = make('type: "Input" input_param { shape { dim: 2 dim: 3 } }', [], ntops=2)
    assert layer.reshape([]) == [(2, 3), (2, 3)] and layer.is_input
    with pytest.raises(NetError, match="'c'"):
        make('type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } shape { dim: 3 } }',
             [], ntops=2).reshape([])


def test_dummy_data_fillers_and_shapes():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } '
            'data_filler { type: "constant" value: 1.5 } data_filler { type: "gaussian" std: 2 } }')
    layer = make(text, [], ntops=2)
    assert layer.reshape([]) == [(2, 3), (4,)]
    c1, g1 = fwd(layer)
    c2, g2 = fwd(layer)
    close(c1, np.full((2, 3), 1.5)); close(c2, c1)
    assert (g1 != g2).all()            # non-constant fillers draw anew each forward
    legacy = make('type: "DummyData" dummy_data_param { num: 2 channels: 3 channels: 1 '
                  'height: 4 width: 5 }', [], ntops=2)
    assert legacy.reshape([]) == [(2, 3, 4, 5), (2, 1, 4, 5)]
    out = fwd(legacy)
    assert out[0].shape == (2, 3, 4, 5) and not out[0].any()      # default constant 0
    with pytest.raises(NetError, match="'c'.*data_filler"):
        make('type: "DummyData" dummy_data_param { shape { dim: 1 } data_filler {} '
             'data_filler {} }', [], ntops=3)
