"""Element-wise neuron layers (ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp,
Log, Threshold, Dropout, Clip, Swish) with Caffe's forward and gradient conventions."""

import math

import torch
import torch.nn.functional as F

from ..blob import Blob
from ..fillers import constant_filler, fill
from ..layer import TRAIN, Layer, register


class _Neuron(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        return [self.compute(bottoms[0])]


class _ReLUFn(torch.autograd.Function):
    """Caffe's ReLU gradient is negative_slope at x == 0, not 1."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return torch.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * torch.where(x > 0, torch.ones_like(x), torch.full_like(x, ctx.slope)), None


@register("ReLU")
class ReLU(_Neuron):
    def compute(self, x):
        slope = float(self.param.relu_param.negative_slope)
        if slope == 0:
            return F.relu(x)  # same gradient as Caffe's (0 at x = 0), and faster
        return _ReLUFn.apply(x, slope)


@register("PReLU")
class PReLU(_Neuron):
    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) < 2:
            self.fail(f"bottom needs at least 2 axes, got shape {list(shape)}")
        p = self.param.prelu_param
        n = 1 if p.channel_shared else shape[1]
        if self.blobs:
            if tuple(self.blobs[0].shape) != (n,):
                self.fail(f"slope blob has shape {list(self.blobs[0].shape)}, expected [{n}]")
            return
        filler = p.filler if p.HasField("filler") else constant_filler(0.25)
        blob = Blob((n,), self.dtype, self.device, f"{self.name}.0")
        blob.tensor.copy_(fill(filler, (n,), self.dtype, self.rng, f"layer '{self.name}'"))
        self.blobs.append(blob.make_param())

    def compute(self, x):
        a = self.blobs[0].tensor
        if a.numel() > 1:
            a = a.reshape((1, -1) + (1,) * (x.dim() - 2))
        return torch.where(x > 0, x, x * a)


@register("ELU")
class ELU(_Neuron):
    def compute(self, x):
        alpha = float(self.param.elu_param.alpha)
        # exp of the clamped input keeps the unused branch finite, so its zero grad stays zero
        return torch.where(x > 0, x, alpha * (torch.exp(torch.clamp(x, max=0)) - 1))


@register("Sigmoid")
class Sigmoid(_Neuron):
    def compute(self, x):
        return torch.sigmoid(x)


@register("TanH")
class TanH(_Neuron):
    def compute(self, x):
        return torch.tanh(x)


@register("AbsVal")
class AbsVal(_Neuron):
    def compute(self, x):
        return torch.abs(x)  # autograd uses sign(0) = 0, as Caffe does


class _BNLLFn(torch.autograd.Function):
    """log(1 + e^x); Caffe's gradient caps the exponent at 50."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > 0, x + torch.log1p(torch.exp(-x.abs())),
                           torch.log1p(torch.exp(-x.abs())))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        e = torch.exp(torch.clamp(x, max=50.0))
        return dy * e / (e + 1)


@register("BNLL")
class BNLL(_Neuron):
    def compute(self, x):
        return _BNLLFn.apply(x)


class _PowerFn(torch.autograd.Function):
    """(shift + scale·x)^power with Caffe's special-cased gradients."""

    @staticmethod
    def forward(ctx, x, power, scale, shift):
        ctx.save_for_backward(x)
        ctx.args = (power, scale, shift)
        if power * scale == 0:
            value = 1.0 if power == 0 else shift ** power
            return torch.full_like(x, value)
        base = shift + scale * x
        return base if power == 1 else torch.pow(base, power)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        power, scale, shift = ctx.args
        diff_scale = power * scale
        if diff_scale == 0:
            grad = torch.zeros_like(x)
        elif power == 1:
            grad = torch.full_like(x, scale)
        elif power == 2:
            grad = diff_scale * (shift + scale * x)
        elif shift == 0:
            # Caffe computes power·y/x here, so x == 0 gives inf/nan just as it does there
            grad = power * torch.pow(scale * x, power) / x
        else:
            grad = diff_scale * torch.pow(shift + scale * x, power - 1)
        return dy * grad, None, None, None


@register("Power")
class Power(_Neuron):
    def compute(self, x):
        p = self.param.power_param
        return _PowerFn.apply(x, float(p.power), float(p.scale), float(p.shift))


def _log_base(base, layer):
    if base == -1:
        return 1.0
    if base <= 0:
        layer.fail(f"base must be > 0 (or -1 for e), got {base}")
    return math.log(base)


@register("Exp")
class Exp(_Neuron):
    def compute(self, x):
        p = self.param.exp_param
        ln = _log_base(float(p.base), self)
        return torch.exp((float(p.shift) + float(p.scale) * x) * ln)


@register("Log")
class Log(_Neuron):
    def compute(self, x):
        p = self.param.log_param
        ln = _log_base(float(p.base), self)
        return torch.log(float(p.shift) + float(p.scale) * x) / ln


@register("Threshold")
class Threshold(_Neuron):
    has_backward = False

    def compute(self, x):
        return (x.detach() > float(self.param.threshold_param.threshold)).to(x.dtype)


@register("Dropout")
class Dropout(_Neuron):
    """TRAIN keeps each unit with probability 1 − ratio and scales it by 1/(1 − ratio)."""

    def setup(self, bottom_shapes):
        ratio = float(self.param.dropout_param.dropout_ratio)
        if not 0 <= ratio < 1:
            self.fail(f"dropout_ratio must be in [0, 1), got {ratio}")

    def compute(self, x):
        ratio = float(self.param.dropout_param.dropout_ratio)
        if self.phase != TRAIN or x.device.type == "meta":
            return x.view_as(x)
        keep = torch.rand(x.shape, generator=self.rng, dtype=torch.float64) >= ratio
        mask = keep.to(device=x.device, dtype=x.dtype) * (1.0 / (1.0 - ratio))
        return x * mask


@register("Clip")
class Clip(_Neuron):
    def setup(self, bottom_shapes):
        p = self.param.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            self.fail("clip_param.min and clip_param.max are required")
        if p.min > p.max:
            self.fail(f"clip_param.min ({p.min}) is greater than max ({p.max})")

    def compute(self, x):
        p = self.param.clip_param
        lo, hi = float(p.min), float(p.max)
        # Caffe passes the gradient where min <= x <= max, edges included
        inside = ((x >= lo) & (x <= hi)).to(x.dtype)
        clipped = torch.clamp(x.detach(), lo, hi)
        return clipped + (x - x.detach()) * inside


@register("Swish")
class Swish(_Neuron):
    def compute(self, x):
        return x * torch.sigmoid(float(self.param.swish_param.beta) * x)
