"""Caffe's learning-rate policies (GetLearningRate), computed in float32 like Caffe's float solver."""

import math

import numpy as np

from ...errors import SolverError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

f32 = np.float32


def check_policy(param):
    """One-line SolverError for a policy that cannot run with these fields."""
    policy = param.lr_policy
    if not policy:
        raise SolverError("solver field 'lr_policy' is required "
                          f"(one of: {', '.join(POLICIES)})")
    if policy not in POLICIES:
        raise SolverError(f"solver field 'lr_policy': unknown policy '{policy}' "
                          f"(one of: {', '.join(POLICIES)})")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise SolverError(f"solver field 'stepsize' must be > 0 for lr_policy '{policy}'")
    if policy == "poly" and param.max_iter <= 0:
        raise SolverError("solver field 'max_iter' must be > 0 for lr_policy 'poly'")


def learning_rate(param, it, current_step=0):
    """Rate at iteration `it`; returns (rate: float, current_step: int)."""
    policy = param.lr_policy
    base, gamma, power = f32(param.base_lr), f32(param.gamma), f32(param.power)
    if policy == "fixed":
        rate = base
    elif policy == "step":
        current_step = it // param.stepsize
        rate = base * f32(math.pow(gamma, current_step))
    elif policy == "exp":
        rate = base * f32(math.pow(gamma, it))
    elif policy == "inv":
        rate = base * f32(math.pow(f32(1) + gamma * f32(it), -power))
    elif policy == "multistep":
        if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
            current_step += 1
        rate = base * f32(math.pow(gamma, current_step))
    elif policy == "poly":
        rate = base * f32(math.pow(f32(1) - f32(it) / f32(param.max_iter), power))
    elif policy == "sigmoid":
        rate = base * (f32(1) / (f32(1) + f32(math.exp(-gamma * (f32(it) - f32(param.stepsize))))))
    else:
        check_policy(param)
    return float(f32(rate)), current_step
