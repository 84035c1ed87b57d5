"""Concat, Slice, Split, Flatten, Reshape, Eltwise, Crop, Tile, Embed, Silence, Parameter
against NumPy references (float64) and finite-difference gradients."""

import numpy as np
import pytest
import torch

from layer_check import check_gradient, make_layer, run_forward
from cos.errors import NetError

RNG = np.random.default_rng(0)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


def test_concat_and_legacy_slice_roundtrip():
    a, b = RNG.standard_normal((2, 3, 2)), RNG.standard_normal((2, 1, 2))
    layer, shapes = make_layer('type: "Concat"', [a.shape, b.shape])
    assert shapes == [(2, 4, 2)]
    y = run_forward(layer, [a, b])[0]
    close(y, np.concatenate([a, b], axis=1))
    check_gradient(layer, [a, b])
    layer, shapes = make_layer('type: "Slice" slice_param { slice_dim: 1 slice_point: 1'
                               ' slice_point: 3 }', [y.shape], ntops=3)
    assert shapes == [(2, 1, 2), (2, 2, 2), (2, 1, 2)]
    parts = run_forward(layer, [y])
    for got, want in zip(parts, np.split(y, [1, 3], axis=1)):
        close(got, want)
    check_gradient(layer, [y])


def test_split_sums_gradients():
    x = RNG.standard_normal((2, 3))
    layer, _ = make_layer('type: "Split"', [x.shape], ntops=3)
    xt = torch.tensor(x, requires_grad=True)
    tops = layer.forward([xt])
    for k, t in enumerate(tops):
        close(t.detach().numpy(), x)
        (float(k + 1) * t).sum().backward(retain_graph=True)
    close(xt.grad.numpy(), np.full(x.shape, 6.0))


@pytest.mark.parametrize("text,shape,want", [
    ('reshape_param { shape { dim: 0 dim: -1 } }', (2, 3, 4), (2, 12)),
    ('reshape_param { shape { dim: 0 dim: 2 dim: -1 } }', (2, 3, 4), (2, 2, 6)),
    ('reshape_param { axis: 1 num_axes: 1 shape { dim: 3 dim: 1 } }', (2, 3, 4), (2, 3, 1, 4)),
    ('reshape_param { axis: -2 shape { dim: 2 dim: 2 } }', (2, 3, 4), (2, 3, 2, 2)),
    ('reshape_param { axis: -1 num_axes: 0 shape { dim: 1 } }', (2, 3), (2, 3, 1)),
    ('reshape_param { axis: 0 num_axes: 0 shape { dim: 1 } }', (2, 3), (1, 2, 3)),
])
def test_reshape_inference(text, shape, want):
    layer, shapes = make_layer('type: "Reshape" ' + text, [shape])
    assert shapes == [want]
    x = RNG.standard_normal(shape)
    close(run_forward(layer, [x])[0], x.reshape(want))


def test_reshape_and_flatten_bad_counts_fail():
    with pytest.raises(NetError):
        make_layer('type: "Reshape" reshape_param { shape { dim: 5 dim: -1 } }', [(2, 3)])
    with pytest.raises(NetError):
        make_layer('type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }', [(2, 3)])
    layer, shapes = make_layer('type: "Flatten" flatten_param { axis: 1 end_axis: 2 }',
                               [(2, 3, 4, 5)])
    assert shapes == [(2, 12, 5)]


def test_eltwise_sum_prod_and_max_ties():
    a, b, c = (RNG.standard_normal((2, 3)) for _ in range(3))
    layer, _ = make_layer('type: "Eltwise" eltwise_param { operation: SUM coeff: 1 coeff: -2'
                          ' coeff: 0.5 }', [a.shape] * 3)
    close(run_forward(layer, [a, b, c])[0], a - 2 * b + 0.5 * c)
    for stable in ("true", "false"):
        layer, _ = make_layer(f'type: "Eltwise" eltwise_param {{ operation: PROD'
                              f' stable_prod_grad: {stable} }}', [a.shape] * 3)
        close(run_forward(layer, [a, b, c])[0], a * b * c)
        check_gradient(layer, [a, b, c])
    # MAX: ties in the first pair go to bottom 1, later pairs need strictly greater
    x0 = np.array([[1.0, 2.0, 0.0]])
    x1 = np.array([[1.0, 1.0, 3.0]])
    x2 = np.array([[1.0, 2.0, 3.0]])
    layer, _ = make_layer('type: "Eltwise" eltwise_param { operation: MAX }', [x0.shape] * 3)
    ts = [torch.tensor(v, requires_grad=True) for v in (x0, x1, x2)]
    y = layer.forward(ts)[0]
    close(y.detach().numpy(), [[1.0, 2.0, 3.0]])
    y.sum().backward()
    close(ts[0].grad.numpy(), [[0, 1, 0]])
    close(ts[1].grad.numpy(), [[1, 0, 1]])
    close(ts[2].grad.numpy(), [[0, 0, 0]])


def test_crop_tile():
    x, ref = RNG.standard_normal((2, 3, 5, 6)), np.zeros((1, 1, 3, 2))
    layer, shapes = make_layer('type: "Crop" crop_param { axis: 2 offset: 1 offset: 3 }',
                               [x.shape, ref.shape])
    assert shapes == [(2, 3, 3, 2)]
    close(run_forward(layer, [x, ref])[0], x[:, :, 1:4, 3:5])
    check_gradient(layer, [x[:1, :1], ref], check=[0])
    x = RNG.standard_normal((2, 3))
    layer, shapes = make_layer('type: "Tile" tile_param { axis: 1 tiles: 3 }', [x.shape])
    close(run_forward(layer, [x])[0], np.tile(x, (1, 3)))
    check_gradient(layer, [x])


def test_embed_lookup_and_bad_index():
    text = ('name: "emb" type: "Embed" embed_param { num_output: 3 input_dim: 4'
            ' weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }')
    layer, shapes = make_layer(text, [(2, 2)])
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (4, 3) and shapes == [(2, 2, 3)]
    idx = np.array([[0, 3], [2, 2]], dtype=np.float64)
    close(run_forward(layer, [idx])[0], w[idx.astype(int)] + b)
    xt = torch.tensor(idx)
    layer.forward([xt])[0].sum().backward()
    close(layer.blobs[0].diff, np.bincount(idx.astype(int).ravel(), minlength=4)[:, None]
          * np.ones((4, 3)))
    with pytest.raises(NetError, match="emb"):
        run_forward(layer, [np.array([[4.0, 0.0]])])


def test_silence_and_parameter():
    layer, shapes = make_layer('type: "Silence"', [(2, 3)], ntops=0)
    assert shapes == [] and run_forward(layer, [np.ones((2, 3))]) == []
    layer, shapes = make_layer('type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }',
                               [])
    assert shapes == [(2, 3)] and layer.blobs[0].shape == (2, 3)
    close(run_forward(layer, [])[0], layer.blobs[0].data)
