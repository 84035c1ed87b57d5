"""Blob: Caffe's pair of same-shaped arrays, `data` and `diff`, held as torch tensors.

`.data` and `.diff` return NumPy views that write through to the tensors (CPU),
as pycaffe's do. Param blobs are torch leaves whose `.grad` *is* the diff
tensor, so autograd accumulates straight into Caffe's param diff.
"""

import numpy as np
import torch


class Blob:
    def __init__(self, shape=(), dtype=torch.float32, device="cpu", name=""):
        self.name = name
        self.tensor = torch.zeros(tuple(shape), dtype=dtype, device=device)
        self._diff = None
        self.is_param = False

    # --- tensors -----------------------------------------------------------
    def set_tensor(self, tensor):
        """Rebind the data to a new tensor (a layer's output); the diff follows lazily."""
        self.tensor = tensor

    @property
    def diff_tensor(self):
        """The diff, allocated on first use (the training path never needs activation diffs)."""
        t, d = self.tensor, self._diff
        if d is None or d.shape != t.shape or d.dtype != t.dtype or d.device != t.device:
            d = self._diff = torch.zeros(t.shape, dtype=t.dtype, device=t.device)
        return d

    @diff_tensor.setter
    def diff_tensor(self, value):
        self._diff = value

    def make_param(self):
        """Turn this blob into a learnable leaf whose .grad is the diff tensor."""
        self.is_param = True
        self.tensor = self.tensor.detach().requires_grad_(True)
        self.diff_tensor = torch.zeros_like(self.tensor, requires_grad=False)
        self.tensor.grad = self.diff_tensor
        return self

    def share_from(self, owner):
        """Alias another blob's data and diff (Caffe's ShareData + ShareDiff)."""
        self.tensor = owner.tensor
        self.diff_tensor = owner.diff_tensor

    # --- pycaffe surface ---------------------------------------------------
    @property
    def data(self):
        return _view(self.tensor)

    @data.setter
    def data(self, value):
        self.tensor.detach().copy_(torch.as_tensor(np.asarray(value)).reshape(self.tensor.shape))

    @property
    def diff(self):
        return _view(self.diff_tensor)

    @diff.setter
    def diff(self, value):
        self.diff_tensor.copy_(torch.as_tensor(np.asarray(value)).reshape(self.diff_tensor.shape))

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    @property
    def count(self):
        return int(self.tensor.numel())

    def _legacy(self, axis):
        return int(self.tensor.shape[axis]) if self.tensor.dim() > axis else 1

    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(s) for s in shape)
        if tuple(self.tensor.shape) == shape:
            return
        grad = self.tensor.requires_grad
        self.tensor = torch.zeros(shape, dtype=self.tensor.dtype, device=self.tensor.device)
        self.diff_tensor = torch.zeros_like(self.tensor)
        if grad:
            self.tensor.requires_grad_(True)
            self.tensor.grad = self.diff_tensor

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape})"


def _view(tensor):
    t = tensor.detach()
    if t.device.type != "cpu":
        # No shared memory with a GPU tensor: hand back a copy (read-only use).
        return t.cpu().numpy()
    return t.numpy()
