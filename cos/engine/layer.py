"""The layer contract and the registry of layer types by Caffe type name.

A layer is built from its LayerParameter and the net phase, creates its
learnable blobs in `setup`, and computes its tops from its bottoms with torch
ops in `forward`. Backward comes from autograd; where Caffe's gradient differs
from autograd's a layer uses a torch.autograd.Function of its own. Adding a
layer type is one new file that calls `register`.
"""

import torch

from ..errors import NetError
from ..proto import caffe_pb2

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST

_REGISTRY = {}


def register(*type_names):
    """Class decorator: make a layer class available under Caffe type names."""
    def wrap(cls):
        for name in type_names:
            _REGISTRY[name] = cls
        cls.type = type_names[0]
        return cls
    return wrap


def layer_class(type_name, layer_name=""):
    try:
        return _REGISTRY[type_name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise NetError(f"layer '{layer_name}': unknown layer type '{type_name}' "
                       f"(known types: {known})") from None


def layer_type_list():
    return sorted(_REGISTRY)


class Layer:
    """Base class. Subclasses set `type` via @register and override what they need.

    Attributes set by the net before `setup`:
      param   the LayerParameter (runtime copy; `phase` filled in)
      phase   caffe_pb2.TRAIN or TEST
      blobs   list of param Blobs (filled by `setup`, or by the net from `param.blobs`)
      dtype, device   of the net
      rng     torch.Generator for fillers and random layers (CPU)
    """

    type = None
    # Loss layers get loss_weight 1 on top 0 by default; they set this True.
    is_loss = False
    # Layers that have no meaningful backward (Accuracy, data layers, ...).
    has_backward = True
    # Minimum / maximum number of bottoms and tops (None = any); checked by the net.
    exact_bottoms = None
    min_bottoms = None
    exact_tops = None
    min_tops = None
    max_tops = None
    # Bottom indices that can never receive a gradient (e.g. labels).
    no_grad_bottoms = ()
    # True for layers whose forward reads data from outside (data layers).
    is_data = False

    def __init__(self, param, phase, dtype=torch.float32, device="cpu", rng=None):
        self.param = param
        self.phase = phase
        self.name = param.name
        self.blobs = []
        self.dtype = dtype
        self.device = device
        self.rng = rng if rng is not None else torch.Generator().manual_seed(0)

    # --- construction ------------------------------------------------------
    def setup(self, bottom_shapes):
        """Check parameters and create learnable blobs from bottom shapes."""

    def reshape(self, bottom_shapes):
        """Return top shapes. Default: run forward on meta tensors (no data, no cost).

        Layers whose forward has side effects or depends on data override this.
        """
        metas = [torch.empty(s, dtype=self.dtype, device="meta") for s in bottom_shapes]
        saved = [b.tensor for b in self.blobs]
        try:
            for b in self.blobs:
                b.tensor = torch.empty(b.tensor.shape, dtype=b.tensor.dtype, device="meta")
            with torch.no_grad():
                tops = self.forward(metas)
        finally:
            for b, t in zip(self.blobs, saved):
                b.tensor = t
        return [tuple(t.shape) for t in tops]

    # --- computation -------------------------------------------------------
    def forward(self, bottoms):
        """Compute top tensors from bottom tensors (torch ops; autograd-able)."""
        raise NotImplementedError

    # --- helpers -----------------------------------------------------------
    def param_tensors(self):
        return [b.tensor for b in self.blobs]

    def fail(self, message):
        raise NetError(f"layer '{self.name}' ({self.type}): {message}")

    def __repr__(self):
        return f"<{self.type} layer '{self.name}'>"
