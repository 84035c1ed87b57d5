"""Solver: Caffe's training loop (Step/Solve), testing, display, snapshots and restore.

Subclasses (one per update rule) define `compute_update(i, param, rate)`, which turns the
normalised, regularised diff of learnable param i into the step that Net.Update subtracts.
"""

import copy
import os
import time

import numpy as np
import torch

from ...errors import SolverError
from ...proto import caffe_pb2
from ...proto.blobs import array_to_blob, blob_shape, blob_to_array
from ..layer import TEST, TRAIN
from ..logging import fmt, get_logger
from .lr_policy import check_policy, learning_rate

log = get_logger("solver")


def load_solver_param(param_or_path):
    """(SolverParameter upgraded, path or None) from a message or a solver prototxt path."""
    from ...proto.upgrade import default_snapshot_prefix, upgrade_solver
    if isinstance(param_or_path, caffe_pb2.SolverParameter):
        return upgrade_solver(copy.deepcopy(param_or_path)), None
    from ...proto.text import read_solver
    path = os.fspath(param_or_path)
    param = read_solver(path)
    return default_snapshot_prefix(param, path), path


class Solver:
    """Caffe's Solver + SGDSolver machinery; the subclass decides the update rule."""

    type_name = None
    history_sets = 1
    forbids_momentum = False

    def __init__(self, param, dtype=torch.float32, device="cpu", rank=0, weights=None,
                 path=None, host_tests=False):
        # path: the solver file a SolverParameter came from (its directory resolves net paths)
        # host_tests: the host runs the test nets itself (Spark validation), no warning then
        self.host_tests = host_tests
        self.param, self.path = load_solver_param(param)
        self.path = self.path or path
        self.base_dir = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
        self.rank = rank
        self.is_root = rank == 0
        self.gradient_hook = None
        self.test_hook = None
        self.dtype, self.device = dtype, device
        self.callbacks = []
        self.iter = 0
        self.current_step = 0
        self._display_clock = None
        self.requested_stop = self.requested_snapshot = False
        self.check_param()
        self.seed = None
        if self.param.random_seed >= 0:
            self.seed = int(self.param.random_seed) + rank
            from ..net import set_random_seed
            set_random_seed(self.seed)
            torch.manual_seed(self.seed)
        self.net = self._build_train_net()
        for w in list(weights if weights is not None else self.param.weights):
            for one in str(w).split(","):
                if one:
                    self.net.copy_from(self._resolve(one))
        self.test_nets = self._build_test_nets()
        self.history = [torch.zeros_like(p.tensor, requires_grad=False)
                        for _ in range(self.history_sets) for p in self.net.learnable_params]
        self._losses, self._smoothed, self._start_iter = [], 0.0, 0

    # ---- construction ----------------------------------------------------------
    def check_param(self):
        p = self.param
        if p.average_loss < 1:
            raise SolverError(f"solver field 'average_loss' must be >= 1, got {p.average_loss}")
        if not p.HasField("max_iter") or p.max_iter < 0:
            got = p.max_iter if p.HasField("max_iter") else "missing"
            raise SolverError(f"solver field 'max_iter' must be set to a number >= 0 (got {got})")
        check_policy(p)
        if p.iter_size < 1:
            raise SolverError(f"solver field 'iter_size' must be >= 1, got {p.iter_size}")
        if p.regularization_type not in ("L1", "L2"):
            raise SolverError(f"solver field 'regularization_type': unknown type "
                              f"'{p.regularization_type}' (L1 or L2)")
        if self.forbids_momentum and p.momentum != 0:
            raise SolverError(f"solver field 'momentum' must be 0 for {self.type_name} "
                              f"(got {p.momentum:g})")
        if p.snapshot_format == caffe_pb2.SolverParameter.HDF5:
            raise SolverError("solver field 'snapshot_format': HDF5 snapshots are not "
                              "supported; use BINARYPROTO")

    def _resolve(self, path):
        """A path as given if it exists from the CWD, else relative to the solver file."""
        if os.path.isabs(path) or os.path.exists(path) or not self.path:
            return path
        other = os.path.join(self.base_dir, path)
        return other if os.path.exists(other) else path

    def _read_net(self, path):
        from ...proto.text import read_net
        return read_net(self._resolve(path))

    def _make_net(self, net_param, phase, extra_state):
        from ..net import Net
        state = caffe_pb2.NetState(phase=phase)
        state.MergeFrom(net_param.state)
        if extra_state is not None:
            state.MergeFrom(extra_state)
        net_param = copy.deepcopy(net_param)
        net_param.state.CopyFrom(state)
        net_param.state.ClearField("level")
        return Net(net_param, phase=state.phase, level=state.level, stages=(),
                   dtype=self.dtype, device=self.device, seed=self.seed)

    def _build_train_net(self):
        p = self.param
        given = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if len(given) != 1:
            raise SolverError("solver must give exactly one train net field (train_net_param, "
                              f"train_net, net_param, net); got {len(given)}: {', '.join(given)}")
        field = given[0]
        net_param = getattr(p, field) if field.endswith("_param") else self._read_net(getattr(p, field))
        self._info("Creating training net from %s%s", field,
                 "" if field.endswith("_param") else f" file: {getattr(p, field)}")
        return self._make_net(net_param, TRAIN, p.train_state)

    def _build_test_nets(self):
        p = self.param
        sources = [(n, "test_net_param") for n in p.test_net_param]
        sources += [(self._read_net(f), "test_net file: " + f) for f in p.test_net]
        generic = len(p.test_iter) - len(sources)
        has_generic = p.HasField("net") or p.HasField("net_param")
        if has_generic:
            if generic < 0:
                raise SolverError(f"solver field 'test_iter' has {len(p.test_iter)} entries for "
                                  f"at least {len(sources)} test nets")
            base = p.net_param if p.HasField("net_param") else self._read_net(p.net)
            sources += [(base, "net") for _ in range(generic)]
        elif generic != 0:
            raise SolverError(f"solver field 'test_iter' has {len(p.test_iter)} entries for "
                              f"{len(sources)} test nets (need one per test net)")
        if p.test_state and len(p.test_state) != len(sources):
            raise SolverError(f"solver field 'test_state' has {len(p.test_state)} entries for "
                              f"{len(sources)} test nets (need 0 or one per test net)")
        if sources and p.test_interval <= 0 and p.test_iter and not self.host_tests:
            log.warning("test nets defined but test_interval is 0: they never run")
        nets = []
        for k, (net_param, what) in enumerate(sources):
            self._info("Creating test net (#%d) specified by %s", k, what)
            extra = p.test_state[k] if p.test_state else None
            nets.append(self._make_net(net_param, TEST, extra))
        return nets

    # ---- the loop -----------------------------------------------------------------
    def step(self, iters):
        """Caffe's Solver::Step: `iters` updates with testing, display and snapshots."""
        p = self.param
        start = self.iter
        stop = self.iter + int(iters)
        self._start_iter, self._losses, self._smoothed = start, [], 0.0
        # The display rate spans step() calls, so a caller stepping in chunks still sees it.
        tick, tick_iter = self._display_clock if self._display_clock else (time.time(), start)
        while self.iter < stop:
            self.net.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 \
                    and (self.iter > 0 or p.test_initialization):
                self.test_all()
                if self.requested_stop:
                    break
            for cb in self.callbacks:
                cb[0]()
            display_now = p.display and self.iter % p.display == 0
            loss = 0.0
            for _ in range(p.iter_size):
                loss += self.net.forward_backward()
            loss /= p.iter_size
            self._update_smoothed(loss)
            if display_now:
                now = time.time()
                self._display(now - tick, self.iter - tick_iter)
                tick, tick_iter = now, self.iter
                self._display_clock = (tick, tick_iter)
            for cb in self.callbacks:
                cb[1]()
            if self.gradient_hook is not None:
                self.gradient_hook(self)
            self.apply_update()
            if p.snapshot and self.iter % p.snapshot == 0 and self.is_root:
                self.snapshot()
            elif self.requested_snapshot and self.is_root:
                self.snapshot()
            self.requested_snapshot = False
            if self.requested_stop:
                break

    def solve(self, resume_file=None):
        """Caffe's Solver::Solve: restore, run to max_iter, final snapshot/display/test."""
        p = self.param
        self._info("Solving %s", self.net.name)
        self._info("Learning Rate Policy: %s", p.lr_policy)
        if resume_file:
            self._info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0) \
                and self.is_root:
            self.snapshot()
        if self.requested_stop:
            self._info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_loss()
            self._update_smoothed(loss)
            self._info("Iteration %d, loss = %s", self.iter, fmt(self._smoothed))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        self._info("Optimization Done.")

    def _update_smoothed(self, loss):
        n = self.param.average_loss
        if len(self._losses) < n:
            self._losses.append(loss)
            self._smoothed = (self._smoothed * (len(self._losses) - 1) + loss) / len(self._losses)
        else:
            slot = (self.iter - self._start_iter) % n
            self._smoothed += (loss - self._losses[slot]) / n
            self._losses[slot] = loss

    def _display(self, secs, iters):
        rate = iters / secs if secs > 0 and iters else 0.0
        self._info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self.iter, fmt(rate),
                   fmt(secs), self.param.display, fmt(self._smoothed))
        self._log_outputs(self.net, self.net.output_values(), "Train")

    def _log_outputs(self, net, values, kind):
        k = 0
        for name in net.outputs:
            weight = net.blob_loss_weights.get(name, 0.0)
            for v in np.asarray(values[name]).reshape(-1):
                extra = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                self._info("    %s net output #%d: %s = %s%s", kind, k, name, fmt(v), extra)
                k += 1

    def _info(self, msg, *args):
        if self.is_root:
            log.info(msg, *args, stacklevel=2)

    # ---- the update -------------------------------------------------------------------
    @property
    def lr(self):
        return learning_rate(self.param, self.iter, self.current_step)[0]

    def apply_update(self):
        """Caffe's SGDSolver::ApplyUpdate: rate, clip, normalise, regularise, step, iter += 1."""
        p = self.param
        rate, step = learning_rate(p, self.iter, self.current_step)
        if p.lr_policy == "multistep" and step != self.current_step:
            self._info("MultiStep Status: Iteration %d, step = %d", self.iter, step)
        self.current_step = step
        if p.display and self.iter % p.display == 0:
            self._info("Iteration %d, lr = %s", self.iter, fmt(rate))
        params = self.net.learnable_params
        with torch.no_grad():
            self._clip(params)
            decay_all = p.weight_decay
            l1 = p.regularization_type == "L1"
            for i, blob in enumerate(params):
                g = blob.diff_tensor
                if p.iter_size > 1:
                    g.mul_(1.0 / p.iter_size)
                decay = decay_all * self.net.params_weight_decay[i]
                if decay:
                    g.add_(torch.sign(blob.tensor) if l1 else blob.tensor, alpha=decay)
                self.compute_update(i, blob, rate * self.net.params_lr[i])
            for blob in params:
                blob.tensor.sub_(blob.diff_tensor)
        self.iter += 1

    def _clip(self, params):
        c = self.param.clip_gradients
        if c < 0 or not params:
            return
        norm = float(torch.sqrt(sum(torch.sum(b.diff_tensor.double() ** 2) for b in params)))
        if norm > c:
            scale = c / norm
            self._info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale "
                       "factor %s", fmt(norm), fmt(c), fmt(scale))
            for b in params:
                b.diff_tensor.mul_(scale)

    def compute_update(self, i, param, rate):
        raise NotImplementedError

    # ---- testing -------------------------------------------------------------------------
    def test_all(self):
        for k in range(len(self.test_nets)):
            self.test(k)

    def test(self, k):
        """Run test net k for test_iter[k] batches; log the mean of every output element."""
        net = self.test_nets[k]
        self._info("Iteration %d, Testing net (#%d)", self.iter, k)
        net.share_with(self.net)
        sums, loss = {}, 0.0
        n = self.param.test_iter[k]
        for _ in range(n):
            if self.test_hook is not None:
                self.test_hook(self, k)
            loss += net.forward_loss()
            for name, v in net.output_values().items():
                v = np.asarray(v, dtype=np.float64).reshape(-1)
                sums[name] = sums[name] + v if name in sums else v.copy()
        if self.param.test_compute_loss:
            self._info("Test loss: %s", fmt(loss / max(n, 1)))
        means = {name: s / max(n, 1) for name, s in sums.items()}
        if means:
            self._log_outputs(net, means, "Test")
        return means

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot_filename(self, ext):
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{ext}"

    def snapshot(self):
        """Write {prefix}_iter_N.caffemodel then .solverstate, each atomically; returns both paths."""
        from ...proto import paths
        from ...proto.binary import write_binary
        model = self.snapshot_filename(".caffemodel")
        folder = model[:model.rfind("/")] if "/" in model else ""
        if folder and not paths.exists(folder):
            self._info("Creating snapshot directory %s", folder)
            paths.makedirs(folder)
        self._info("Snapshotting to binary proto file %s", model)
        write_binary(self.net.to_proto(write_diff=self.param.snapshot_diff), model)
        state_path = self.snapshot_filename(".solverstate")
        self._info("Snapshotting solver state to binary proto file %s", state_path)
        write_binary(self.solver_state(model), state_path)
        return model, state_path

    def solver_state(self, model_path=""):
        state = caffe_pb2.SolverState(iter=self.iter, learned_net=model_path,
                                      current_step=self.current_step)
        for h in self.history:
            _history_blob(h.detach().cpu().numpy(), state.history.add())
        return state

    def restore(self, path):
        """Caffe's Restore: iter, learned_net weights, current_step and history from a .solverstate."""
        path = os.fspath(path)
        if path.endswith(".h5"):
            raise SolverError(f"{path}: HDF5 solver states are not supported; use a .solverstate")
        from ...proto.binary import read_solver_state
        state = read_solver_state(path)
        self._check_history(path, state)
        if state.learned_net:
            model = state.learned_net
            if not os.path.exists(model):
                near = os.path.join(os.path.dirname(path), os.path.basename(model))
                model = near if os.path.exists(near) else model
            self.net.copy_from(model)
        self.iter = state.iter
        self._display_clock = None
        self.current_step = state.current_step
        self._info("SGDSolver: restoring history")
        with torch.no_grad():
            for k, (h, bp) in enumerate(zip(self.history, state.history)):
                arr = blob_to_array(bp, where=f"{path} history {k}").reshape(h.shape)
                h.copy_(torch.from_numpy(np.ascontiguousarray(arr)))

    def _check_history(self, path, state):
        if len(state.history) != len(self.history):
            raise SolverError(f"solverstate {path} does not match this net: Incorrect length of "
                              f"history blobs ({len(state.history)} saved, {len(self.history)} "
                              f"expected for {type(self).__name__})")
        for k, (h, bp) in enumerate(zip(self.history, state.history)):
            shape = tuple(blob_shape(bp))
            if int(np.prod(shape)) != h.numel():
                raise SolverError(f"solverstate {path} does not match this net: history blob {k} "
                                  f"has shape {list(shape)}, the net needs {list(h.shape)}")

    # ---- pycaffe extras ------------------------------------------------------------------
    def share_weights(self, net):
        net.share_with(self.net)

    def add_callback(self, on_start, on_gradients):
        self.callbacks.append((on_start, on_gradients))

    def request_stop(self):
        """Stop after the current iteration (SIGINT in `caffe train`); final snapshot still written."""
        self.requested_stop = True

    def request_snapshot(self):
        self.requested_snapshot = True


def _history_blob(arr, blob):
    """float32 history as `data`; float64 as `double_data`, so a double net resumes exactly."""
    if arr.dtype != np.float64:
        return array_to_blob(arr, None, blob)
    blob.shape.dim.extend(arr.shape)
    blob.double_data.extend(arr.reshape(-1).tolist())
    return blob
