"""get_solver: the solver class named by `type` (after the deprecated solver_type upgrade)."""

from ...errors import SolverError
from .adadelta import AdaDeltaSolver
from .adagrad import AdaGradSolver
from .adam import AdamSolver
from .base import load_solver_param
from .nesterov import NesterovSolver
from .rmsprop import RMSPropSolver
from .sgd import SGDSolver

SOLVERS = {cls.type_name: cls for cls in (SGDSolver, NesterovSolver, AdaGradSolver,
                                          RMSPropSolver, AdaDeltaSolver, AdamSolver)}


def solver_class(type_name):
    cls = SOLVERS.get(type_name)
    if cls is None:
        raise SolverError(f"solver field 'type': unknown solver type '{type_name}' "
                          f"(one of: {', '.join(SOLVERS)})")
    return cls


def get_solver(param_or_path, **kwargs):
    """Build the solver its `type` names from a SolverParameter or a solver prototxt path."""
    param, path = load_solver_param(param_or_path)
    cls = solver_class(param.type)
    return cls(param_or_path if path else param, **kwargs)
