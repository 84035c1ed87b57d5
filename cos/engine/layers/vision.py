"""Vision layers: Convolution, Deconvolution, InnerProduct and Pooling (Caffe's geometry)."""

import math

import torch
import torch.nn.functional as F

from ...proto import caffe_pb2
from ..blob import Blob
from ..fillers import constant_filler, fill
from ..layer import TRAIN, Layer, register

FLT_MAX = 3.4028234663852886e38


def _make_params(layer, specs):
    """specs: [(shape, FillerParameter)] → layer.blobs (kept if the net pre-loaded them)."""
    if layer.blobs:
        if len(layer.blobs) != len(specs):
            layer.fail(f"expects {len(specs)} param blobs, the model has {len(layer.blobs)}")
        for k, ((shape, _), blob) in enumerate(zip(specs, layer.blobs)):
            if tuple(blob.shape) != tuple(shape):
                layer.fail(f"param {k} has shape {list(blob.shape)}, expected {list(shape)}")
        return
    for k, (shape, filler) in enumerate(specs):
        blob = Blob(shape, layer.dtype, layer.device, f"{layer.name}.{k}")
        blob.tensor.copy_(fill(filler, shape, layer.dtype, layer.rng, f"layer '{layer.name}'"))
        layer.blobs.append(blob.make_param())


def _filler(param, field, default):
    return getattr(param, field) if param.HasField(field) else default


def _spatial(values, h, w, default, n, name, layer):
    """Resolve Caffe's repeated-or-_h/_w spatial fields to a tuple of n values."""
    if h is not None or w is not None:
        if n != 2:
            layer.fail(f"{name}_h/{name}_w only work for 2-D spatial data")
        return (int(h), int(w))
    vals = list(values)
    if not vals:
        return (default,) * n
    if len(vals) == 1:
        return (int(vals[0]),) * n
    if len(vals) != n:
        layer.fail(f"{name} has {len(vals)} values for {n} spatial axes")
    return tuple(int(v) for v in vals)


@register("Convolution")
class Convolution(Layer):
    transposed = False

    def setup(self, bottom_shapes):
        p = self.param.convolution_param
        shape = bottom_shapes[0]
        axis = p.axis % len(shape)
        self.nspatial = len(shape) - axis - 1
        n = self.nspatial
        if n not in (1, 2, 3):
            self.fail(f"{n} spatial axes are not supported (1 to 3)")
        if not len(p.kernel_size) and not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            self.fail("convolution_param: kernel_size (or kernel_h and kernel_w) is required")
        self.kernel = _spatial(p.kernel_size, p.kernel_h if p.HasField("kernel_h") else None,
                               p.kernel_w if p.HasField("kernel_w") else None, 0, n, "kernel", self)
        self.stride = _spatial(p.stride, p.stride_h if p.HasField("stride_h") else None,
                               p.stride_w if p.HasField("stride_w") else None, 1, n, "stride", self)
        has_pad_hw = p.HasField("pad_h") or p.HasField("pad_w")
        self.pad = _spatial(p.pad, p.pad_h if has_pad_hw else None,
                            p.pad_w if has_pad_hw else None, 0, n, "pad", self)
        self.dilation = _spatial(p.dilation, None, None, 1, n, "dilation", self)
        self.group = p.group
        channels = shape[axis]
        if p.num_output == 0:
            self.fail("convolution_param.num_output must be > 0")
        if channels % self.group or p.num_output % self.group:
            self.fail(f"channels ({channels}) and num_output ({p.num_output}) must be "
                      f"multiples of group ({self.group})")
        if self.transposed:
            wshape = (channels, p.num_output // self.group) + self.kernel
        else:
            wshape = (p.num_output, channels // self.group) + self.kernel
        specs = [(wshape, _filler(p, "weight_filler", constant_filler(0)))]
        if p.bias_term:
            specs.append(((p.num_output,), _filler(p, "bias_filler", constant_filler(0))))
        _make_params(self, specs)
        self.axis = axis

    def forward(self, bottoms):
        weight = self.blobs[0].tensor
        bias = self.blobs[1].tensor if len(self.blobs) > 1 else None
        return [self._conv(x, weight, bias) for x in bottoms]

    def _conv(self, x, weight, bias):
        lead = x.shape[:self.axis]
        x4 = x.reshape((-1,) + tuple(x.shape[self.axis:]))
        if self.transposed:
            fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.nspatial - 1]
            y = fn(x4, weight, bias, self.stride, self.pad, 0, self.group, self.dilation)
        else:
            fn = (F.conv1d, F.conv2d, F.conv3d)[self.nspatial - 1]
            y = fn(x4, weight, bias, self.stride, self.pad, self.dilation, self.group)
        return y.reshape(tuple(lead) + tuple(y.shape[1:]))


@register("Deconvolution")
class Deconvolution(Convolution):
    transposed = True


@register("InnerProduct")
class InnerProduct(Layer):
    def setup(self, bottom_shapes):
        p = self.param.inner_product_param
        shape = bottom_shapes[0]
        self.axis = p.axis % len(shape)
        k = math.prod(shape[self.axis:])
        if p.num_output == 0:
            self.fail("inner_product_param.num_output must be > 0")
        wshape = (k, p.num_output) if p.transpose else (p.num_output, k)
        specs = [(wshape, _filler(p, "weight_filler", constant_filler(0)))]
        if p.bias_term:
            specs.append(((p.num_output,), _filler(p, "bias_filler", constant_filler(0))))
        _make_params(self, specs)
        self.k = k

    def forward(self, bottoms):
        x = bottoms[0]
        lead = tuple(x.shape[:self.axis])
        if math.prod(x.shape[self.axis:]) != self.k:
            self.fail(f"input has {math.prod(x.shape[self.axis:])} values per sample, "
                      f"the weights expect {self.k}")
        x2 = x.reshape(-1, self.k)
        weight = self.blobs[0].tensor
        if self.param.inner_product_param.transpose:
            weight = weight.t()
        bias = self.blobs[1].tensor if len(self.blobs) > 1 else None
        return [F.linear(x2, weight, bias).reshape(lead + (weight.shape[0],))]


@register("Pooling")
class Pooling(Layer):
    exact_bottoms = 1
    min_tops = 1
    max_tops = 2

    def setup(self, bottom_shapes):
        p = self.param.pooling_param
        if len(bottom_shapes[0]) != 4:
            self.fail(f"needs 4-D input, got shape {list(bottom_shapes[0])}")
        self.global_pool = p.global_pooling
        if self.global_pool:
            if p.HasField("kernel_size") or p.HasField("kernel_h"):
                self.fail("global_pooling takes no kernel size")
        elif p.HasField("kernel_size"):
            self.kernel = (p.kernel_size, p.kernel_size)
        elif p.HasField("kernel_h") and p.HasField("kernel_w"):
            self.kernel = (p.kernel_h, p.kernel_w)
        else:
            self.fail("pooling_param: kernel_size (or kernel_h and kernel_w) is required")
        self.pad = (p.pad_h, p.pad_w) if (p.HasField("pad_h") or p.HasField("pad_w")) else (p.pad, p.pad)
        self.stride = ((p.stride_h, p.stride_w) if (p.HasField("stride_h") or p.HasField("stride_w"))
                       else (p.stride, p.stride))
        if not self.global_pool and (self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]):
            self.fail("pad must be smaller than the kernel")
        if self.global_pool and (any(self.pad) or any(s != 1 for s in self.stride)):
            self.fail("global_pooling needs pad 0 and stride 1")
        self.method = p.pool
        if self.method == caffe_pb2.PoolingParameter.STOCHASTIC and self.phase == TRAIN:
            self.fail("STOCHASTIC pooling in TRAIN is not supported")
        if len(self.param.top) == 2 and self.method != caffe_pb2.PoolingParameter.MAX:
            self.fail("a second (mask) top needs MAX pooling")

    def _geometry(self, h, w):
        kernel = (h, w) if self.global_pool else self.kernel
        floor = self.param.pooling_param.round_mode == caffe_pb2.PoolingParameter.FLOOR
        out = []
        for size, k, s, p in zip((h, w), kernel, self.stride, self.pad):
            n = (size + 2 * p - k) / s
            o = (math.floor(n) if floor else math.ceil(n)) + 1
            if (self.pad[0] or self.pad[1]) and (o - 1) * s >= size + p:
                o -= 1
            out.append(o)
        return kernel, tuple(out)

    def _torch_grid(self, h, w, kernel, out):
        """True when torch's own pooling lays out the same windows as Caffe here."""
        if len(self.param.top) != 1 or self.method == caffe_pb2.PoolingParameter.STOCHASTIC:
            return False
        ceil = self.param.pooling_param.round_mode != caffe_pb2.PoolingParameter.FLOOR
        for size, k, s, p, o in zip((h, w), kernel, self.stride, self.pad, out):
            if p > k // 2:
                return False
            n = (size + 2 * p - k) / s
            t = (math.ceil(n) if ceil else math.floor(n)) + 1
            if ceil and (t - 1) * s >= size + p:
                t -= 1
            if t != o:
                return False
        return True

    def forward(self, bottoms):
        x = bottoms[0]
        n, c, h, w = x.shape
        kernel, (oh, ow) = self._geometry(h, w)
        if self._torch_grid(h, w, kernel, (oh, ow)):
            ceil = self.param.pooling_param.round_mode != caffe_pb2.PoolingParameter.FLOOR
            if self.method == caffe_pb2.PoolingParameter.MAX:
                return [F.max_pool2d(x, kernel, self.stride, self.pad, ceil_mode=ceil)]
            # torch divides by the window clipped at size + pad, exactly Caffe's divisor.
            return [F.avg_pool2d(x, kernel, self.stride, self.pad, ceil_mode=ceil,
                                 count_include_pad=True)]
        ph, pw = self.pad
        # Pad so that every window of the output grid lies inside the tensor.
        extra_h = max(0, (oh - 1) * self.stride[0] + kernel[0] - h - ph)
        extra_w = max(0, (ow - 1) * self.stride[1] + kernel[1] - w - pw)
        if self.method == caffe_pb2.PoolingParameter.MAX:
            return self._max(x, kernel, (oh, ow), (ph, extra_h, pw, extra_w))
        if self.method == caffe_pb2.PoolingParameter.AVE:
            return [self._ave(x, kernel, (oh, ow), (ph, extra_h, pw, extra_w))]
        return [self._stochastic_test(x, kernel, (oh, ow))]

    def _max(self, x, kernel, out, pads):
        ph, eh, pw, ew = pads
        if ph or eh or pw or ew:
            xp = F.pad(x, (pw, ew, ph, eh), value=-FLT_MAX)
        else:
            xp = x
        want_mask = len(self.param.top) == 2
        y = F.max_pool2d(xp, kernel, self.stride, return_indices=want_mask)
        if want_mask:
            y, idx = y
            y = y[:, :, :out[0], :out[1]]
            idx = idx[:, :, :out[0], :out[1]]
            wp = xp.shape[3]
            row, col = idx // wp - ph, idx % wp - pw
            mask = (row * x.shape[3] + col).to(x.dtype)
            return [y, mask]
        return [y[:, :, :out[0], :out[1]]]

    def _ave(self, x, kernel, out, pads):
        ph, eh, pw, ew = pads
        h, w = x.shape[2], x.shape[3]
        xp = F.pad(x, (pw, ew, ph, eh)) if (ph or eh or pw or ew) else x
        sums = F.avg_pool2d(xp, kernel, self.stride, divisor_override=1)[:, :, :out[0], :out[1]]
        return sums / self._divisors(h, w, kernel, out, x)

    def _divisors(self, h, w, kernel, out, x):
        def sizes(size, k, s, p, o):
            start = torch.arange(o, dtype=torch.float64) * s - p
            end = torch.minimum(start + k, torch.tensor(float(size + p)))
            return end - start
        hs = sizes(h, kernel[0], self.stride[0], self.pad[0], out[0])
        ws = sizes(w, kernel[1], self.stride[1], self.pad[1], out[1])
        return (hs[:, None] * ws[None, :]).to(dtype=x.dtype, device=x.device)

    def _stochastic_test(self, x, kernel, out):
        xp = x
        sq = F.avg_pool2d(xp * xp, kernel, self.stride, ceil_mode=True, divisor_override=1)
        s = F.avg_pool2d(xp, kernel, self.stride, ceil_mode=True, divisor_override=1)
        y = torch.where(s > 0, sq / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
        return y[:, :, :out[0], :out[1]]
