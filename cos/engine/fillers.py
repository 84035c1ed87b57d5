"""Caffe's weight fillers (constant, uniform, gaussian, positive_unitball, xavier, msra, bilinear).

Each draws from the net's torch.Generator, so a `random_seed` makes a run repeatable.
An absent FillerParameter means constant 0, as in Caffe.
"""

import math

import torch

from ..errors import NetError
from ..proto import caffe_pb2


def constant_filler(value):
    f = caffe_pb2.FillerParameter()
    f.type = "constant"
    f.value = value
    return f


def fill(filler, shape, dtype=torch.float32, rng=None, where=""):
    """Return a new CPU tensor of `shape` filled per the FillerParameter `filler`."""
    shape = tuple(int(s) for s in shape)
    kind = filler.type
    if kind != "gaussian" and filler.sparse != -1:
        raise NetError(f"{where}: filler '{kind}' does not support 'sparse' (only gaussian)")
    fn = _FILLERS.get(kind)
    if fn is None:
        raise NetError(f"{where}: unknown filler type '{kind}' "
                       f"(known: {', '.join(sorted(_FILLERS))})")
    out = fn(filler, shape, rng, where)
    return out.to(dtype)


def _fans(shape):
    count = math.prod(shape) if shape else 1
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _n(filler, shape):
    fan_in, fan_out = _fans(shape)
    norm = filler.variance_norm
    if norm == caffe_pb2.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if norm == caffe_pb2.FillerParameter.FAN_OUT:
        return fan_out
    return fan_in


def _constant(filler, shape, rng, where):
    return torch.full(shape, float(filler.value), dtype=torch.float64)


def _uniform(filler, shape, rng, where):
    lo, hi = float(filler.min), float(filler.max)
    return torch.rand(shape, generator=rng, dtype=torch.float64) * (hi - lo) + lo


def _gaussian(filler, shape, rng, where):
    out = torch.randn(shape, generator=rng, dtype=torch.float64) * float(filler.std) + float(filler.mean)
    if filler.sparse >= 0:
        if len(shape) < 1 or shape[0] == 0:
            raise NetError(f"{where}: sparse gaussian filler needs a blob with axis 0")
        p = filler.sparse / float(shape[0])
        mask = torch.rand(shape, generator=rng, dtype=torch.float64) < p
        out = out * mask
    return out


def _positive_unitball(filler, shape, rng, where):
    out = torch.rand(shape, generator=rng, dtype=torch.float64)
    if not shape:
        return out / out
    rows = out.reshape(shape[0], -1)
    rows /= rows.sum(dim=1, keepdim=True)
    return rows.reshape(shape)


def _xavier(filler, shape, rng, where):
    a = math.sqrt(3.0 / _n(filler, shape))
    return torch.rand(shape, generator=rng, dtype=torch.float64) * (2 * a) - a


def _msra(filler, shape, rng, where):
    std = math.sqrt(2.0 / _n(filler, shape))
    return torch.randn(shape, generator=rng, dtype=torch.float64) * std


def _bilinear(filler, shape, rng, where):
    if len(shape) != 4 or shape[2] != shape[3]:
        raise NetError(f"{where}: bilinear filler needs a 4-D blob with a square kernel, got {shape}")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    idx = torch.arange(k, dtype=torch.float64)
    w = 1 - torch.abs(idx / f - c)
    kernel = w[:, None] * w[None, :]
    return kernel.expand(shape).clone()


_FILLERS = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}
