"""Neuron layers vs NumPy references from Caffe's formulas, plus finite-difference checks."""

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import cos.engine.layers  # noqa: F401  (registers the layer types)
from cos.engine.layer import TEST, TRAIN, layer_class
from cos.errors import NetError
from cos.proto import caffe_pb2


def make(text, shapes, phase=TRAIN, seed=1):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    if not lp.name:
        lp.name = "l"
    if not len(lp.top):
        lp.top.append("t")
    layer = layer_class(lp.type, lp.name)(lp, phase, torch.float64, "cpu",
                                          torch.Generator().manual_seed(seed))
    layer.setup(shapes)
    return layer


def run(layer, x, dy=None):
    """Forward then backward with top diff dy; returns (y, dx) as NumPy arrays."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = layer.forward([xt])[0]
    if dy is None:
        dy = np.ones(y.shape)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy()


def close(a, b, rtol=1e-5):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def fd_check(layer, x, eps=1e-6):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer.forward([t])[0], (xt,), eps=eps, atol=1e-6)


RNG = np.random.default_rng(0)
X = RNG.uniform(-2, 2, (2, 3, 2, 2))
X[X == 0] = 0.5
DY = RNG.uniform(-1, 1, X.shape)


def sig(v):
    return 1 / (1 + np.exp(-v))


CASES = [
    ('type: "ReLU"', lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    ('type: "ReLU" relu_param { negative_slope: 0.1 }',
     lambda x: np.where(x > 0, x, 0.1 * x), lambda x: np.where(x > 0, 1.0, 0.1)),
    ('type: "ELU" elu_param { alpha: 0.7 }',
     lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1)), lambda x: np.where(x > 0, 1, 0.7 * np.exp(x))),
    ('type: "Sigmoid"', sig, lambda x: sig(x) * (1 - sig(x))),
    ('type: "TanH"', np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ('type: "AbsVal"', np.abs, np.sign),
    ('type: "BNLL"', lambda x: np.log1p(np.exp(x)), sig),
    ('type: "Power" power_param { power: 3 scale: 0.5 shift: 2 }',
     lambda x: (2 + 0.5 * x) ** 3, lambda x: 1.5 * (2 + 0.5 * x) ** 2),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }',
     lambda x: 2 ** (1 + 0.5 * x), lambda x: 2 ** (1 + 0.5 * x) * np.log(2) * 0.5),
    ('type: "Exp"', np.exp, np.exp),
    ('type: "Log" log_param { base: 10 scale: 0.5 shift: 3 }',
     lambda x: np.log10(3 + 0.5 * x), lambda x: 0.5 / (3 + 0.5 * x) / np.log(10)),
    ('type: "Log" log_param { shift: 3 }', lambda x: np.log(3 + x), lambda x: 1 / (3 + x)),
    ('type: "Clip" clip_param { min: -1 max: 1.5 }',
     lambda x: np.clip(x, -1, 1.5), lambda x: ((x >= -1) & (x <= 1.5)) * 1.0),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * sig(1.5 * x),
     lambda x: sig(1.5 * x) + 1.5 * x * sig(1.5 * x) * (1 - sig(1.5 * x))),
]


@pytest.mark.parametrize("text,f,df", CASES, ids=[c[0] for c in CASES])
def test_forward_backward_match_reference(text, f, df):
    layer = make(text, [X.shape])
    y, dx = run(layer, X, DY)
    close(y, f(X))
    close(dx, DY * df(X))
    if "Clip" not in text and '"ReLU"' not in text and "AbsVal" not in text:
        fd_check(layer, X)


def test_kinks_follow_caffe():
    x = np.array([[-1.0, 0.0, 2.0]])
    _, dx = run(make('type: "ReLU" relu_param { negative_slope: 0.25 }', [x.shape]), x)
    close(dx, [[0.25, 0.25, 1.0]])   # gradient at 0 is the negative slope
    _, dx = run(make('type: "AbsVal"', [x.shape]), x)
    close(dx, [[-1.0, 0.0, 1.0]])    # sign(0) = 0
    _, dx = run(make('type: "Clip" clip_param { min: 0 max: 2 }', [x.shape]), x)
    close(dx, [[0.0, 1.0, 1.0]])     # both edges pass the gradient


def test_bnll_large_inputs_stay_finite():
    x = np.array([[-800.0, 60.0, 800.0]])
    y, dx = run(make('type: "BNLL"', [x.shape]), x)
    close(y, [[0.0, 60.0, 800.0]])
    e = np.exp(50.0)
    close(dx, [[0.0, e / (1 + e), e / (1 + e)]])


def test_power_special_cases():
    x = np.array([[-1.5, 0.5, 2.0]])
    y, dx = run(make('type: "Power" power_param { power: 0 scale: 3 shift: 2 }', [x.shape]), x)
    close(y, np.ones_like(x)); close(dx, np.zeros_like(x))
    y, dx = run(make('type: "Power" power_param { power: 2 scale: 0 shift: 3 }', [x.shape]), x)
    close(y, np.full_like(x, 9.0)); close(dx, np.zeros_like(x))
    y, dx = run(make('type: "Power" power_param { power: 1 scale: -2 shift: 1 }', [x.shape]), x)
    close(y, 1 - 2 * x); close(dx, np.full_like(x, -2.0))
    y, dx = run(make('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', [x.shape]), x)
    close(y, (1 + 0.5 * x) ** 2); close(dx, 2 * 0.5 * (1 + 0.5 * x))
    xp = np.array([[0.5, 1.0, 4.0]])
    y, dx = run(make('type: "Power" power_param { power: 0.5 scale: 2 }', [xp.shape]), xp)
    close(y, np.sqrt(2 * xp)); close(dx, 0.5 * 2 / np.sqrt(2 * xp))
    # shift 0: Caffe computes power·y/x, so x = 0 is not finite
    _, dx = run(make('type: "Power" power_param { power: 3 }', [(1, 1)]), np.zeros((1, 1)))
    assert not np.isfinite(dx).all()


def test_threshold_has_no_gradient():
    layer = make('type: "Threshold" threshold_param { threshold: 0.5 }', [X.shape])
    y = layer.forward([torch.tensor(X)])[0]
    close(y.numpy(), (X > 0.5) * 1.0)
    assert not layer.has_backward and not y.requires_grad


def test_prelu_forward_backward_and_filler():
    layer = make('type: "PReLU"', [X.shape])
    close(layer.blobs[0].tensor.detach().numpy(), np.full(3, 0.25))
    a = np.array([0.1, -0.3, 0.6])
    layer.blobs[0].tensor = torch.tensor(a, requires_grad=True)
    y, dx = run(layer, X, DY)
    ab = a[None, :, None, None]
    close(y, np.where(X > 0, X, ab * X))
    close(dx, DY * np.where(X > 0, 1.0, ab))
    da = (DY * X * (X <= 0)).sum(axis=(0, 2, 3))
    close(layer.blobs[0].tensor.grad.numpy(), da)
    shared = make('type: "PReLU" prelu_param { channel_shared: true }', [X.shape])
    assert tuple(shared.blobs[0].shape) == (1,)
    fd_check(layer, X)


def test_dropout_scales_in_train_and_is_identity_in_test():
    x = np.ones((4, 50))
    layer = make('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', [x.shape])
    y1, dx = run(layer, x)
    kept = y1 != 0
    close(y1[kept], np.full(kept.sum(), 1 / 0.7))
    close(dx, y1)                       # the gradient uses the same mask and scale
    assert 0.5 < kept.mean() < 0.9
    y2, _ = run(layer, x)
    assert (y1 != y2).any()             # a fresh mask each forward
    test = make('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', [x.shape], phase=TEST)
    y, dx = run(test, x)
    close(y, x); close(dx, np.ones_like(x))


def test_bad_parameters_name_the_layer():
    with pytest.raises(NetError, match="'l'.*dropout_ratio"):
        make('type: "Dropout" dropout_param { dropout_ratio: 1.0 }', [X.shape])
    with pytest.raises(NetError, match="'l'.*min"):
        make('type: "Clip" clip_param { min: 2 max: 1 }', [X.shape])
    with pytest.raises(NetError, match="base"):
        make('type: "Log" log_param { base: -2 }', [X.shape]).forward([torch.tensor(X)])


def test_reshape_keeps_shape():
    layer = make('type: "Swish"', [(2, 5)])
    assert layer.reshape([(2, 5)]) == [(2, 5)]
