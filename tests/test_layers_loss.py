"""Loss layers vs NumPy references: values, gradients, normalization modes, ignore_label, clamps."""

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import cos.engine.layers  # noqa: F401  (registers the layer types)
from cos.engine.layer import TRAIN, layer_class
from cos.errors import NetError
from cos.proto import caffe_pb2

RNG = np.random.default_rng(3)


def make(text, shapes, ntops=1):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.name = "loss"
    lp.top.extend([f"t{k}" for k in range(ntops)])
    layer = layer_class(lp.type, lp.name)(lp, TRAIN, torch.float64, "cpu",
                                          torch.Generator().manual_seed(0))
    layer.setup(shapes)
    return layer


def run(layer, *arrays, weight=1.0):
    """Forward, then backward seeded with the loss weight; returns (loss, grads, tops)."""
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tops = layer.forward(ts)
    assert tops[0].shape == ()
    tops[0].backward(torch.tensor(weight, dtype=torch.float64))
    grads = [None if t.grad is None else t.grad.numpy() for t in ts]
    return tops[0].item(), grads, tops


def close(a, b, rtol=1e-5):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def fd_grad(layer, arrays, k=0, eps=1e-6):
    """Central finite differences of the loss w.r.t. arrays[k]."""
    base = [a.copy() for a in arrays]
    g = np.zeros_like(base[k])
    for i in np.ndindex(g.shape):
        vals = []
        for s in (eps, -eps):
            cur = [a.copy() for a in base]
            cur[k][i] += s
            vals.append(layer.forward([torch.tensor(a) for a in cur])[0].item())
        g[i] = (vals[0] - vals[1]) / (2 * eps)
    return g


# --- SoftmaxWithLoss ------------------------------------------------------------

X = RNG.normal(size=(3, 4, 2))          # N=3, C=4, inner=2
LAB = np.array([[0, 3], [2, 1], [1, 1]], dtype=float)


def softmax_ref(x, lab, norm_mode, ignore=None):
    p = softmax(x)
    onehot = np.zeros_like(p)
    valid = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    loss = 0.0
    for n, h in np.ndindex(lab.shape):
        if valid[n, h]:
            loss -= np.log(max(p[n, int(lab[n, h]), h], np.finfo(np.float32).tiny))
            onehot[n, int(lab[n, h]), h] = 1
    norm = {"FULL": lab.size, "VALID": valid.sum(), "BATCH_SIZE": lab.shape[0], "NONE": 1}[norm_mode]
    norm = max(norm, 1)
    return loss / norm, (p - onehot) * valid[:, None, :] / norm


@pytest.mark.parametrize("param,mode", [
    ("", "VALID"),
    ("normalization: FULL", "FULL"),
    ("normalization: BATCH_SIZE", "BATCH_SIZE"),
    ("normalization: NONE", "NONE"),
    ("normalize: false", "BATCH_SIZE"),
    ("normalize: true", "VALID"),
    ("normalize: false normalization: FULL", "FULL"),
])
@pytest.mark.parametrize("ignore", [None, 1])
def test_softmax_loss_normalization_and_ignore(param, mode, ignore):
    text = f'type: "SoftmaxWithLoss" loss_param {{ {param} '
    text += (f"ignore_label: {ignore} " if ignore is not None else "") + "}"
    layer = make(text, [X.shape, LAB.shape])
    loss, (dx, dl), _ = run(layer, X, LAB, weight=2.0)
    ref, ref_dx = softmax_ref(X, LAB, mode, ignore)
    close(loss, ref)
    close(dx, 2.0 * ref_dx)
    assert dl is None
    close(dx, 2.0 * fd_grad(layer, [X, LAB]), rtol=1e-4)


def test_softmax_loss_clamps_loss_not_gradient_and_prob_top():
    x = np.array([[0.0, 200.0]])
    lab = np.array([0.0])
    layer = make('type: "SoftmaxWithLoss"', [x.shape, lab.shape], ntops=2)
    loss, (dx, _), tops = run(layer, x, lab)
    close(loss, 87.3365447505531, rtol=1e-7)      # -log(FLT_MIN)
    close(dx, [[-1.0, 1.0]])                      # p − onehot, unclamped
    close(tops[1].detach().numpy(), softmax(x))


def test_softmax_loss_axis_and_truncated_labels():
    x = RNG.normal(size=(2, 3, 5))
    lab = np.array([[1.7, -0.0, 4.9], [0.2, 3.99, 2.5]])   # truncated toward zero
    layer = make('type: "SoftmaxWithLoss" softmax_param { axis: 2 }', [x.shape, lab.shape])
    loss, (dx, _), _ = run(layer, x, lab)
    xt = np.moveaxis(x, 2, 1)
    ref, ref_dx = softmax_ref(xt, np.trunc(lab), "VALID")
    close(loss, ref)
    close(dx, np.moveaxis(ref_dx, 1, 2))


def test_softmax_loss_bad_label_and_all_ignored():
    layer = make('type: "SoftmaxWithLoss"', [(2, 3), (2,)])
    with pytest.raises(NetError, match="'loss'.*label 3"):
        layer.forward([torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0.0, 3.0])])
    layer = make('type: "SoftmaxWithLoss" loss_param { ignore_label: 0 }', [(2, 3), (2,)])
    loss, (dx, _), _ = run(layer, np.ones((2, 3)), np.zeros(2))
    assert loss == 0.0 and not dx.any()
    with pytest.raises(NetError, match="label count"):
        make('type: "SoftmaxWithLoss"', [(2, 3), (3,)]).reshape([(2, 3), (3,)])


# --- other losses ------------------------------------------------------------------

def test_euclidean_loss_both_bottoms_get_gradient():
    a, b = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    layer = make('type: "EuclideanLoss"', [a.shape, b.shape])
    loss, (da, db), _ = run(layer, a, b, weight=0.5)
    close(loss, ((a - b) ** 2).sum() / 4 / 2)
    close(da, 0.5 * (a - b) / 4)
    close(db, -0.5 * (a - b) / 4)


@pytest.mark.parametrize("param,norm", [("", 3), ("normalization: FULL", 12),
                                        ("normalization: VALID", 10), ("normalize: true", 10),
                                        ("normalization: NONE", 1)])
def test_sigmoid_cross_entropy(param, norm):
    x = RNG.normal(scale=3, size=(3, 4))
    t = (RNG.uniform(size=(3, 4)) > 0.5).astype(float)
    t[0, 0] = t[2, 3] = -1
    layer = make(f'type: "SigmoidCrossEntropyLoss" loss_param {{ ignore_label: -1 {param} }}',
                 [x.shape, t.shape])
    loss, (dx, dt), _ = run(layer, x, t)
    valid = t != -1
    s = 1 / (1 + np.exp(-x))
    ref = -(valid * (t * np.log(s) + (1 - t) * np.log(1 - s))).sum() / norm
    close(loss, ref)
    close(dx, valid * (s - t) / norm)
    assert dt is None


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(norm):
    x = RNG.normal(size=(4, 3))
    x[1, 2] = -1.0                       # exactly on the hinge: 1 + x = 0
    lab = np.array([0.0, 1.0, 2.0, 1.0])
    layer = make(f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', [x.shape, lab.shape])
    loss, (dx, _), _ = run(layer, x, lab)
    sign = np.ones_like(x)
    sign[np.arange(4), lab.astype(int)] = -1
    m = np.maximum(0, 1 + sign * x)
    if norm == "L1":
        close(loss, m.sum() / 4)
        close(dx, np.sign(m) * sign / 4)
    else:
        close(loss, (m ** 2).sum() / 4)
        close(dx, 2 * m * sign / 4)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy):
    a, b = RNG.normal(size=(5, 3, 1, 1)), RNG.normal(size=(5, 3, 1, 1))
    b[4] = a[4]                                   # a dissimilar pair at distance 0
    sim = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    margin = 2.0
    layer = make(f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
                 f'legacy_version: {str(legacy).lower()} }}', [a.shape, b.shape, sim.shape])
    loss, (da, db, ds), _ = run(layer, a, b, sim)
    diff = (a - b).reshape(5, 3)
    d2 = (diff ** 2).sum(1)
    d = np.sqrt(d2)
    if legacy:
        per = np.where(sim == 1, d2, np.maximum(margin - d2, 0))
        coef = np.where(sim == 1, 1.0, -1.0 * (margin - d2 > 0))
    else:
        per = np.where(sim == 1, d2, np.maximum(margin - d, 0) ** 2)
        coef = np.where(sim == 1, 1.0, -np.maximum(margin - d, 0) / (d + 1e-4))
    close(loss, per.sum() / 10)
    close(da.reshape(5, 3), coef[:, None] * diff / 5)
    close(db, -da)
    assert ds is None


def test_infogain_loss_from_bottom_and_file(tmp_path):
    x = RNG.normal(size=(4, 3))
    lab = np.array([0.0, 2.0, 1.0, 2.0])
    H = RNG.uniform(size=(3, 3))
    p = softmax(x)
    rows = H[lab.astype(int)]
    ref = -(rows * np.log(p)).sum() / 4
    ref_dx = (p * rows.sum(1, keepdims=True) - rows) / 4
    layer = make('type: "InfogainLoss"', [x.shape, lab.shape, H.shape])
    loss, (dx, dl, dH), _ = run(layer, x, lab, H)
    close(loss, ref); close(dx, ref_dx)
    assert dl is None and dH is None
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, 3, 3])
    blob.data.extend(H.reshape(-1).tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob.SerializeToString())
    layer = make(f'type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }}',
                 [x.shape, lab.shape])
    loss, (dx, _), _ = run(layer, x, lab)
    close(loss, ref, rtol=1e-6); close(dx, ref_dx, rtol=1e-6)   # H stored as float32
    with pytest.raises(NetError, match="'loss'.*source"):
        make('type: "InfogainLoss"', [x.shape, lab.shape])


def test_infogain_identity_equals_softmax_loss():
    x = RNG.normal(size=(3, 4, 2))
    layer = make('type: "InfogainLoss" loss_param { ignore_label: 1 }', [x.shape, LAB.shape, (4, 4)])
    loss, (dx, _, _), _ = run(layer, x, LAB, np.eye(4))
    ref, ref_dx = softmax_ref(x, LAB, "VALID", ignore=1)
    close(loss, ref); close(dx, ref_dx)


def test_multinomial_logistic_loss_and_threshold():
    p = softmax(RNG.normal(size=(3, 4)))
    p[2, 1] = 0.0                                 # clamped at 1e-20, gradient still −1/1e-20
    lab = np.array([3.0, 0.0, 1.0])
    layer = make('type: "MultinomialLogisticLoss"', [p.shape, lab.shape])
    loss, (dp, _), _ = run(layer, p, lab)
    pl = np.maximum(p[np.arange(3), lab.astype(int)], 1e-20)
    close(loss, -np.log(pl).sum() / 3)
    ref = np.zeros_like(p)
    ref[np.arange(3), lab.astype(int)] = -1 / pl / 3
    close(dp, ref)


def test_loss_layers_report_scalar_shape():
    for text, shapes in [('type: "EuclideanLoss"', [(2, 3), (2, 3)]),
                         ('type: "HingeLoss"', [(2, 3), (2,)]),
                         ('type: "SigmoidCrossEntropyLoss"', [(2, 3), (2, 3)])]:
        layer = make(text, shapes)
        assert layer.is_loss and layer.reshape(shapes) == [()]


def test_softmax_loss_hopeless_sample_in_float32():
    lp = text_format.Parse('name: "loss" type: "SoftmaxWithLoss" top: "l"', caffe_pb2.LayerParameter())
    layer = layer_class(lp.type)(lp, TRAIN, torch.float32)
    x = torch.tensor([[0.0, 200.0]], requires_grad=True)
    loss = layer.forward([x, torch.tensor([0.0])])[0]
    loss.backward()
    assert loss.dtype == torch.float32
    close(loss.item(), 87.3365, rtol=1e-4)
    close(x.grad.numpy(), [[-1.0, 1.0]])


def test_loss_weight_scales_gradient_in_a_net():
    from cos.engine.net import Net
    text = """
    name: "w"
    layer { name: "d" type: "DummyData" top: "x" top: "y"
            dummy_data_param { shape { dim: 3 dim: 2 } shape { dim: 3 dim: 1 }
                               data_filler { type: "gaussian" } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
            inner_product_param { num_output: 1 bias_term: false weight_filler { type: "gaussian" } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "l" loss_weight: 3 }
    """
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), phase=TRAIN,
              dtype=torch.float64, seed=4)
    loss = net.forward_backward()
    x, y = net.blobs["x"].tensor.detach().numpy(), net.blobs["y"].tensor.detach().numpy()
    w = net.layer_dict["ip"].blobs[0].tensor.detach().numpy()
    r = x @ w.T - y
    close(loss, 3 * (r ** 2).sum() / 3 / 2)
    close(net.layer_dict["ip"].blobs[0].tensor.grad.numpy(), 3 * (r.T @ x) / 3)
