"""Utility layers: Softmax, Accuracy, ArgMax, Reduction, DummyData (Input lives in core.py)."""

import math

import torch

from ...proto import caffe_pb2
from ..fillers import fill
from ..layer import Layer, register
from .core import Input  # noqa: F401  (registered there; the net owns input blobs)


def _labels(t):
    return t.detach().trunc().long()


@register("Softmax")
class Softmax(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        x = bottoms[0]
        return [torch.softmax(x, dim=self.param.softmax_param.axis % x.dim())]


@register("Accuracy")
class Accuracy(Layer):
    """A position is right when fewer than top_k other classes score >= the label's score."""

    has_backward = False
    exact_bottoms = 2
    min_tops = 1
    max_tops = 2

    def reshape(self, bottom_shapes):
        p = self.param.accuracy_param
        shape = tuple(bottom_shapes[0])
        axis = p.axis % len(shape)
        outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
        if math.prod(bottom_shapes[1]) != outer * inner:
            self.fail(f"label count ({math.prod(bottom_shapes[1])}) must equal outer×inner "
                      f"({outer}×{inner}) of the scores {list(shape)}")
        if p.top_k > shape[axis]:
            self.fail(f"top_k ({p.top_k}) is larger than the number of classes ({shape[axis]})")
        return [()] + [(shape[axis],)] * (len(self.param.top) > 1)

    def forward(self, bottoms):
        scores, labels = bottoms[0].detach(), bottoms[1]
        p = self.param.accuracy_param
        axis = p.axis % scores.dim()
        classes = scores.shape[axis]
        flat = scores.movedim(axis, -1).reshape(-1, classes)
        lab = _labels(labels).reshape(-1)
        valid = torch.ones_like(lab, dtype=torch.bool)
        if p.HasField("ignore_label"):
            valid = lab != p.ignore_label
        bad = valid & ((lab < 0) | (lab >= classes))
        if bool(bad.any()):
            self.fail(f"label {int(lab[bad][0])} is out of range for {classes} classes")
        safe = torch.where(valid, lab, torch.zeros_like(lab))
        own = flat.gather(1, safe[:, None])
        others_ge = (flat >= own).sum(dim=1) - 1  # ties count against the label
        correct = (others_ge < p.top_k) & valid
        count = int(valid.sum())
        zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
        tops = [correct.sum().to(scores.dtype) / count if count else zero]
        if len(self.param.top) > 1:
            ones = torch.ones(len(safe), dtype=scores.dtype, device=scores.device)
            total = torch.zeros(classes, dtype=scores.dtype, device=scores.device)
            hits = torch.zeros_like(total)
            total.index_add_(0, safe[valid], ones[valid])
            hits.index_add_(0, safe[valid], correct[valid].to(scores.dtype))
            tops.append(torch.where(total > 0, hits / total.clamp(min=1), torch.zeros_like(total)))
        return tops


@register("ArgMax")
class ArgMax(Layer):
    """Indices (and optionally values) of the top_k scores; ties pick the larger index."""

    has_backward = False
    exact_bottoms = 1
    exact_tops = 1

    def _axis(self, ndim):
        p = self.param.argmax_param
        return p.axis % ndim if p.HasField("axis") else None

    def reshape(self, bottom_shapes):
        p = self.param.argmax_param
        shape = list(bottom_shapes[0])
        axis = self._axis(len(shape))
        if axis is not None:
            if p.top_k > shape[axis]:
                self.fail(f"top_k ({p.top_k}) is larger than axis {axis} ({shape[axis]})")
            shape[axis] = p.top_k
            return [tuple(shape)]
        dim = math.prod(shape[1:])
        if p.top_k > dim:
            self.fail(f"top_k ({p.top_k}) is larger than the {dim} values per item")
        out = [1] * max(len(shape), 3)
        out[0], out[1], out[2] = shape[0], 2 if p.out_max_val else 1, p.top_k
        return [tuple(out)]

    def forward(self, bottoms):
        x = bottoms[0].detach()
        p = self.param.argmax_param
        axis = self._axis(x.dim())
        top_shape = self.reshape([tuple(x.shape)])[0]
        rows = x.movedim(axis, -1) if axis is not None else x.reshape(x.shape[0], -1)
        n = rows.shape[-1]
        # sorting the reversed row stably puts the larger index first among equal values
        vals, rev = torch.sort(rows.flip(-1), dim=-1, descending=True, stable=True)
        vals, idx = vals[..., :p.top_k], (n - 1 - rev[..., :p.top_k]).to(x.dtype)
        if axis is not None:
            out = vals if p.out_max_val else idx
            return [out.movedim(-1, axis).reshape(top_shape)]
        out = torch.stack([idx, vals], dim=1) if p.out_max_val else idx[:, None, :]
        return [out.reshape(top_shape)]


@register("Reduction")
class Reduction(Layer):
    """SUM, ASUM, SUMSQ or MEAN over all axes from `axis` on, times coeff."""

    exact_bottoms = 1
    exact_tops = 1

    def forward(self, bottoms):
        x = bottoms[0]
        p = self.param.reduction_param
        axis = p.axis % x.dim() if x.dim() else 0
        flat = x.reshape(tuple(x.shape[:axis]) + (-1,))
        op = p.operation
        R = caffe_pb2.ReductionParameter
        if op == R.SUM:
            out = flat.sum(-1)
        elif op == R.ASUM:
            out = flat.abs().sum(-1)
        elif op == R.SUMSQ:
            out = (flat * flat).sum(-1)
        elif op == R.MEAN:
            out = flat.sum(-1) / max(flat.shape[-1], 1)
        else:
            self.fail(f"unknown reduction operation {op}")
        return [out * float(p.coeff)]


@register("DummyData")
class DummyData(Layer):
    """Tops filled by data_filler; constant fillers once, others anew every forward."""

    has_backward = False
    exact_bottoms = 0

    def _shapes(self):
        p = self.param.dummy_data_param
        ntops = len(self.param.top)
        if len(p.shape):
            shapes = [tuple(int(d) for d in s.dim) for s in p.shape]
        else:
            legacy = [p.num, p.channels, p.height, p.width]
            if not len(p.num):
                self.fail("dummy_data_param needs shape or num/channels/height/width")
            for field, vals in zip(("num", "channels", "height", "width"), legacy):
                if len(vals) not in (1, ntops):
                    self.fail(f"dummy_data_param.{field} has {len(vals)} values for {ntops} tops")
            shapes = [tuple(int(v[k] if len(v) > 1 else v[0]) for v in legacy)
                      for k in range(ntops)]
        return self._per_top(shapes, "shape", ntops)

    def _per_top(self, items, field, ntops):
        if len(items) == 1:
            return list(items) * ntops
        if len(items) != ntops:
            self.fail(f"dummy_data_param.{field} has {len(items)} entries for {ntops} tops "
                      "(give one, or one per top)")
        return list(items)

    def _fillers(self, ntops):
        fillers = list(self.param.dummy_data_param.data_filler)
        if not fillers:
            fillers = [caffe_pb2.FillerParameter(type="constant", value=0)]
        return self._per_top(fillers, "data_filler", ntops)

    def setup(self, bottom_shapes):
        ntops = len(self.param.top)
        self.shapes = self._shapes()
        self.fillers = self._fillers(ntops)
        self.cached = [None] * ntops

    def reshape(self, bottom_shapes):
        return self._shapes()

    def forward(self, bottoms):
        tops = []
        for k, (shape, filler) in enumerate(zip(self.shapes, self.fillers)):
            if filler.type == "constant" and self.cached[k] is not None:
                tops.append(self.cached[k])
                continue
            t = fill(filler, shape, self.dtype, self.rng, f"layer '{self.name}'").to(self.device)
            if filler.type == "constant":
                self.cached[k] = t
            tops.append(t)
        return tops


@register("Embed")
class Embed(Layer):
    """y = W[int(x)] + b with W of shape (input_dim, num_output); no gradient to the indices."""

    exact_bottoms = 1
    exact_tops = 1
    no_grad_bottoms = (0,)

    def setup(self, bottom_shapes):
        from .vision import _filler, _make_params
        from ..fillers import constant_filler
        p = self.param.embed_param
        if p.num_output == 0 or p.input_dim == 0:
            self.fail("embed_param.num_output and input_dim must be > 0")
        specs = [((p.input_dim, p.num_output), _filler(p, "weight_filler", constant_filler(0)))]
        if p.bias_term:
            specs.append(((p.num_output,), _filler(p, "bias_filler", constant_filler(0))))
        _make_params(self, specs)

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0]) + (self.param.embed_param.num_output,)]

    def forward(self, bottoms):
        x = bottoms[0].detach()
        p = self.param.embed_param
        idx = _labels(x)
        if bool(((idx < 0) | (idx >= p.input_dim)).any()) or bool((x != x.trunc()).any()):
            bad = x[(idx < 0) | (idx >= p.input_dim) | (x != x.trunc())].reshape(-1)[0]
            self.fail(f"index {float(bad)} is not an integer in [0, {p.input_dim})")
        y = self.blobs[0].tensor[idx.reshape(-1)].reshape(tuple(x.shape) + (p.num_output,))
        if p.bias_term:
            y = y + self.blobs[1].tensor
        return [y]


@register("Silence")
class Silence(Layer):
    """Consumes its bottoms; no tops, nothing computed (the bottoms' diffs stay zero)."""

    min_bottoms = 1
    exact_tops = 0

    def reshape(self, bottom_shapes):
        return []

    def forward(self, bottoms):
        return []


@register("Parameter")
class Parameter(Layer):
    """Emits one learned blob of parameter_param.shape (created as zeros) as its top."""

    exact_bottoms = 0
    exact_tops = 1

    def setup(self, bottom_shapes):
        from .vision import _make_params
        from ..fillers import constant_filler
        shape = tuple(int(d) for d in self.param.parameter_param.shape.dim)
        _make_params(self, [(shape, constant_filler(0))])

    def reshape(self, bottom_shapes):
        return [tuple(self.blobs[0].shape)]

    def forward(self, bottoms):
        t = self.blobs[0].tensor
        return [t.view_as(t)]
