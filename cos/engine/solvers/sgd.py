"""SGD with momentum, Caffe's way: the learning rate goes inside the velocity."""

from .base import Solver


class SGDSolver(Solver):
    type_name = "SGD"
    history_sets = 1

    def compute_update(self, i, param, rate):
        # v <- mu*v + rate*g ; step = v
        v = self.history[i]
        v.mul_(self.param.momentum).add_(param.diff_tensor, alpha=rate)
        param.diff_tensor.copy_(v)
