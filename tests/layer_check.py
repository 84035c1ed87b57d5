"""Shared test helper: build one layer from a LayerParameter snippet, run it, and check its
autograd gradient against central differences (like Caffe's GradientChecker)."""

import numpy as np
import torch
from google.protobuf import text_format

import cos.engine.layers  # noqa: F401  (registers the layer types)
from cos.engine.layer import TRAIN, layer_class
from cos.proto import caffe_pb2


def make_layer(text, bottom_shapes, phase=TRAIN, dtype=torch.float64, seed=0, ntops=1):
    """Parse text as a LayerParameter, set the layer up; returns (layer, top_shapes)."""
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.name = lp.name or "l"
    if not len(lp.bottom):
        lp.bottom.extend([f"b{k}" for k in range(len(bottom_shapes))])
    if not len(lp.top):
        lp.top.extend([f"t{k}" for k in range(ntops)])
    layer = layer_class(lp.type, lp.name)(lp, phase, dtype, "cpu",
                                          torch.Generator().manual_seed(seed))
    shapes = [tuple(s) for s in bottom_shapes]
    layer.setup(shapes)
    return layer, [tuple(s) for s in layer.reshape(shapes)]


def run_forward(layer, bottoms):
    """Forward NumPy arrays (or tensors) without grad; returns the tops as NumPy arrays."""
    with torch.no_grad():
        tops = layer.forward([torch.as_tensor(np.asarray(b), dtype=layer.dtype) for b in bottoms])
    return [t.detach().numpy() for t in tops]


def _objective(layer, values, weights):
    with torch.no_grad():
        tops = layer.forward([torch.as_tensor(v, dtype=layer.dtype) for v in values])
    return sum(float((t.numpy() * w).sum()) for t, w in zip(tops, weights) if w is not None)


def check_gradient(layer, bottoms, eps=1e-6, rtol=1e-5, atol=1e-8, check=None, seed=1):
    """Compare autograd bottom gradients of Σ w·top (random w) with central differences.

    check: indices of bottoms to check (default all). Raises AssertionError on mismatch.
    Only valid for deterministic forwards (re-seed random layers yourself)."""
    arrays = [np.array(b, dtype=np.float64) for b in bottoms]
    check = range(len(arrays)) if check is None else check
    ts = [torch.tensor(a, dtype=layer.dtype, requires_grad=k in check)
          for k, a in enumerate(arrays)]
    tops = layer.forward(ts)
    gen = np.random.default_rng(seed)
    weights = [gen.standard_normal(tuple(t.shape)) if t.requires_grad else None for t in tops]
    live = [(t, torch.as_tensor(w, dtype=t.dtype)) for t, w in zip(tops, weights)
            if w is not None]
    if live:
        torch.autograd.backward([t for t, _ in live], [w for _, w in live])
    for k in check:
        got = np.zeros_like(arrays[k]) if ts[k].grad is None else ts[k].grad.numpy()
        want = np.zeros_like(arrays[k])
        for i in np.ndindex(arrays[k].shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k][i] += eps
            minus[k][i] -= eps
            want[i] = (_objective(layer, plus, weights)
                       - _objective(layer, minus, weights)) / (2 * eps)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=f"bottom {k} of layer {layer.param.name}")
