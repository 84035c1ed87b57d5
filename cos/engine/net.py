"""Net: a Caffe NetParameter built for one phase, run with torch.

Construction follows Caffe's Net::Init: filter layers by NetState, insert Split layers,
wire blobs, set loss weights, register and share params, decide which layers need backward.
Two ways to run it:
  * pycaffe's calls (forward/backward with start/end, diffs set by hand): each layer keeps
    a small autograd graph of its own, so any blob's diff can seed the backward pass;
  * the training step (`forward_backward`): one autograd graph over the whole net.
"""

import collections
import copy
import os

import numpy as np
import torch

from ..errors import CosError, NetError
from ..proto import caffe_pb2
from ..proto.blobs import array_to_blob, blob_shape, blob_to_array, shapes_match
from .blob import Blob
from .layer import TEST, TRAIN, layer_class
from . import layers as _layers  # noqa: F401  (registers the layer types)

_global = {"seed": None}


def set_random_seed(seed):
    _global["seed"] = int(seed)


def _new_generator(seed):
    if seed is None:
        seed = _global["seed"]
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(4), "little")
    return torch.Generator().manual_seed(int(seed))


# ---- NetState filtering and Split insertion (pure functions over protos) --------

def state_meets_rule(state, rule):
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_net(param, state):
    """Copy of `param` with only the layers that the NetState includes."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if len(layer.include) and len(layer.exclude):
            raise NetError(f"layer '{layer.name}': specify either include or exclude rules, not both")
        if len(layer.include):
            keep = any(state_meets_rule(state, r) for r in layer.include)
        else:
            keep = not any(state_meets_rule(state, r) for r in layer.exclude)
        if keep:
            out.layer.add().CopyFrom(layer)
    return out


def split_layer_name(blob, layer, index):
    return f"{blob}_{layer}_{index}_split"


def split_blob_name(blob, layer, index, k):
    return f"{blob}_{layer}_{index}_split_{k}"


def insert_splits(param):
    """Caffe's InsertSplits: a Split layer after every top read by more than one consumer."""
    last_producer = {}
    source_of = {}
    consumers = collections.Counter()
    loss_weights = {}
    for i, layer in enumerate(param.layer):
        for j, bottom in enumerate(layer.bottom):
            if bottom not in last_producer:
                raise NetError(f"layer '{layer.name}': bottom '{bottom}' is not produced by any "
                               "earlier layer (unknown bottom blob)")
            source_of[(i, j)] = last_producer[bottom]
            consumers[last_producer[bottom]] += 1
        for j, top in enumerate(layer.top):
            last_producer[top] = (i, j)
        for j, weight in enumerate(layer.loss_weight):
            if weight:
                loss_weights[(i, j)] = weight
                consumers[(i, j)] += 1
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    next_slot = collections.Counter()
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j, bottom in enumerate(layer.bottom):
            src = source_of[(i, j)]
            if consumers[src] > 1:
                producer = param.layer[src[0]].name
                new.bottom[j] = split_blob_name(bottom, producer, src[1], next_slot[src])
                next_slot[src] += 1
        for j, top in enumerate(layer.top):
            count = consumers[(i, j)]
            if count <= 1:
                continue
            weight = loss_weights.get((i, j), 0)
            split = out.layer.add()
            split.name = split_layer_name(top, layer.name, j)
            split.type = "Split"
            split.bottom.append(top)
            for k in range(count):
                split.top.append(split_blob_name(top, layer.name, j, k))
                if weight:
                    split.loss_weight.append(weight if k == 0 else 0)
            if weight:
                new.ClearField("loss_weight")
                next_slot[(i, j)] += 1
    return out


# ---- the net ---------------------------------------------------------------------

class Net:
    """A Caffe net for one phase. See the module docstring for the two ways to run it."""

    def __init__(self, net, phase=TEST, level=0, stages=(), weights=None,
                 dtype=torch.float32, device="cpu", seed=None):
        param = self._load_param(net)
        self.phase = phase
        self.dtype = dtype
        self.device = torch.device(device)
        self.rng = _new_generator(seed)
        state = caffe_pb2.NetState()
        state.CopyFrom(param.state)
        state.phase = phase
        state.level = level
        state.stage.extend(stages)
        self.state = state
        self.name = param.name
        self.force_backward = param.force_backward
        self.grad_scale = 1.0  # seed of the training backward (set by data-parallel sync)
        runtime = insert_splits(filter_net(param, state))
        self._build(runtime)
        if weights:
            self.copy_from(weights)

    @staticmethod
    def _load_param(net):
        if isinstance(net, caffe_pb2.NetParameter):
            from ..proto.upgrade import upgrade_net
            return upgrade_net(copy.deepcopy(net))
        from ..proto.text import read_net
        return read_net(os.fspath(net))

    # -- construction ---------------------------------------------------------
    def _build(self, runtime):
        self.layers = []
        self._layer_names = []
        self.blobs = collections.OrderedDict()
        self.bottom_names = collections.OrderedDict()
        self.top_names = collections.OrderedDict()
        self.blob_loss_weights = collections.OrderedDict()
        self.inputs = []
        self.learnable_params = []
        self.params_lr = []
        self.params_weight_decay = []
        self._owners = {}
        self._loss_tops = []      # per layer: [(top name, weight)]
        self._bottom_need = []    # per layer: [bool per bottom]
        self._layer_need = []
        available = set()
        blob_need = {}
        for lp in runtime.layer:
            self._add_layer(lp, available, blob_need)
        self._prune_backward()
        self.outputs = sorted(available)

    def _add_layer(self, lp, available, blob_need):
        index = len(self.layers)
        if not lp.HasField("phase"):
            lp.phase = self.phase
        if len(lp.propagate_down) not in (0, len(lp.bottom)):
            raise NetError(f"layer '{lp.name}': propagate_down has {len(lp.propagate_down)} "
                           f"entries but the layer has {len(lp.bottom)} bottoms")
        layer = layer_class(lp.type, lp.name)(lp, self.phase, self.dtype, self.device, self.rng)
        self._check_counts(layer, lp)
        bottom_shapes = []
        for name in lp.bottom:
            if name not in available:
                raise NetError(f"layer '{lp.name}': bottom '{name}' is not produced by any "
                               "earlier layer (or was consumed already)")
            available.discard(name)
            bottom_shapes.append(self.blobs[name].shape)
        self._preload_blobs(layer, lp)
        layer.setup(bottom_shapes)
        top_shapes = layer.reshape(bottom_shapes)
        self._wire_tops(layer, lp, top_shapes, available)
        if getattr(layer, "is_input", False):
            self.inputs.extend(lp.top)
        self._set_loss_weights(layer, lp)
        self._register_params(layer, lp)
        self._forward_need(layer, lp, blob_need)
        self.layers.append(layer)
        self._layer_names.append(lp.name)
        self.bottom_names[lp.name] = list(lp.bottom)
        self.top_names[lp.name] = list(lp.top)
        return index

    @staticmethod
    def _check_counts(layer, lp):
        nb, nt = len(lp.bottom), len(lp.top)
        checks = (("exact_bottoms", nb, "=="), ("min_bottoms", nb, ">="),
                  ("exact_tops", nt, "=="), ("min_tops", nt, ">="), ("max_tops", nt, "<="))
        for attr, have, op in checks:
            want = getattr(layer, attr, None)
            if want is None:
                continue
            ok = have == want if op == "==" else have >= want if op == ">=" else have <= want
            if not ok:
                what = "bottoms" if "bottom" in attr else "tops"
                raise NetError(f"layer '{lp.name}' ({lp.type}): needs {op.strip('=') or ''}"
                               f"{'exactly ' if op == '==' else ''}{want} {what}, has {have}"
                               .replace("needs >", "needs at least ").replace("needs <", "needs at most "))

    def _preload_blobs(self, layer, lp):
        """Blobs stored in the LayerParameter (a model file read as the net) become params."""
        for k, bp in enumerate(lp.blobs):
            arr = blob_to_array(bp, where=f"layer '{lp.name}' blob {k}")
            blob = Blob(arr.shape, self.dtype, self.device, f"{lp.name}.{k}")
            blob.tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
            layer.blobs.append(blob.make_param())
        del lp.blobs[:]

    def _wire_tops(self, layer, lp, top_shapes, available):
        if len(top_shapes) != len(lp.top):
            raise NetError(f"layer '{lp.name}' ({lp.type}): produces {len(top_shapes)} tops "
                           f"but the prototxt lists {len(lp.top)}")
        for j, (name, shape) in enumerate(zip(lp.top, top_shapes)):
            in_place = j < len(lp.bottom) and lp.bottom[j] == name
            if in_place:
                self.blobs[name].set_tensor(torch.zeros(shape, dtype=self.dtype, device=self.device))
            elif name in self.blobs:
                raise NetError(f"layer '{lp.name}': top '{name}' is produced by multiple sources")
            else:
                self.blobs[name] = Blob(shape, self.dtype, self.device, name)
                self.blob_loss_weights[name] = 0.0
            available.add(name)

    def _set_loss_weights(self, layer, lp):
        if layer.is_loss and not len(lp.loss_weight):
            lp.loss_weight.append(1.0)
        if len(lp.loss_weight) not in (0, len(lp.top)):
            raise NetError(f"layer '{lp.name}' ({lp.type}): loss_weight has "
                           f"{len(lp.loss_weight)} entries for {len(lp.top)} tops; give one per top")
        tops = []
        for name, weight in zip(lp.top, lp.loss_weight):
            if weight:
                blob = self.blobs[name]
                blob.diff_tensor.fill_(weight)
                self.blob_loss_weights[name] = float(weight)
                tops.append((name, float(weight)))
        self._loss_tops.append(tops)

    def _register_params(self, layer, lp):
        for k, blob in enumerate(layer.blobs):
            if blob.tensor.device != self.device or blob.tensor.dtype != self.dtype:
                moved = Blob(blob.shape, self.dtype, self.device, blob.name)
                moved.tensor.copy_(blob.tensor.detach())
                blob = layer.blobs[k] = moved.make_param()
            spec = lp.param[k] if k < len(lp.param) else caffe_pb2.ParamSpec()
            blob.name = blob.name or f"{lp.name}.{k}"
            blob.lr_mult = spec.lr_mult
            if spec.name and spec.name in self._owners:
                layer.blobs[k] = self._share(lp, k, spec, blob)
                continue
            if spec.name:
                self._owners[spec.name] = (len(self.learnable_params), lp.name, k, spec)
            blob.tensor.requires_grad_(spec.lr_mult != 0 or self.force_backward)
            self.learnable_params.append(blob)
            self.params_lr.append(float(spec.lr_mult))
            self.params_weight_decay.append(float(spec.decay_mult))

    def _share(self, lp, k, spec, blob):
        index, owner_layer, owner_k, owner_spec = self._owners[spec.name]
        owner = self.learnable_params[index]
        strict = spec.share_mode != caffe_pb2.ParamSpec.PERMISSIVE
        same = owner.shape == blob.shape if strict else owner.count == blob.count
        if not same:
            raise NetError(f"layer '{lp.name}': cannot share param '{spec.name}' owned by layer "
                           f"'{owner_layer}': shapes {list(owner.shape)} and {list(blob.shape)} differ")
        if spec.HasField("lr_mult"):
            if owner_spec.HasField("lr_mult") and owner_spec.lr_mult != spec.lr_mult:
                raise NetError(f"layer '{lp.name}': shared param '{spec.name}' has lr_mult "
                               f"{spec.lr_mult} but its owner has {owner_spec.lr_mult}")
            self.params_lr[index] = float(spec.lr_mult)
            owner.tensor.requires_grad_(spec.lr_mult != 0 or self.force_backward)
        if spec.HasField("decay_mult"):
            if owner_spec.HasField("decay_mult") and owner_spec.decay_mult != spec.decay_mult:
                raise NetError(f"layer '{lp.name}': shared param '{spec.name}' has decay_mult "
                               f"{spec.decay_mult} but its owner has {owner_spec.decay_mult}")
            self.params_weight_decay[index] = float(spec.decay_mult)
        return owner

    def _forward_need(self, layer, lp, blob_need):
        bottom_need = []
        need = False
        for k, name in enumerate(lp.bottom):
            flag = blob_need.get(name, False)
            need = need or flag
            if len(lp.propagate_down):
                flag = bool(lp.propagate_down[k])
            bottom_need.append(flag and k not in layer.no_grad_bottoms)
        need = need or any(b.tensor.requires_grad for b in layer.blobs)
        if not layer.has_backward:
            need = False
            bottom_need = [False] * len(bottom_need)
        if need:
            for name in lp.top:
                blob_need[name] = True
        self._bottom_need.append(bottom_need)
        self._layer_need.append(need)

    def _prune_backward(self):
        """Caffe's backward sweep: switch off layers that don't contribute to the loss."""
        under_loss, skip = set(), set()
        for i in reversed(range(len(self.layers))):
            tops = self.top_names[self._layer_names[i]]
            loss_tops = {name for name, _ in self._loss_tops[i]}
            contributes = any(t in loss_tops or t in under_loss for t in tops)
            skip_down = all(t in skip for t in tops) and bool(tops)
            if self._layer_need[i] and skip_down:
                self._layer_need[i] = False
                self._bottom_need[i] = [False] * len(self._bottom_need[i])
            if not contributes:
                self._layer_need[i] = False
            for k, name in enumerate(self.bottom_names[self._layer_names[i]]):
                if contributes:
                    under_loss.add(name)
                else:
                    self._bottom_need[i][k] = False
                if not self._bottom_need[i][k]:
                    skip.add(name)
        if self.force_backward:
            self._force_backward()

    def _force_backward(self):
        for i, layer in enumerate(self.layers):
            if not layer.has_backward:
                continue
            self._layer_need[i] = True
            self._bottom_need[i] = [k not in layer.no_grad_bottoms
                                    for k in range(len(self._bottom_need[i]))]
            for blob in layer.blobs:
                blob.tensor.requires_grad_(True)

    # -- pycaffe-style execution -------------------------------------------------
    def _index(self, name, default):
        if name is None:
            return default
        if name not in self._layer_names:
            raise NetError(f"no layer named '{name}' in net '{self.name}'")
        return self._layer_names.index(name)

    def _forward(self, start, end, keep_graph=True):
        """Run layers start..end (inclusive); return the loss of the weighted tops.

        With keep_graph, each layer that needs backward keeps a small autograd graph so
        that `_backward` can run from diffs set on any blob.
        """
        self._saved = getattr(self, "_saved", {})
        loss = 0.0
        for i in range(start, end + 1):
            layer = self.layers[i]
            if getattr(layer, "is_input", False):
                continue
            names = self.bottom_names[self._layer_names[i]]
            bottoms = [self.blobs[n].tensor.detach() for n in names]
            if keep_graph and self._layer_need[i]:
                ins = [b.requires_grad_(need) if need else b
                       for b, need in zip(bottoms, self._bottom_need[i])]
                with torch.enable_grad():
                    outs = layer.forward(ins)
                self._saved[i] = (ins, outs)
            else:
                with torch.no_grad():
                    outs = layer.forward(bottoms)
                self._saved.pop(i, None)
            self._store_tops(i, outs)
            for name, weight in self._loss_tops[i]:
                loss += weight * float(self.blobs[name].tensor.detach().sum())
        return loss

    def _store_tops(self, i, outs):
        for name, out in zip(self.top_names[self._layer_names[i]], outs):
            self.blobs[name].set_tensor(out)

    def _backward(self, start, end):
        """Run backward from layer `start` down to `end` (inclusive), pycaffe style."""
        saved = getattr(self, "_saved", {})
        for i in range(start, end - 1, -1):
            if not self._layer_need[i] or i not in saved:
                continue
            self._backward_layer(i, *saved[i])

    def _backward_layer(self, i, ins, outs):
        layer = self.layers[i]
        lname = self._layer_names[i]
        pairs = [(o, self.blobs[n].diff_tensor) for o, n in zip(outs, self.top_names[lname])
                 if o.requires_grad]
        if not pairs:
            # No top carries a gradient (e.g. Silence): Caffe writes zeros to the bottoms.
            for name, need in zip(self.bottom_names[lname], self._bottom_need[i]):
                if need:
                    self.blobs[name].diff_tensor.zero_()
            return
        wanted = [x for x, need in zip(ins, self._bottom_need[i]) if need]
        params = [b for b in layer.blobs if b.tensor.requires_grad]
        targets = wanted + [b.tensor for b in params]
        if not targets:
            return
        grads = torch.autograd.grad([o for o, _ in pairs], targets, [g for _, g in pairs],
                                    retain_graph=True, allow_unused=True)
        needed = [n for n, need in zip(self.bottom_names[lname], self._bottom_need[i]) if need]
        for name, g in zip(needed, grads[:len(wanted)]):
            diff = self.blobs[name].diff_tensor
            diff.copy_(g) if g is not None else diff.zero_()
        for blob, g in zip(params, grads[len(wanted):]):
            if g is not None:
                blob.diff_tensor.add_(g)

    def forward(self, blobs=None, start=None, end=None, **inputs):
        for name, value in inputs.items():
            if name not in self.inputs:
                raise NetError(f"'{name}' is not an input of net '{self.name}' "
                               f"(inputs: {', '.join(self.inputs)})")
            self._set_input(name, value)
        i = self._index(start, 0)
        j = self._index(end, len(self.layers) - 1)
        self._forward(i, j)
        names = self.outputs if end is None else self.top_names[end]
        return {n: self.blobs[n].data for n in list(names) + list(blobs or [])}

    def _set_input(self, name, value):
        arr = np.asarray(value)
        blob = self.blobs[name]
        if arr.shape != blob.shape:
            blob.reshape(*arr.shape)
        blob.tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(blob.tensor.dtype))

    def backward(self, diffs=None, start=None, end=None, **top_diffs):
        for name, value in top_diffs.items():
            if name not in self.outputs:
                raise NetError(f"'{name}' is not an output of net '{self.name}'")
            self.blobs[name].diff[...] = value
        i = self._index(start, len(self.layers) - 1)
        j = self._index(end, 0)
        self._backward(i, j)
        names = self.inputs if end is None else self.bottom_names[end]
        return {n: self.blobs[n].diff for n in list(names) + list(diffs or [])}

    def forward_all(self, blobs=None, **inputs):
        """Forward any number of samples in batches of the input blobs' first dimension;
        the last batch is zero-padded and the padding trimmed from the outputs."""
        outs = collections.OrderedDict()
        total = None
        for batch, total in self._batches(inputs):
            for name, value in self.forward(blobs=blobs, **batch).items():
                outs.setdefault(name, []).append(np.atleast_1d(value).copy())
        return {n: np.concatenate(v)[:total] for n, v in outs.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward_all and backward_all together: kwargs naming inputs feed forward,
        kwargs naming outputs are the top diffs."""
        ins = {k: v for k, v in kwargs.items() if k in self.inputs}
        tops = {k: v for k, v in kwargs.items() if k in self.outputs and k not in ins}
        fwd, bwd = collections.OrderedDict(), collections.OrderedDict()
        total = None
        top_batches = [b for b, _ in self._batches(tops, size=self._batch_size(ins))]
        for k, (batch, total) in enumerate(self._batches(ins)):
            for name, value in self.forward(blobs=blobs, **batch).items():
                fwd.setdefault(name, []).append(np.atleast_1d(value).copy())
            top_batch = top_batches[k] if k < len(top_batches) else {}
            for name, value in self.backward(diffs=diffs, **top_batch).items():
                bwd.setdefault(name, []).append(np.atleast_1d(value).copy())
        return ({n: np.concatenate(v)[:total] for n, v in fwd.items()},
                {n: np.concatenate(v)[:total] for n, v in bwd.items()})

    def _batch_size(self, arrays):
        name = next(iter(arrays), None) or (self.inputs[0] if self.inputs else None)
        if name is None:
            raise NetError(f"net '{self.name}' has no inputs to batch")
        return self.blobs[name].shape[0] if name in self.blobs else len(arrays[name])

    def _batches(self, arrays, size=None):
        """Yield ({name: batch}, total samples), zero-padding the last batch."""
        if not arrays:
            yield {}, None
            return
        size = size or self._batch_size(arrays)
        total = len(next(iter(arrays.values())))
        for name, value in arrays.items():
            if len(value) != total:
                raise NetError(f"input '{name}' has {len(value)} samples, expected {total}")
        for start in range(0, total, size):
            batch = {}
            for name, value in arrays.items():
                chunk = np.asarray(value[start:start + size])
                if len(chunk) < size:
                    pad = np.zeros((size - len(chunk),) + chunk.shape[1:], dtype=chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                batch[name] = chunk
            yield batch, total

    def set_input_arrays(self, data, labels):
        """Hand arrays to the net's MemoryData layer (pycaffe's Net.set_input_arrays)."""
        for name, layer in zip(self._layer_names, self.layers):
            if hasattr(layer, "set_input_arrays"):
                return layer.set_input_arrays(data, labels)
        raise NetError(f"net '{self.name}': set_input_arrays needs a MemoryData layer, "
                       f"and the net has none")

    def reshape(self):
        """Propagate input shapes through the net without computing (Caffe's Net::Reshape)."""
        for i, layer in enumerate(self.layers):
            if getattr(layer, "is_input", False):
                continue
            lname = self._layer_names[i]
            shapes = layer.reshape([self.blobs[n].shape for n in self.bottom_names[lname]])
            for name, shape in zip(self.top_names[lname], shapes):
                self.blobs[name].reshape(*shape)

    # -- training path --------------------------------------------------------------
    def forward_backward(self):
        """One forward and backward over the whole net as a single autograd graph.

        Param diffs accumulate (they are the params' .grad); returns the loss.
        """
        terms = []
        for i, layer in enumerate(self.layers):
            if getattr(layer, "is_input", False):
                continue
            names = self.bottom_names[self._layer_names[i]]
            if self._layer_need[i]:
                bottoms = [self.blobs[n].tensor if need else self.blobs[n].tensor.detach()
                           for n, need in zip(names, self._bottom_need[i])]
                outs = layer.forward(bottoms)
            else:
                with torch.no_grad():
                    outs = layer.forward([self.blobs[n].tensor.detach() for n in names])
            self._store_tops(i, outs)
            for name, weight in self._loss_tops[i]:
                top = self.blobs[name].tensor
                terms.append(top.sum() * weight if weight != 1 else top.sum())
        self._saved = {}
        if not terms:
            return 0.0
        loss = terms[0] if len(terms) == 1 else torch.stack([t.reshape(()) for t in terms]).sum()
        if loss.requires_grad:
            if self.grad_scale == 1.0:
                loss.backward()
            else:  # data parallelism: every rank's diffs come out divided by the rank count
                loss.backward(torch.tensor(self.grad_scale, dtype=loss.dtype,
                                           device=loss.device))
        return float(loss.detach())

    def forward_loss(self):
        """Forward only (no graph); returns the loss."""
        with torch.no_grad():
            return self._forward(0, len(self.layers) - 1, keep_graph=False)

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.diff_tensor.zero_()

    def output_values(self):
        return {n: self.blobs[n].data.copy() for n in self.outputs}

    # -- params and persistence ----------------------------------------------------
    @property
    def params(self):
        out = collections.OrderedDict()
        for name, layer in zip(self._layer_names, self.layers):
            if layer.blobs:
                out[name] = list(layer.blobs)
        return out

    @property
    def layer_dict(self):
        return collections.OrderedDict(zip(self._layer_names, self.layers))

    def share_with(self, other):
        """Alias this net's params to the same-named layers of `other` (ShareTrainedLayersWith)."""
        mine = {}
        for name, layer in zip(self._layer_names, self.layers):
            mine.setdefault(name, layer)
        for name, source in zip(other._layer_names, other.layers):
            target = mine.get(name)
            if target is None or not source.blobs:
                continue
            if len(target.blobs) != len(source.blobs):
                raise NetError(f"layer '{name}': cannot share {len(source.blobs)} blobs "
                               f"with a layer of {len(target.blobs)}")
            for k, blob in enumerate(source.blobs):
                if target.blobs[k].shape != blob.shape:
                    raise NetError(f"layer '{name}': cannot share param {k}: shapes "
                                   f"{list(blob.shape)} and {list(target.blobs[k].shape)} differ")
                target.blobs[k] = blob

    def copy_from(self, source):
        """Load weights by layer name from a .caffemodel path or a NetParameter (CopyTrainedLayersFrom)."""
        if not isinstance(source, caffe_pb2.NetParameter):
            from ..proto.binary import read_net_binary
            path = os.fspath(source)
            if _is_hdf5(path):
                raise CosError(f"{path}: HDF5 weights are not supported; convert to .caffemodel")
            source = read_net_binary(path)
        first = {}
        for name, layer in zip(self._layer_names, self.layers):
            first.setdefault(name, layer)
        for src in source.layer:
            target = first.get(src.name)
            if target is None:
                continue
            self._copy_layer(src, target)

    @staticmethod
    def _copy_layer(src, target):
        if len(src.blobs) != len(target.blobs):
            raise NetError(f"Incompatible number of blobs for layer '{src.name}': the weights "
                           f"have {len(src.blobs)}, the net has {len(target.blobs)}")
        for k, (bp, blob) in enumerate(zip(src.blobs, target.blobs)):
            if not shapes_match(bp, blob.shape):
                raise NetError(f"Cannot copy param {k} weights from layer '{src.name}'; shape "
                               f"mismatch. Source param shape is {list(blob_shape(bp))}; "
                               f"target param shape is {list(blob.shape)}")
            arr = blob_to_array(bp, where=f"layer '{src.name}' blob {k}").reshape(blob.shape)
            with torch.no_grad():
                blob.tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr)))

    def to_proto(self, write_diff=False):
        out = caffe_pb2.NetParameter()
        out.name = self.name
        for layer in self.layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.param)
            del lp.blobs[:]
            for blob in layer.blobs:
                array_to_blob(blob.data, blob.diff if write_diff else None, lp.blobs.add())
        return out

    def save(self, path):
        from ..proto.binary import write_binary
        write_binary(self.to_proto(), path)


def _is_hdf5(path):
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
