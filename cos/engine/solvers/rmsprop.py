"""RMSProp: h <- rho*h + (1-rho)*g^2; step = rate*g/(sqrt(h)+delta)."""

from ...errors import SolverError
from .base import Solver


class RMSPropSolver(Solver):
    type_name = "RMSProp"
    history_sets = 1
    forbids_momentum = True

    def check_param(self):
        super().check_param()
        if not 0 <= self.param.rms_decay < 1:
            raise SolverError(f"solver field 'rms_decay' must be in [0, 1) for RMSProp, "
                              f"got {self.param.rms_decay:g}")

    def compute_update(self, i, param, rate):
        rho = self.param.rms_decay
        g = param.diff_tensor
        h = self.history[i]
        h.mul_(rho).addcmul_(g, g, value=1 - rho)
        g.div_(h.sqrt().add_(self.param.delta)).mul_(rate)
