"""Caffe's solvers: the training loop (base.Solver) and one class per update rule."""

from .adadelta import AdaDeltaSolver
from .adagrad import AdaGradSolver
from .adam import AdamSolver
from .base import Solver
from .factory import SOLVERS, get_solver, solver_class
from .lr_policy import learning_rate
from .nesterov import NesterovSolver
from .rmsprop import RMSPropSolver
from .sgd import SGDSolver

__all__ = ["Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
           "AdaDeltaSolver", "AdamSolver", "SOLVERS", "get_solver", "solver_class",
           "learning_rate"]
