"""Nesterov's accelerated gradient as Caffe writes it (step = (1+mu)*v_new - mu*v_old)."""

from .base import Solver


class NesterovSolver(Solver):
    type_name = "Nesterov"
    history_sets = 1

    def compute_update(self, i, param, rate):
        mu = self.param.momentum
        v = self.history[i]
        old = v.clone()
        v.mul_(mu).add_(param.diff_tensor, alpha=rate)
        param.diff_tensor.copy_(v).mul_(1 + mu).sub_(old, alpha=mu)
