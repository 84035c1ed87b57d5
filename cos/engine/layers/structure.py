"""Layers that move data around without learning: Concat, Slice, Flatten, Reshape, Eltwise,
Crop, Tile. Gradients come from autograd except where Caffe's differ (Eltwise PROD unstable)."""

import math

import torch

from ...proto import caffe_pb2
from ..layer import Layer, register


def _canon(layer, axis, ndim, what="axis"):
    if not -ndim <= axis < max(ndim, 1):
        layer.fail(f"{what} {axis} is out of range for {ndim} axes")
    return axis % ndim if ndim else 0


def _axis_or_legacy(layer, p, legacy_field, ndim):
    if p.HasField(legacy_field):
        if p.HasField("axis"):
            layer.fail(f"give either axis or {legacy_field}, not both")
        value = getattr(p, legacy_field)
        if value >= ndim:
            layer.fail(f"{legacy_field} {value} is out of range for {ndim} axes")
        return value
    return _canon(layer, p.axis, ndim)


@register("Concat")
class Concat(Layer):
    min_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        first = bottoms[0]
        axis = _axis_or_legacy(self, self.param.concat_param, "concat_dim", first.dim())
        for k, b in enumerate(bottoms[1:], 1):
            if b.dim() != first.dim():
                self.fail(f"bottom {k} has {b.dim()} axes, bottom 0 has {first.dim()}")
            for d in range(first.dim()):
                if d != axis and b.shape[d] != first.shape[d]:
                    self.fail(f"bottom {k} shape {list(b.shape)} does not match bottom 0 "
                              f"{list(first.shape)} outside axis {axis}")
        if len(bottoms) == 1:
            return [first.view_as(first) if first.device.type != "meta" else first.clone()]
        return [torch.cat(bottoms, dim=axis)]


@register("Slice")
class Slice(Layer):
    exact_bottoms = 1
    min_tops = 1

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.slice_param
        axis = _axis_or_legacy(self, p, "slice_dim", x.dim())
        size = x.shape[axis]
        ntops = len(self.param.top)
        points = list(p.slice_point)
        if points:
            if len(points) != ntops - 1:
                self.fail(f"{len(points)} slice_points for {ntops} tops (need tops − 1)")
            bounds = [0] + points + [size]
            if any(a >= b for a, b in zip(bounds, bounds[1:])):
                self.fail(f"slice_points {points} must increase strictly inside (0, {size})")
        else:
            if size % ntops:
                self.fail(f"axis {axis} of size {size} does not split into {ntops} equal parts")
            step = size // ntops
            bounds = [k * step for k in range(ntops + 1)]
        return [x.narrow(axis, a, b - a) for a, b in zip(bounds, bounds[1:])]


@register("Flatten")
class Flatten(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.flatten_param
        if len(self.param.bottom) and self.param.bottom[0] == self.param.top[0]:
            self.fail("cannot run in place")
        a = _canon(self, p.axis, x.dim())
        e = _canon(self, p.end_axis, x.dim(), "end_axis")
        if e < a:
            self.fail(f"end_axis {p.end_axis} comes before axis {p.axis}")
        shape = tuple(x.shape[:a]) + (math.prod(x.shape[a:e + 1]),) + tuple(x.shape[e + 1:])
        return [x.reshape(shape)]


def reshape_shape(layer, in_shape, p):
    """Caffe's Reshape rule: in[:a] + shape (0 copies, one -1 inferred) + in[end:]."""
    n = len(in_shape)
    a = p.axis if p.axis >= 0 else n + p.axis + 1
    if not 0 <= a <= n:
        layer.fail(f"axis {p.axis} is out of range for {n} axes")
    if p.num_axes < -1:
        layer.fail(f"num_axes must be >= -1, got {p.num_axes}")
    end = n if p.num_axes == -1 else a + p.num_axes
    if end > n:
        layer.fail(f"axis {a} + num_axes {p.num_axes} exceeds the {n} input axes")
    dims = list(p.shape.dim)
    out, infer = [], None
    for i, d in enumerate(dims):
        if d == 0:
            if a + i >= n:
                layer.fail(f"dim {i} is 0 (copy) but input axis {a + i} does not exist")
            out.append(int(in_shape[a + i]))
        elif d == -1:
            if infer is not None:
                layer.fail("at most one dim can be -1")
            infer = i
            out.append(1)
        elif d < -1:
            layer.fail(f"dim {i} is {d}; dims must be >= -1")
        else:
            out.append(int(d))
    shape = list(in_shape[:a]) + out + list(in_shape[end:])
    total = math.prod(in_shape)
    if infer is not None:
        known = math.prod(shape)
        if known == 0 or total % known:
            layer.fail(f"cannot infer the -1 dim: {total} values into {shape}")
        shape[a + infer] = total // known
    if math.prod(shape) != total:
        layer.fail(f"output shape {shape} has {math.prod(shape)} values, input {list(in_shape)} "
                   f"has {total}")
    return tuple(shape)


@register("Reshape")
class Reshape(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        x = bottoms[0]
        if self.param.bottom[0] == self.param.top[0]:
            self.fail("cannot run in place")
        return [x.reshape(reshape_shape(self, tuple(x.shape), self.param.reshape_param))]


class _ProdUnstable(torch.autograd.Function):
    """PROD with stable_prod_grad false: dx_i = dy·y/x_i (Caffe)."""

    @staticmethod
    def forward(ctx, *xs):
        y = xs[0].clone()
        for x in xs[1:]:
            y = y * x
        ctx.save_for_backward(y, *xs)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, *xs = ctx.saved_tensors
        return tuple(dy * y / x for x in xs)


@register("Eltwise")
class Eltwise(Layer):
    min_bottoms = 2
    exact_tops = 1

    def setup(self, bottom_shapes):
        p = self.param.eltwise_param
        E = caffe_pb2.EltwiseParameter
        if len(p.coeff) and p.operation != E.SUM:
            self.fail("coeff is only allowed with operation SUM")
        if len(p.coeff) and len(p.coeff) != len(bottom_shapes):
            self.fail(f"{len(p.coeff)} coeffs for {len(bottom_shapes)} bottoms (one per bottom)")

    def forward(self, bottoms):
        p = self.param.eltwise_param
        E = caffe_pb2.EltwiseParameter
        first = bottoms[0]
        for k, b in enumerate(bottoms[1:], 1):
            if b.shape != first.shape:
                self.fail(f"bottom {k} shape {list(b.shape)} differs from bottom 0 "
                          f"{list(first.shape)}")
        if p.operation == E.SUM:
            coeffs = list(p.coeff) or [1.0] * len(bottoms)
            y = None
            for c, b in zip(coeffs, bottoms):
                term = b if c == 1 else b * float(c)
                y = term if y is None else y + term
            return [y]
        if p.operation == E.PROD:
            if not p.stable_prod_grad and first.device.type != "meta":
                return [_ProdUnstable.apply(*bottoms)]
            y = bottoms[0]
            for b in bottoms[1:]:
                y = y * b
            return [y]
        if p.operation == E.MAX:
            with torch.no_grad():
                # bottoms 0 and 1: x0 > x1 ? 0 : 1 (ties go to 1); later bottoms need strict >
                best = torch.where(bottoms[0] > bottoms[1], bottoms[0], bottoms[1])
                idx = torch.where(bottoms[0] > bottoms[1], 0, 1)
                for k, b in enumerate(bottoms[2:], 2):
                    win = b > best
                    idx = torch.where(win, k, idx)
                    best = torch.where(win, b, best)
            stacked = torch.stack(bottoms, dim=0)
            return [stacked.gather(0, idx.unsqueeze(0)).squeeze(0)]
        self.fail(f"unknown operation {p.operation}")


@register("Crop")
class Crop(Layer):
    exact_bottoms = 2
    exact_tops = 1
    no_grad_bottoms = (1,)

    def _window(self, a_shape, b_shape):
        p = self.param.crop_param
        if len(a_shape) != len(b_shape):
            self.fail(f"bottoms have {len(a_shape)} and {len(b_shape)} axes; they must match")
        axis = _canon(self, p.axis, len(a_shape))
        offsets = list(p.offset)
        ncrop = len(a_shape) - axis
        if len(offsets) > 1 and len(offsets) != ncrop:
            self.fail(f"{len(offsets)} offsets for {ncrop} cropped axes (give 0, 1 or one per axis)")
        window = []
        for i, size in enumerate(a_shape):
            if i < axis:
                window.append((0, size))
                continue
            off = offsets[0] if len(offsets) == 1 else offsets[i - axis] if offsets else 0
            want = b_shape[i]
            if size - off < want:
                self.fail(f"axis {i}: crop of size {want} at offset {off} does not fit in {size}")
            window.append((off, want))
        return window

    def reshape(self, bottom_shapes):
        return [tuple(n for _, n in self._window(bottom_shapes[0], bottom_shapes[1]))]

    def forward(self, bottoms):
        a, b = bottoms
        y = a
        for axis, (off, n) in enumerate(self._window(tuple(a.shape), tuple(b.shape))):
            if off or n != a.shape[axis]:
                y = y.narrow(axis, off, n)
        return [y if y is not a else a.view_as(a)]


@register("Tile")
class Tile(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom_shapes):
        p = self.param.tile_param
        if not p.HasField("tiles") or p.tiles <= 0:
            self.fail("tile_param.tiles must be set and > 0")

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.tile_param
        axis = _canon(self, p.axis, x.dim())
        reps = [1] * x.dim()
        reps[axis] = p.tiles
        return [x.repeat(*reps)]
