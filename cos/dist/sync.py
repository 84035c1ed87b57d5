"""Synchronous data parallelism: average param gradients across ranks with MPI Allreduce.

Every rank then applies the same update to the same weights, so the ranks stay
identical and rank 0's snapshot is the model (no per-shard quirks as in the original).
"""

import numpy as np
import torch

from . import mpi as mpi_env


class GradientSync:
    """Averages the diffs of `params` (engine Blobs) over `comm` in one buffer per dtype.

    Use as the solver's `gradient_hook`: called after backward, before the update.
    `timeout` (seconds) bounds each call; a rank stuck longer (a dead peer) is aborted
    with a message naming it.
    """

    def __init__(self, comm, params, timeout=None, prescaled=False):
        # prescaled: backward already produced diffs / size (see `attach`), so the sum of
        # the ranks' diffs is their mean and no scaling pass over the buffer is needed
        self.prescaled = prescaled
        self.comm = comm
        self.params = list(params)
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.timeout = timeout
        self._buckets = _make_buckets(self.params)
        self._watchdog = mpi_env.Watchdog(self.rank, "gradient allreduce") if timeout else None
        self.seconds = 0.0  # time spent in sync, for the benchmark
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.allreduce_grads()

    def attach(self, solver):
        """Run after every backward of `solver`; the net seeds its backward with 1/size
        (a power of two for 2, 4, 8 ranks: bit-identical to dividing afterwards)."""
        solver.gradient_hook = self
        solver.net.grad_scale = 1.0 / self.size
        self.prescaled = True
        return self

    def allreduce_grads(self):
        if self.size == 1 or not self.params:
            return
        import time
        start = time.perf_counter()
        for bucket in self._buckets:
            bound = bucket.diffs_bound()
            if not bound:  # something replaced a diff tensor: copy in, and re-bind after
                bucket.pack(lambda blob: blob.diff_tensor)
            self._allreduce(bucket.buffer)
            if not self.prescaled:
                with torch.no_grad():
                    bucket.flat.mul_(1.0 / self.size)
            if not bound:
                bucket.bind_diffs()
        self.seconds += time.perf_counter() - start
        self.calls += 1

    def broadcast_params(self, root=0):
        """Give every rank root's weights, so all start identical without a shared seed."""
        if self.size == 1:
            return
        for bucket in self._buckets:
            weights = np.empty_like(bucket.buffer)  # the bucket's buffer holds the diffs
            flat = torch.from_numpy(weights)
            with torch.no_grad():
                for blob, (start, n) in zip(bucket.blobs, bucket.offsets):
                    flat[start:start + n].copy_(blob.tensor.detach().reshape(-1))
            self._guarded(lambda: self.comm.Bcast(weights, root=root), "weight broadcast")
            with torch.no_grad():
                for blob, (start, n) in zip(bucket.blobs, bucket.offsets):
                    blob.tensor.detach().copy_(flat[start:start + n].view(blob.tensor.shape))

    def _allreduce(self, buffer):
        from mpi4py import MPI
        self._guarded(lambda: self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM),
                      "gradient allreduce")

    def _guarded(self, op, label):
        if self._watchdog is None:
            op()
            return
        with self._watchdog.guard(self.timeout, f"{label} (bound {self.timeout:g}s)"):
            op()

    def close(self):
        if self._watchdog is not None:
            self._watchdog.close()


class _Bucket:
    """One preallocated contiguous host buffer holding several params' tensors end to end.

    The params' diffs are bound to views of the buffer (autograd accumulates into them in
    place), so the allreduce needs no copies; `diffs_bound` notices when a diff tensor was
    replaced and the caller falls back to copying.
    """

    def __init__(self, blobs, dtype):
        self.blobs = blobs
        self.offsets = []
        total = 0
        for blob in blobs:
            n = blob.tensor.numel()
            self.offsets.append((total, n))
            total += n
        self.buffer = np.zeros(total, dtype=dtype)
        self.flat = torch.from_numpy(self.buffer)  # shares memory with buffer
        self._views = []
        if all(blob.tensor.device.type == "cpu" for blob in blobs):
            self.pack(lambda blob: blob.diff_tensor)
            self.bind_diffs()

    def bind_diffs(self):
        """Make every param's diff (and .grad) a view of the buffer."""
        self._views = []
        for blob, (start, n) in zip(self.blobs, self.offsets):
            view = self.flat[start:start + n].view(blob.tensor.shape)
            blob.diff_tensor = view
            if blob.tensor.requires_grad:
                blob.tensor.grad = view
            self._views.append(view)

    def diffs_bound(self):
        return bool(self._views) and all(
            blob.diff_tensor is view and (not blob.tensor.requires_grad
                                          or blob.tensor.grad is view)
            for blob, view in zip(self.blobs, self._views))

    def pack(self, get):
        with torch.no_grad():
            for blob, (start, n) in zip(self.blobs, self.offsets):
                self.flat[start:start + n].copy_(get(blob).detach().reshape(-1))


def _make_buckets(params):
    """Group params by dtype (a net is normally all float32 or all float64)."""
    by_dtype = {}
    for blob in params:
        by_dtype.setdefault(blob.tensor.dtype, []).append(blob)
    return [_Bucket(blobs, torch.empty(0, dtype=dt).numpy().dtype)
            for dt, blobs in by_dtype.items()]
