"""Adam as Caffe does it: bias correction folded into the rate, delta added to sqrt(v) first."""

import math

from .base import Solver


class AdamSolver(Solver):
    type_name = "Adam"
    history_sets = 2

    def compute_update(self, i, param, rate):
        b1, b2 = self.param.momentum, self.param.momentum2
        t = self.iter + 1
        g = param.diff_tensor
        m = self.history[i]
        v = self.history[i + len(self.net.learnable_params)]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        corrected = rate * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        g.copy_(m).div_(v.sqrt().add_(self.param.delta)).mul_(corrected)
