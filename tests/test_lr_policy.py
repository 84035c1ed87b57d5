"""Learning-rate policies vs. caffe.md §6.4, computed independently in NumPy float32."""

import math

import numpy as np
import pytest

from cos.engine.solvers.lr_policy import check_policy, learning_rate
from cos.errors import SolverError
from cos.proto import caffe_pb2

f = np.float32


def param(policy, **kw):
    p = caffe_pb2.SolverParameter(lr_policy=policy, base_lr=0.01, max_iter=1000, **kw)
    check_policy(p)
    return p


def expect(p, it, step):
    b, g, pw = f(p.base_lr), f(p.gamma), f(p.power)
    return {
        "fixed": lambda: b,
        "step": lambda: b * g ** (it // p.stepsize),
        "exp": lambda: b * g ** it,
        "inv": lambda: b * (1 + g * it) ** (-pw),
        "multistep": lambda: b * g ** step,
        "poly": lambda: b * (f(1) - f(it) / f(p.max_iter)) ** pw,  # float32 like Caffe
        "sigmoid": lambda: b / (1 + math.exp(-g * (it - p.stepsize))),
    }[p.lr_policy]()


@pytest.mark.parametrize("policy,kw", [
    ("fixed", {}), ("step", dict(gamma=0.1, stepsize=30)), ("exp", dict(gamma=0.99)),
    ("inv", dict(gamma=1e-4, power=0.75)), ("poly", dict(power=2.0)),
    ("sigmoid", dict(gamma=-0.05, stepsize=50)),
])
def test_policies(policy, kw):
    p = param(policy, **kw)
    for it in (0, 1, 29, 30, 31, 99, 100, 250, 999):
        rate, _ = learning_rate(p, it)
        np.testing.assert_allclose(rate, expect(p, it, 0), rtol=1e-6)


def test_inv_lenet_value_from_caffe_log():
    p = param("inv", gamma=1e-4, power=0.75)
    assert format(learning_rate(p, 100)[0], ".6g") == "0.00992565"
    assert format(learning_rate(p, 0)[0], ".6g") == "0.01"


def test_multistep_advances_at_most_one_per_call():
    p = param("multistep", gamma=0.5)
    p.stepvalue.extend([3, 5, 6])
    step, rates = 0, []
    for it in range(9):
        rate, step = learning_rate(p, it, step)
        rates.append(rate)
    assert step == 3
    want = [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.00125, 0.00125, 0.00125]
    np.testing.assert_allclose(rates, want, rtol=1e-6)
    # restored from a state at iteration 10 with current_step 0: one step per call
    assert learning_rate(p, 10, 0)[1] == 1


def test_step_sets_current_step():
    p = param("step", gamma=0.1, stepsize=10)
    assert learning_rate(p, 25, 0)[1] == 2


@pytest.mark.parametrize("policy,kw,words", [
    ("", {}, "required"), ("cosine", {}, "unknown policy 'cosine'"),
    ("step", {}, "'stepsize'"), ("sigmoid", dict(gamma=1.0), "'stepsize'"),
])
def test_bad_policy(policy, kw, words):
    p = caffe_pb2.SolverParameter(lr_policy=policy, max_iter=10, **kw)
    with pytest.raises(SolverError, match=words):
        check_policy(p)


def test_poly_needs_max_iter():
    with pytest.raises(SolverError, match="'max_iter'"):
        check_policy(caffe_pb2.SolverParameter(lr_policy="poly", power=1))
