"""AdaDelta: two histories (g^2 and update^2 averages); history = [h1 for all, h2 for all]."""

from .base import Solver


class AdaDeltaSolver(Solver):
    type_name = "AdaDelta"
    history_sets = 2

    def compute_update(self, i, param, rate):
        mu, delta = self.param.momentum, self.param.delta
        g = param.diff_tensor
        h1 = self.history[i]
        h2 = self.history[i + len(self.net.learnable_params)]
        h1.mul_(mu).addcmul_(g, g, value=1 - mu)
        g.mul_(h2.add(delta).div_(h1.add(delta)).sqrt_())
        h2.mul_(mu).addcmul_(g, g, value=1 - mu)
        g.mul_(rate)
