"""Vision layers (Convolution, Deconvolution, Pooling, InnerProduct, LRN) against NumPy
references of Caffe's formulas (float64, rel err <= 1e-5) and finite-difference gradients."""

import numpy as np
import pytest
import torch

from layer_check import check_gradient, make_layer, run_forward
from cos.engine.layer import TEST
from cos.errors import NetError

RTOL = 1e-5


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12)


def caffe_pool_size(h, k, s, p):
    out = int(np.ceil((h + 2 * p - k) / s)) + 1
    if p > 0 and (out - 1) * s >= h + p:
        out -= 1
    return out


def np_pool(x, k, s, p, method):
    """Caffe's pooling loops: windows clipped to the image, AVE divisor counts padding
    but not the overhang beyond H+pad; MAX keeps the first maximum (mask = h*W+w)."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x.shape
    oh, ow = caffe_pool_size(h, kh, sh, ph), caffe_pool_size(w, kw, sw, pw)
    y = np.zeros((n, c, oh, ow))
    mask = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            if method == "AVE":
                y[:, :, i, j] = win.sum(axis=(2, 3)) / size
            else:
                flat = win.reshape(n, c, -1)
                arg = flat.argmax(axis=2)
                y[:, :, i, j] = flat.max(axis=2)
                mask[:, :, i, j] = (hs + arg // (we - ws)) * w + ws + arg % (we - ws)
    return y, mask


POOL_CASES = [  # (H, W, kernel, stride, pad)
    ((7, 7), (3, 3), (2, 2), (0, 0)),   # ceil overhang
    ((6, 6), (3, 3), (2, 2), (1, 1)),   # pad clip rule
    ((5, 7), (2, 3), (3, 2), (0, 1)),   # rectangular, stride > kernel
    ((4, 5), (3, 3), (1, 1), (2, 2)),   # pad up to k-1
    ((8, 8), (2, 2), (2, 2), (0, 0)),   # plain grid (native path)
]


def pool_text(method, k, s, p, extra=""):
    return (f'type: "Pooling" pooling_param {{ pool: {method} kernel_h: {k[0]} kernel_w: {k[1]}'
            f' stride_h: {s[0]} stride_w: {s[1]} pad_h: {p[0]} pad_w: {p[1]} {extra} }}')


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("hw,k,s,p", POOL_CASES)
def test_pooling_matches_caffe_loops(method, hw, k, s, p):
    x = np.random.default_rng(0).standard_normal((2, 2) + hw)
    ntops = 2 if method == "MAX" else 1
    layer, shapes = make_layer(pool_text(method, k, s, p), [x.shape], ntops=ntops)
    want, mask = np_pool(x, k, s, p, method)
    assert shapes[0] == want.shape
    tops = run_forward(layer, [x])
    close(tops[0], want)
    if method == "MAX":
        close(tops[1], mask)
    layer.setup([(1, 1) + hw])
    check_gradient(layer, [x[:1, :1]])


def test_max_pool_ties_go_to_first_in_raster_order():
    x = np.zeros((1, 1, 4, 4))
    layer, _ = make_layer(pool_text("MAX", (2, 2), (2, 2), (0, 0)), [x.shape], ntops=2)
    xt = torch.tensor(x, requires_grad=True)
    y, mask = layer.forward([xt])
    close(mask.detach().numpy()[0, 0], [[0, 2], [8, 10]])
    y.sum().backward()
    want = np.zeros((4, 4))
    want[::2, ::2] = 1
    close(xt.grad.numpy()[0, 0], want)


def test_global_pooling_and_stochastic_test_mode():
    x = np.random.default_rng(1).uniform(0.1, 1, (2, 3, 3, 4))
    layer, shapes = make_layer('type: "Pooling" pooling_param { pool: AVE global_pooling: true }',
                               [x.shape])
    assert shapes[0] == (2, 3, 1, 1)
    close(run_forward(layer, [x])[0], x.mean(axis=(2, 3), keepdims=True))
    layer, _ = make_layer(pool_text("STOCHASTIC", (2, 2), (2, 2), (0, 0)), [x.shape],
                          phase=TEST)
    win = x[:, :, :2, :2]
    got = run_forward(layer, [x])[0][:, :, 0, 0]
    close(got, (win ** 2).sum(axis=(2, 3)) / win.sum(axis=(2, 3)))


def np_conv(x, w, b, stride, pad, dil, group):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ekh, ekw = dil * (kh - 1) + 1, dil * (kw - 1) + 1
    oh, ow = (h + 2 * pad - ekh) // stride + 1, (wd + 2 * pad - ekw) // stride + 1
    y = np.zeros((n, o, oh, ow))
    og = o // group
    for g in range(group):
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + ekh:dil,
                           j * stride:j * stride + ekw:dil]
                y[:, g * og:(g + 1) * og, i, j] = np.einsum("nchw,ochw->no", patch,
                                                            w[g * og:(g + 1) * og])
    return y + b.reshape(1, -1, 1, 1)


def test_convolution_groups_dilation_and_shared_weights():
    text = ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2'
            ' pad: 1 dilation: 2 group: 2 weight_filler { type: "gaussian" }'
            ' bias_filler { type: "uniform" } }')
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((2, 4, 7, 6))
    layer, shapes = make_layer(text, [x1.shape, x2.shape], ntops=2)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (4, 2, 3, 3) and b.shape == (4,)
    tops = run_forward(layer, [x1, x2])
    close(tops[0], np_conv(x1, w, b, 2, 1, 2, 2))
    close(tops[1], np_conv(x2, w, b, 2, 1, 2, 2))
    assert shapes[0] == tops[0].shape
    check_gradient(layer, [x1[:1, :, :3, :3], x2[:1, :, :3, :3]])


def test_convolution_bad_params_fail_clearly():
    with pytest.raises(NetError, match="l"):
        make_layer('type: "Convolution" convolution_param { num_output: 3 kernel_size: 3'
                   ' group: 2 }', [(1, 4, 5, 5)])
    with pytest.raises(NetError):
        make_layer('type: "Convolution" convolution_param { num_output: 4 }', [(1, 4, 5, 5)])


def test_deconvolution_is_adjoint_of_convolution():
    text = ('convolution_param { num_output: 3 kernel_size: 3 stride: 2 pad: 1 bias_term: false'
            ' weight_filler { type: "gaussian" } }')
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 4))
    deconv, shapes = make_layer('type: "Deconvolution" ' + text, [x.shape])
    assert deconv.blobs[0].shape == (2, 3, 3, 3)
    assert shapes[0] == (1, 3, 7, 7)  # stride*(H-1) + k - 2*pad
    y = run_forward(deconv, [x])[0]
    # <deconv(x), z> == <x, conv(z)> with the same weights (conv maps 3 -> 2 channels)
    z = np.random.default_rng(4).standard_normal(y.shape)
    wt = deconv.blobs[0].data
    cz = np_conv(z, wt, np.zeros(2), 2, 1, 1, 1)
    close(np.array((y * z).sum()), np.array((x * cz).sum()))
    check_gradient(deconv, [x])


@pytest.mark.parametrize("transpose", [False, True])
def test_inner_product_axis_and_transpose(transpose):
    text = (f'type: "InnerProduct" inner_product_param {{ num_output: 3 axis: 2 '
            f'transpose: {str(transpose).lower()} weight_filler {{ type: "gaussian" }}'
            f' bias_filler {{ type: "gaussian" }} }}')
    x = np.random.default_rng(5).standard_normal((2, 2, 2, 3))
    layer, shapes = make_layer(text, [x.shape])
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == ((6, 3) if transpose else (3, 6))
    flat = x.reshape(2, 2, 6)
    want = (flat @ w if transpose else flat @ w.T) + b
    assert shapes[0] == (2, 2, 3)
    close(run_forward(layer, [x])[0], want)
    check_gradient(layer, [x])


def np_lrn_across(x, n, alpha, beta, k):
    c = x.shape[1]
    sq = np.zeros_like(x)
    for i in range(c):
        lo, hi = max(0, i - (n - 1) // 2), min(c, i + n // 2 + 1)
        sq[:, i] = (x[:, lo:hi] ** 2).sum(axis=1)
    return x / (k + alpha / n * sq) ** beta


def np_lrn_within(x, n, alpha, beta):
    h, w = x.shape[2:]
    pad = (n - 1) // 2
    sq = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            hs, ws = i - pad, j - pad
            win = x[:, :, max(hs, 0):min(hs + n, h), max(ws, 0):min(ws + n, w)]
            sq[:, :, i, j] = (win ** 2).sum(axis=(2, 3))
    return x / (1 + alpha / n ** 2 * sq) ** beta


def test_lrn_across_and_within_channels():
    x = np.random.default_rng(6).standard_normal((2, 5, 4, 3))
    layer, _ = make_layer('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }',
                          [x.shape])
    close(run_forward(layer, [x])[0], np_lrn_across(x, 3, 0.5, 0.75, 2))
    check_gradient(layer, [x[:1, :, :2]])
    layer, _ = make_layer('type: "LRN" lrn_param { norm_region: WITHIN_CHANNEL local_size: 3'
                          ' alpha: 0.5 beta: 0.75 k: 7 }', [x.shape])
    close(run_forward(layer, [x])[0], np_lrn_within(x, 3, 0.5, 0.75))
    check_gradient(layer, [x[:1, :1]])
