"""AdaGrad: history sums g^2; step = rate*g/(sqrt(h)+delta)."""

from .base import Solver


class AdaGradSolver(Solver):
    type_name = "AdaGrad"
    history_sets = 1
    forbids_momentum = True

    def compute_update(self, i, param, rate):
        g = param.diff_tensor
        h = self.history[i]
        h.addcmul_(g, g)
        g.div_(h.sqrt().add_(self.param.delta)).mul_(rate)
