"""Normalisation and affine layers: BatchNorm, Scale, Bias, MVN, LRN (Caffe semantics)."""

import torch
import torch.nn.functional as F

from ...proto import caffe_pb2
from ..fillers import constant_filler
from ..layer import TRAIN, Layer, register
from .vision import _filler, _make_params


def _canon(layer, axis, ndim):
    if not -ndim <= axis < max(ndim, 1):
        layer.fail(f"axis {axis} is out of range for {ndim} axes")
    return axis % ndim if ndim else 0


@register("BatchNorm")
class BatchNorm(Layer):
    """Batch statistics (and accumulator updates) or the accumulated global statistics."""

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom_shapes):
        p = self.param.batch_norm_param
        shape = tuple(bottom_shapes[0])
        self.use_global = (p.use_global_stats if p.HasField("use_global_stats")
                           else self.phase != TRAIN)
        channels = shape[1] if len(shape) > 1 else 1
        zero = constant_filler(0)
        _make_params(self, [((channels,), zero), ((channels,), zero), ((1,), zero)])
        for k in range(3):
            if k < len(self.param.param):
                spec = self.param.param[k]
                if spec.lr_mult != 0:
                    self.fail(f"param {k} must have lr_mult: 0 (the statistics are not learned)")
            else:
                self.param.param.add(lr_mult=0)

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def _view(self, x):
        c = x.shape[1] if x.dim() > 1 else 1
        return (1, c) + (1,) * (x.dim() - 2) if x.dim() > 1 else (1,)

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.batch_norm_param
        eps = float(p.eps)
        shape = self._view(x)
        dims = [d for d in range(x.dim()) if d != 1] if x.dim() > 1 else [0]
        if self.use_global:
            b0, b1, b2 = (b.tensor.detach() for b in self.blobs)
            f = 0.0 if float(b2[0]) == 0 else 1.0 / float(b2[0])
            mean, var = (f * b0).to(x.dtype), (f * b1).to(x.dtype)
            return [(x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)]
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=dims, keepdim=True)
        y = centred / torch.sqrt(var + eps)
        if x.device.type != "meta":
            lam = float(p.moving_average_fraction)
            m = x.numel() // (x.shape[1] if x.dim() > 1 else 1)
            factor = m / (m - 1) if m > 1 else 1.0
            with torch.no_grad():
                b0, b1, b2 = (b.tensor for b in self.blobs)
                b2.mul_(lam).add_(1)
                b0.mul_(lam).add_(mean.detach().reshape(-1).to(b0.dtype))
                b1.mul_(lam).add_(factor * var.detach().reshape(-1).to(b1.dtype))
        return [y]


def _span(layer, x_shape, param_shape, axis):
    """outer/span/inner view shape for a parameter over x, checking the spanned dims."""
    n = len(param_shape)
    if tuple(x_shape[axis:axis + n]) != tuple(param_shape):
        layer.fail(f"{list(param_shape)} does not match bottom {list(x_shape)} on axes "
                   f"{axis}..{axis + n - 1}")
    return (1,) * axis + tuple(param_shape) + (1,) * (len(x_shape) - axis - n)


def _learned_shape(layer, x_shape, axis_field, num_axes):
    axis = _canon(layer, axis_field, len(x_shape))
    if num_axes < -1:
        layer.fail(f"num_axes must be >= -1, got {num_axes}")
    end = len(x_shape) if num_axes == -1 else axis + num_axes
    if end > len(x_shape):
        layer.fail(f"axis {axis} + num_axes {num_axes} exceeds the {len(x_shape)} bottom axes")
    return tuple(x_shape[axis:end])


class _Affine(Layer):
    """Shared shape logic for Scale and Bias (param from a bottom or learned)."""

    min_bottoms = 1
    exact_tops = 1

    def _axis(self, x_dim, param_dim):
        return 0 if param_dim == 0 else _canon(self, self.p.axis, x_dim)

    def _apply(self, x, value, op):
        axis = self._axis(x.dim(), value.dim())
        return op(x, value.reshape(_span(self, tuple(x.shape), tuple(value.shape), axis)))


@register("Scale")
class Scale(_Affine):
    max_bottoms = 2

    def setup(self, bottom_shapes):
        self.p = p = self.param.scale_param
        if len(bottom_shapes) > 2:
            self.fail("takes one or two bottoms")
        x_shape = tuple(bottom_shapes[0])
        specs = []
        if len(bottom_shapes) == 1:
            shape = _learned_shape(self, x_shape, p.axis, p.num_axes)
            specs.append((shape, _filler(p, "filler", constant_filler(1))))
        else:
            shape = tuple(bottom_shapes[1])
        _span(self, x_shape, shape, self._axis(len(x_shape), len(shape)))
        if p.bias_term:
            specs.append((shape, _filler(p, "bias_filler", constant_filler(0))))
        self.learned_scale = len(bottom_shapes) == 1
        _make_params(self, specs)

    def forward(self, bottoms):
        x = bottoms[0]
        scale = self.blobs[0].tensor if self.learned_scale else bottoms[1]
        y = self._apply(x, scale, torch.mul)
        if self.p.bias_term:
            y = self._apply(y, self.blobs[-1].tensor, torch.add)
        return [y]


@register("Bias")
class Bias(_Affine):
    max_bottoms = 2

    def setup(self, bottom_shapes):
        self.p = p = self.param.bias_param
        if len(bottom_shapes) > 2:
            self.fail("takes one or two bottoms")
        x_shape = tuple(bottom_shapes[0])
        if len(bottom_shapes) == 1:
            shape = _learned_shape(self, x_shape, p.axis, p.num_axes)
            _make_params(self, [(shape, _filler(p, "filler", constant_filler(0)))])
        else:
            shape = tuple(bottom_shapes[1])
        _span(self, x_shape, shape, self._axis(len(x_shape), len(shape)))

    def forward(self, bottoms):
        bias = bottoms[1] if len(bottoms) > 1 else self.blobs[0].tensor
        return [self._apply(bottoms[0], bias, torch.add)]


class _MVNFn(torch.autograd.Function):
    """y = (x − μ)/(σ + eps); Caffe's dx = (dy − mean(dy) − y·mean(dy·y))/(σ + eps)."""

    @staticmethod
    def forward(ctx, x, dims, eps):
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        var = (x * x).mean(dim=dims, keepdim=True) - mean * mean
        denom = torch.sqrt(torch.clamp(var, min=0)) + eps
        y = centred / denom
        ctx.save_for_backward(y, denom)
        ctx.dims = dims
        return y

    @staticmethod
    def backward(ctx, dy):
        y, denom = ctx.saved_tensors
        dims = ctx.dims
        dx = dy - dy.mean(dim=dims, keepdim=True) - y * (dy * y).mean(dim=dims, keepdim=True)
        return dx / denom, None, None


@register("MVN")
class MVN(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.mvn_param
        first = 1 if p.across_channels else 2
        dims = tuple(range(min(first, x.dim()), x.dim()))
        if not dims:
            self.fail(f"bottom shape {list(x.shape)} has nothing to normalise over")
        if p.normalize_variance and x.device.type != "meta":
            return [_MVNFn.apply(x, dims, float(p.eps))]
        return [x - x.mean(dim=dims, keepdim=True)]


@register("LRN")
class LRN(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom_shapes):
        p = self.param.lrn_param
        if len(bottom_shapes[0]) != 4:
            self.fail(f"needs 4-D input, got shape {list(bottom_shapes[0])}")
        if p.local_size % 2 == 0:
            self.fail(f"local_size must be odd, got {p.local_size}")

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.lrn_param
        n, alpha, beta = p.local_size, float(p.alpha), float(p.beta)
        half = (n - 1) // 2
        sq = x * x
        if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
            padded = F.pad(sq, (0, 0, 0, 0, half, half))
            windows = padded.unfold(1, n, 1).sum(dim=-1)
            scale = float(p.k) + (alpha / n) * windows
        else:
            sums = F.avg_pool2d(sq, n, 1, half, count_include_pad=True, divisor_override=1)
            scale = 1.0 + (alpha / (n * n)) * sums
        return [x * torch.pow(scale, -beta)]
