"""Layers the real-Caffe fixtures don't cover, against NumPy references of Caffe's formulas
(float64, rel err <= 1e-5), plus finite-difference gradient checks on a few layers."""

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import cos.engine.layers  # noqa: F401  (registers the layer types)
from cos.engine.layer import TEST, TRAIN, layer_class
from cos.errors import NetError
from cos.proto import caffe_pb2
from cos.proto.blobs import array_to_blob

RTOL = 1e-5


def make(text, shapes, phase=TRAIN, ntops=1, seed=1):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.name = lp.name or "l"
    if not len(lp.top):
        lp.top.extend([f"t{k}" for k in range(ntops)])
    layer = layer_class(lp.type, lp.name)(lp, phase, torch.float64, "cpu",
                                          torch.Generator().manual_seed(seed))
    layer.setup([tuple(s) for s in shapes])
    return layer


def run(layer, arrays, dys=None, grad_of=None):
    """Forward, then backward with top diffs dys (default ones); returns (tops, bottom grads)."""
    grad_of = range(len(arrays)) if grad_of is None else grad_of
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=k in grad_of)
          for k, a in enumerate(arrays)]
    tops = layer.forward(ts)
    if dys is None:
        dys = [np.ones(t.shape) for t in tops]
    live = [(t, torch.tensor(d)) for t, d in zip(tops, dys) if t.requires_grad]
    if live:
        torch.autograd.backward([t for t, _ in live], [d for _, d in live])
    grads = [None if t.grad is None else t.grad.numpy() for t in ts]
    return [t.detach().numpy() for t in tops], grads


def close(a, b, rtol=RTOL):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def fd_gradient(layer, arrays, k=0, eps=1e-6, dys=None):
    """Central finite differences of Σ top·dy with respect to bottom k."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]

    def objective(values):
        with torch.no_grad():
            tops = layer.forward([torch.tensor(v) for v in values])
        ws = dys if dys is not None else [np.ones(t.shape) for t in tops]
        return sum(float((t.numpy() * w).sum()) for t, w in zip(tops, ws))

    grad = np.zeros_like(arrays[k])
    for i in np.ndindex(arrays[k].shape):
        plus = [a.copy() for a in arrays]
        minus = [a.copy() for a in arrays]
        plus[k][i] += eps
        minus[k][i] -= eps
        grad[i] = (objective(plus) - objective(minus)) / (2 * eps)
    return grad


def check_against_fd(layer, arrays, k=0, dys=None, rtol=1e-5, atol=1e-7):
    _, grads = run(layer, arrays, dys, grad_of=[k])
    np.testing.assert_allclose(grads[k], fd_gradient(layer, arrays, k, dys=dys),
                               rtol=rtol, atol=atol)


RNG = np.random.default_rng(7)
X = RNG.uniform(-3, 3, (2, 3, 2, 2))
X[np.abs(X) < 0.05] = 0.5
DY = RNG.uniform(-1, 1, X.shape)


def sig(v):
    return 1 / (1 + np.exp(-v))


# --- neuron layers -----------------------------------------------------------------------

NEURONS = [
    ('type: "TanH"', np.tanh, lambda x, y: 1 - y * y),
    ('type: "ELU" elu_param { alpha: 0.7 }',
     lambda x: np.where(x > 0, x, 0.7 * (np.exp(np.minimum(x, 0)) - 1)),
     lambda x, y: np.where(x > 0, 1, 0.7 + y)),
    ('type: "ELU"', lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1),
     lambda x, y: np.where(x > 0, 1, 1 + y)),
    ('type: "BNLL"', lambda x: np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x))),
     lambda x, y: np.exp(np.minimum(x, 50)) / (1 + np.exp(np.minimum(x, 50)))),
    ('type: "Clip" clip_param { min: -1 max: 1.5 }', lambda x: np.clip(x, -1, 1.5),
     lambda x, y: ((x >= -1) & (x <= 1.5)).astype(float)),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * sig(1.5 * x),
     lambda x, y: sig(1.5 * x) + 1.5 * y * (1 - sig(1.5 * x))),
    ('type: "Swish"', lambda x: x * sig(x), lambda x, y: sig(x) + y * (1 - sig(x))),
]


@pytest.mark.parametrize("text,f,df", NEURONS, ids=[n[0].split('"')[1] + str(i)
                                                    for i, n in enumerate(NEURONS)])
def test_neuron_forward_backward(text, f, df):
    layer = make(text, [X.shape])
    (y,), (dx,) = run(layer, [X], [DY])
    close(y, f(X))
    close(dx, DY * df(X, f(X)))


@pytest.mark.parametrize("text", ['type: "TanH"', 'type: "ELU" elu_param { alpha: 0.3 }',
                                  'type: "BNLL"', 'type: "Swish" swish_param { beta: 0.8 }'])
def test_neuron_finite_differences(text):
    check_against_fd(make(text, [X.shape]), [X], dys=[DY])


def test_clip_gradient_at_edges_and_bad_params():
    layer = make('type: "Clip" clip_param { min: -1 max: 1 }', [(4,)])
    x = np.array([-1.0, 1.0, 1.5, -2.0])
    (y,), (dx,) = run(layer, [x])
    close(y, [-1, 1, 1, -1])
    close(dx, [1, 1, 0, 0])
    with pytest.raises(NetError, match="min"):
        make('type: "Clip" clip_param { min: 2 max: 1 }', [(4,)])


def test_bnll_large_inputs_finite():
    layer = make('type: "BNLL"', [(3,)])
    (y,), (dx,) = run(layer, [np.array([-800.0, 0.0, 800.0])])
    close(y, [0.0, np.log(2), 800.0])
    assert np.all(np.isfinite(dx))


# --- Tile ---------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,tiles", [(1, 3), (0, 2), (-1, 2), (2, 1)])
def test_tile_forward_backward(axis, tiles):
    layer = make(f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}', [X.shape])
    reps = [1] * X.ndim
    reps[axis] = tiles
    want = np.tile(X, reps)
    dy = RNG.uniform(-1, 1, want.shape)
    (y,), (dx,) = run(layer, [X], [dy])
    close(y, want)
    a = axis % X.ndim
    parts = dy.reshape(X.shape[:a] + (tiles,) + (int(np.prod(X.shape[a:])),))
    close(dx, parts.sum(axis=a).reshape(X.shape))
    assert layer.reshape([X.shape]) == [want.shape]


def test_tile_needs_tiles():
    with pytest.raises(NetError, match="tiles"):
        make('type: "Tile" tile_param { axis: 1 }', [X.shape])


# --- loss layers --------------------------------------------------------------------------

def test_euclidean_loss():
    a, b = RNG.normal(size=(4, 3, 2)), RNG.normal(size=(4, 6))
    layer = make('type: "EuclideanLoss"', [a.shape, b.shape])
    (loss,), (da, db) = run(layer, [a, b], [np.array(2.0)])
    diff = a - b.reshape(a.shape)
    close(loss, (diff ** 2).sum() / 4 / 2)
    close(da, 2.0 * diff / 4)
    close(db, -2.0 * diff.reshape(b.shape) / 4)
    assert layer.reshape([a.shape, b.shape]) == [()]


def test_euclidean_loss_finite_differences():
    a, b = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    check_against_fd(make('type: "EuclideanLoss"', [a.shape, b.shape]), [a, b], k=1)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def infogain_ref(scores, labels, H):
    p = softmax(scores)
    rows = H[labels.astype(int)]
    loss = -(rows * np.log(np.maximum(p, np.finfo(np.float32).tiny))).sum() / len(labels)
    grad = (p * rows.sum(axis=1, keepdims=True) - rows) / len(labels)
    return loss, grad


def test_infogain_loss_h_from_bottom():
    scores = RNG.normal(size=(5, 4))
    labels = np.array([0, 3, 1, 1, 2], dtype=float)
    H = RNG.uniform(0, 1, (4, 4))
    layer = make('type: "InfogainLoss"', [scores.shape, labels.shape, H.shape])
    (loss,), grads = run(layer, [scores, labels, H], grad_of=[0])
    want_loss, want_grad = infogain_ref(scores, labels, H)
    close(loss, want_loss)
    close(grads[0], want_grad)


def test_infogain_loss_h_from_file(tmp_path):
    scores = RNG.normal(size=(3, 3))
    labels = np.array([2, 0, 1], dtype=float)
    H = RNG.uniform(0, 2, (1, 1, 3, 3))
    path = tmp_path / "H.binaryproto"
    path.write_bytes(array_to_blob(H).SerializeToString())
    layer = make(f'type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }}',
                 [scores.shape, labels.shape])
    (loss,), grads = run(layer, [scores, labels], grad_of=[0])
    want_loss, want_grad = infogain_ref(scores, labels, H.reshape(3, 3))
    close(loss, want_loss)
    close(grads[0], want_grad)


def test_infogain_identity_gradient_matches_finite_differences():
    scores = RNG.normal(size=(4, 3))
    labels = np.array([2, 0, 1, 1], dtype=float)
    layer = make('type: "InfogainLoss"', [scores.shape, labels.shape, (3, 3)])
    check_against_fd(layer, [scores, labels, np.eye(3)], k=0)


def test_infogain_needs_h():
    with pytest.raises(NetError):
        make('type: "InfogainLoss"', [(2, 3), (2,)])


def test_multinomial_logistic_loss():
    prob = softmax(RNG.normal(size=(4, 5)))
    prob[2, 1] = 0.0  # clamped at 1e-20
    labels = np.array([0, 4, 1, 2], dtype=float)
    layer = make('type: "MultinomialLogisticLoss"', [prob.shape, labels.shape])
    (loss,), grads = run(layer, [prob, labels], grad_of=[0])
    picked = np.maximum(prob[np.arange(4), labels.astype(int)], 1e-20)
    close(loss, -np.log(picked).sum() / 4)
    want = np.zeros_like(prob)
    want[np.arange(4), labels.astype(int)] = -1 / picked / 4
    close(grads[0], want)


def test_multinomial_logistic_loss_bad_label():
    layer = make('type: "MultinomialLogisticLoss"', [(2, 3), (2,)])
    with pytest.raises(NetError, match="out of range"):
        run(layer, [np.full((2, 3), 1 / 3), np.array([0.0, 3.0])], grad_of=[])


# --- DummyData and Silence ----------------------------------------------------------------

def test_dummy_data_constant_and_gaussian():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } '
            'data_filler { type: "constant" value: 1.5 } '
            'data_filler { type: "gaussian" std: 2 } }')
    layer = make(text, [], ntops=2)
    assert layer.reshape([]) == [(2, 3), (4,)]
    first = [t.clone() for t in layer.forward([])]
    second = layer.forward([])
    close(first[0].numpy(), np.full((2, 3), 1.5))
    close(second[0].numpy(), first[0].numpy())
    assert not np.allclose(first[1].numpy(), second[1].numpy())


def test_dummy_data_legacy_dims_and_default_filler():
    text = 'type: "DummyData" dummy_data_param { num: 2 channels: 3 height: 1 width: 2 }'
    layer = make(text, [], ntops=2)
    assert layer.reshape([]) == [(2, 3, 1, 2)] * 2
    for t in layer.forward([]):
        close(t.numpy(), np.zeros((2, 3, 1, 2)))


def test_silence_has_no_tops():
    lp = text_format.Parse('name: "s" type: "Silence" bottom: "a" bottom: "b"',
                           caffe_pb2.LayerParameter())
    layer = layer_class("Silence")(lp, TEST, torch.float64)
    layer.setup([(2, 3), (4,)])
    assert layer.reshape([(2, 3), (4,)]) == []
    assert layer.forward([torch.zeros(2, 3), torch.zeros(4)]) == []


# --- finite-difference checks on some fixture-covered layers in float64 ------------------

@pytest.mark.parametrize("text", [
    'type: "LRN" lrn_param { local_size: 3 alpha: 0.4 beta: 0.75 k: 2 }',
    'type: "LRN" lrn_param { local_size: 3 alpha: 0.4 beta: 0.75 norm_region: WITHIN_CHANNEL }',
    'type: "MVN"',
    'type: "MVN" mvn_param { across_channels: true }',
])
def test_normalization_finite_differences(text):
    check_against_fd(make(text, [X.shape]), [X], dys=[DY], rtol=1e-4, atol=1e-6)


def test_lrn_across_matches_torch():
    layer = make('type: "LRN" lrn_param { local_size: 5 alpha: 0.3 beta: 0.6 k: 1.5 }',
                 [X.shape])
    (y,), _ = run(layer, [X], grad_of=[])
    want = torch.nn.LocalResponseNorm(5, 0.3, 0.6, 1.5)(torch.tensor(X)).numpy()
    close(y, want)


def test_eltwise_prod_both_gradients():
    a, b = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    for stable in ("true", "false"):
        layer = make(f'type: "Eltwise" eltwise_param {{ operation: PROD stable_prod_grad: {stable} }}',
                     [a.shape, b.shape])
        (y,), (da, db) = run(layer, [a, b])
        close(y, a * b)
        close(da, b)
        close(db, a)


def test_batchnorm_global_uses_accumulators():
    layer = make('type: "BatchNorm"', [X.shape], phase=TEST)
    with torch.no_grad():
        layer.blobs[0].tensor.copy_(torch.tensor([2.0, 4.0, 6.0]))
        layer.blobs[1].tensor.copy_(torch.tensor([8.0, 2.0, 4.0]))
        layer.blobs[2].tensor.copy_(torch.tensor([2.0]))
    (y,), (dx,) = run(layer, [X], [DY])
    mean = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    std = np.sqrt(np.array([4.0, 1.0, 2.0]).reshape(1, 3, 1, 1) + 1e-5)
    close(y, (X - mean) / std)
    close(dx, DY / std)


def test_reshape_and_slice_shapes():
    layer = make('type: "Reshape" bottom: "x" top: "y" '
                 'reshape_param { axis: -1 shape { dim: 1 dim: 1 } }', [X.shape])
    assert layer.reshape([X.shape]) == [X.shape + (1, 1)]
    layer = make('type: "Slice" slice_param { axis: 0 }', [X.shape], ntops=2)
    assert layer.reshape([X.shape]) == [(1, 3, 2, 2)] * 2


def test_eltwise_max_ties_first_pair_to_bottom1_then_strict():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 1.0, 3.0])
    c = np.array([1.0, 2.0, 4.0])
    layer = make('type: "Eltwise" eltwise_param { operation: MAX }', [a.shape] * 3)
    (y,), (da, db, dc) = run(layer, [a, b, c])
    close(y, [1, 2, 4])
    close(da, [0, 1, 0])
    close(db, [1, 0, 0])
    close(dc, [0, 0, 1])


def test_scale_from_bottom_and_crop_single_offset():
    x, s = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3,))
    layer = make('type: "Scale"', [x.shape, s.shape])
    (y,), (dx, ds) = run(layer, [x, s], [DY.reshape(2, 3, 4)])
    close(y, x * s[None, :, None])
    close(ds, (DY.reshape(2, 3, 4) * x).sum(axis=(0, 2)))
    layer = make('type: "Crop" crop_param { axis: 1 offset: 1 }', [(2, 3, 4), (2, 2, 2)])
    (y,), (dx, db) = run(layer, [x, np.zeros((2, 2, 2))])
    close(y, x[:, 1:3, 1:3])
    assert db is None and dx.sum() == 8
