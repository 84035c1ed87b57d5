"""Loss layers (SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss, HingeLoss,
ContrastiveLoss, InfogainLoss, MultinomialLogisticLoss) with Caffe's normalization and gradients."""

import math

import torch

from ...proto import caffe_pb2
from ..layer import Layer, register

FLT_MIN = 1.1754943508222875e-38
LOG_THRESHOLD = 1e-20  # MultinomialLogisticLoss clamps probabilities here
Norm = caffe_pb2.LossParameter


class _GivenGrad(torch.autograd.Function):
    """A loss whose gradient w.r.t. x is computed in forward (where Caffe's differs from autograd)."""

    @staticmethod
    def forward(ctx, x, loss, grad):
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, dloss):
        (grad,) = ctx.saved_tensors
        return grad * dloss, None, None


def _labels(t):
    return t.detach().trunc().long()


def normalization_mode(lp, default=Norm.VALID):
    if lp.HasField("normalization"):
        return lp.normalization
    if lp.HasField("normalize"):
        return Norm.VALID if lp.normalize else Norm.BATCH_SIZE
    return default


def normalizer(mode, outer, inner, valid):
    if mode == Norm.FULL:
        n = outer * inner
    elif mode == Norm.VALID:
        n = valid
    elif mode == Norm.BATCH_SIZE:
        n = outer
    else:
        n = 1
    return float(max(n, 1))


class _Loss(Layer):
    is_loss = True
    no_grad_bottoms = (1,)
    exact_tops = 1

    def reshape(self, bottom_shapes):
        # the loss is a scalar; forward reads label values, so it cannot run on meta tensors
        return [()]


def _split(shape, axis):
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _check_labels(layer, lab, classes, ignore):
    """Every label (but ignore_label) in [0, classes). Caffe only asserts this in debug
    builds; we always check, with one min/max."""
    if ignore is not None:
        lab = lab[lab != ignore]
    if lab.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(lab)).tolist()
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        skip = f", or ignore_label {ignore}" if ignore is not None else ""
        layer.fail(f"label {bad} is out of range: valid labels are 0..{classes - 1} "
                   f"for {classes} classes{skip}")


def _rows_and_labels(layer, x, labels):
    """(N, D) view of x and its N checked labels, for losses with one label per sample."""
    num = x.shape[0]
    flat = x.reshape(num, -1)
    lab = _labels(labels).reshape(-1)
    if lab.numel() != num:
        layer.fail(f"expects {num} labels, got {lab.numel()}")
    _check_labels(layer, lab, flat.shape[1], None)
    return flat, lab


def _softmax_rows(layer, scores, labels, axis):
    """Scores as (outer·inner, classes) probabilities, labels as a flat long tensor."""
    outer, classes, inner = _split(tuple(scores.shape), axis)
    if labels.numel() != outer * inner:
        layer.fail(f"label count ({labels.numel()}) must equal outer×inner ({outer}×{inner}) "
                   f"of the scores {list(scores.shape)}")
    x = scores.detach().movedim(axis, -1).reshape(-1, classes)
    return torch.softmax(x, dim=1), _labels(labels).reshape(-1), outer, inner


def _to_layout(rows, like, axis):
    moved = list(like.movedim(axis, -1).shape)
    return rows.reshape(moved).movedim(-1, axis)


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(_Loss):
    """−log p[label], p clamped at FLT_MIN; gradient (p − onehot)/norm, not clamped."""

    exact_bottoms = 2
    exact_tops = None
    min_tops = 1
    max_tops = 2

    def reshape(self, bottom_shapes):
        axis = self.param.softmax_param.axis % len(bottom_shapes[0])
        outer, _, inner = _split(tuple(bottom_shapes[0]), axis)
        if math.prod(bottom_shapes[1]) != outer * inner:
            self.fail(f"label count ({math.prod(bottom_shapes[1])}) must equal outer×inner "
                      f"({outer}×{inner}) of the scores {list(bottom_shapes[0])}")
        return [()] + [tuple(bottom_shapes[0])] * (len(self.param.top) > 1)

    def forward(self, bottoms):
        scores, labels = bottoms
        axis = self.param.softmax_param.axis % scores.dim()
        lp = self.param.loss_param
        ignore = lp.ignore_label if lp.HasField("ignore_label") else None
        prob, lab, outer, inner = _softmax_rows(self, scores, labels, axis)
        _check_labels(self, lab, prob.shape[1], ignore)
        valid = lab != ignore if ignore is not None else torch.ones_like(lab, dtype=torch.bool)
        safe = torch.where(valid, lab, torch.zeros_like(lab))
        p_label = prob.gather(1, safe[:, None])[:, 0]
        norm = normalizer(normalization_mode(lp), outer, inner, int(valid.sum()))
        loss = -(torch.log(torch.clamp(p_label, min=FLT_MIN)) * valid).sum() / norm
        grad = prob.clone()
        grad[torch.arange(len(safe)), safe] -= 1
        grad = grad * valid[:, None] / norm
        top = _GivenGrad.apply(scores, loss, _to_layout(grad, scores, axis))
        if len(self.param.top) > 1:
            return [top, _to_layout(prob, scores, axis)]
        return [top]


@register("EuclideanLoss")
class EuclideanLoss(_Loss):
    exact_bottoms = 2
    no_grad_bottoms = ()

    def forward(self, bottoms):
        a, b = bottoms
        if a.numel() != b.numel():
            self.fail(f"bottoms have {a.numel()} and {b.numel()} elements; they must match")
        diff = a - b.reshape(a.shape)
        return [(diff * diff).sum() / a.shape[0] / 2]


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(_Loss):
    exact_bottoms = 2

    def forward(self, bottoms):
        x, target = bottoms
        if x.numel() != target.numel():
            self.fail(f"scores have {x.numel()} elements, targets {target.numel()}; they must match")
        lp = self.param.loss_param
        t = target.detach().reshape(x.shape).to(x.dtype)
        valid = torch.ones_like(t, dtype=torch.bool)
        if lp.HasField("ignore_label"):
            valid = _labels(t) != lp.ignore_label
        pos = (x >= 0).to(x.dtype)
        # the numerically stable form Caffe uses; autograd of it is sigmoid(x) − t
        each = x * (t - pos) - torch.log1p(torch.exp(x - 2 * x * pos))
        outer = x.shape[0]
        norm = normalizer(normalization_mode(lp, Norm.BATCH_SIZE), outer,
                          x.numel() // max(outer, 1), int(valid.sum()))
        return [-(each * valid).sum() / norm]


@register("HingeLoss")
class HingeLoss(_Loss):
    exact_bottoms = 2

    def forward(self, bottoms):
        x, labels = bottoms
        num = x.shape[0]
        flat, lab = _rows_and_labels(self, x, labels)
        sign = torch.ones_like(flat)
        sign[torch.arange(num), lab] = -1
        margin = torch.relu(1 + flat * sign)  # relu: gradient 0 at the hinge, as Caffe's sign(0)
        if self.param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2:
            return [(margin * margin).sum() / num]
        return [margin.sum() / num]


@register("ContrastiveLoss")
class ContrastiveLoss(_Loss):
    """Pairs (a, b, similar): similar pulls d², dissimilar pushes max(margin − d, 0)²."""

    exact_bottoms = 3
    no_grad_bottoms = (2,)

    def forward(self, bottoms):
        a, b, sim = bottoms
        p = self.param.contrastive_loss_param
        margin = float(p.margin)
        num = a.shape[0]
        if b.shape != a.shape or sim.numel() != num:
            self.fail(f"bottoms {list(a.shape)}, {list(b.shape)}, {list(sim.shape)} do not pair up")
        diff = (a - b).detach().reshape(num, -1)
        dist_sq = (diff * diff).sum(dim=1)
        similar = _labels(sim).reshape(-1) != 0
        if p.legacy_version:
            push = torch.clamp(margin - dist_sq, min=0)
            loss_d = push
            coef_d = -(push > 0).to(a.dtype)
        else:
            dist = torch.sqrt(dist_sq)
            push = torch.clamp(margin - dist, min=0)
            loss_d = push * push
            # Caffe's gradient divides by (d + 1e-4), which autograd would not
            coef_d = -push / (dist + 1e-4) * (push > 0)
        loss = torch.where(similar, dist_sq, loss_d).sum() / (2.0 * num)
        coef = torch.where(similar, torch.ones_like(dist_sq), coef_d) / num
        grad = (coef[:, None] * diff).reshape(a.shape)
        both = torch.stack([a, b])
        out = _GivenGrad.apply(both, loss, torch.stack([grad, -grad]))
        return [out]


def _read_matrix(path, layer):
    try:
        from ...proto.binary import read_blob_proto
        blob = read_blob_proto(path)
    except ImportError:
        blob = caffe_pb2.BlobProto()
        with open(path, "rb") as f:
            blob.ParseFromString(f.read())
    values = list(blob.double_data) or list(blob.data)
    return torch.tensor(values, dtype=torch.float64)


@register("InfogainLoss")
class InfogainLoss(_Loss):
    """−Σ_j H[label, j]·log p_j with p = softmax over axis; H from bottom 2 or a file."""

    min_bottoms = 2
    no_grad_bottoms = (1, 2)

    def setup(self, bottom_shapes):
        self.H = None
        if len(bottom_shapes) < 3:
            src = self.param.infogain_loss_param.source
            if not src:
                self.fail("needs a third bottom or infogain_loss_param.source for the H matrix")
            self.H = _read_matrix(src, self)

    def forward(self, bottoms):
        scores, labels = bottoms[:2]
        axis = self.param.infogain_loss_param.axis % scores.dim()
        lp = self.param.loss_param
        ignore = lp.ignore_label if lp.HasField("ignore_label") else None
        prob, lab, outer, inner = _softmax_rows(self, scores, labels, axis)
        classes = prob.shape[1]
        H = bottoms[2].detach() if len(bottoms) > 2 else self.H
        if H.numel() != classes * classes:
            self.fail(f"H has {H.numel()} values, expected {classes}×{classes}")
        H = H.reshape(classes, classes).to(device=prob.device, dtype=prob.dtype)
        _check_labels(self, lab, classes, ignore)
        valid = lab != ignore if ignore is not None else torch.ones_like(lab, dtype=torch.bool)
        rows = H[torch.where(valid, lab, torch.zeros_like(lab))] * valid[:, None]
        norm = normalizer(normalization_mode(lp), outer, inner, int(valid.sum()))
        loss = -(rows * torch.log(torch.clamp(prob, min=FLT_MIN))).sum() / norm
        grad = (prob * rows.sum(dim=1, keepdim=True) - rows) / norm
        return [_GivenGrad.apply(scores, loss, _to_layout(grad, scores, axis))]


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(_Loss):
    """−log max(p[label], 1e-20) over probabilities given directly."""

    exact_bottoms = 2

    def forward(self, bottoms):
        prob, labels = bottoms
        num = prob.shape[0]
        flat, lab = _rows_and_labels(self, prob.detach(), labels)
        idx = torch.arange(num)
        p = torch.clamp(flat[idx, lab], min=LOG_THRESHOLD)
        loss = -torch.log(p).sum() / num
        grad = torch.zeros_like(flat)
        grad[idx, lab] = -1.0 / p / num
        return [_GivenGrad.apply(prob, loss, grad.reshape(prob.shape))]
