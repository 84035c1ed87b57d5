"""Update rules: every solver type vs. NumPy from the formulas of caffe.md §6.3, and real Caffe."""

import numpy as np
import pytest
import torch

from cos.engine.solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver,
                                RMSPropSolver, SGDSolver, get_solver)
from cos.errors import SolverError
from cos.proto import caffe_pb2
from cos.proto.text import parse_net_text

NET = """
name: "two"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 5 dim: 4 } shape { dim: 5 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { lr_mult: 0.5 decay_mult: 3 } param { lr_mult: 0 }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
LR_MULT = [1, 2, 0.5, 0]
DECAY_MULT = [1, 0, 3, 1]


def make_param(type_name="SGD", **fields):
    p = caffe_pb2.SolverParameter(type=type_name, base_lr=0.1, lr_policy="fixed", max_iter=10,
                                  random_seed=3, snapshot_after_train=False)
    p.net_param.CopyFrom(parse_net_text(NET))
    for k, v in fields.items():
        setattr(p, k, v)
    return p


def run(cls, param, steps=4, iter_size=1, seed=0):
    """Train `steps` iterations; return the solver, initial weights and raw diffs per step."""
    solver = cls(param, dtype=torch.float64)
    rs = np.random.RandomState(seed)
    batches = [(rs.randn(5, 4), rs.randint(0, 3, 5).astype(float))
               for _ in range(steps * iter_size)]
    it = iter(batches)

    def feed():
        x, y = next(it)
        solver.net.blobs["data"].data[...] = x
        solver.net.blobs["label"].data[...] = y

    raw = []
    solver.gradient_hook = lambda s: raw.append([p.diff.copy() for p in s.net.learnable_params])
    start = [p.data.copy() for p in solver.net.learnable_params]
    orig = solver.net.forward_backward

    def fb():
        feed()
        return orig()
    solver.net.forward_backward = fb
    solver.step(steps)
    return solver, start, raw


def numpy_rule(type_name, p, w, g, state, lr, t):
    """One param's step Δ per caffe.md §6.3 (state: dict of arrays, updated in place)."""
    mu, d = p.momentum, p.delta
    if type_name == "SGD":
        state["v"] = mu * state["v"] + lr * g
        return state["v"]
    if type_name == "Nesterov":
        old = state["v"]
        state["v"] = mu * old + lr * g
        return (1 + mu) * state["v"] - mu * old
    if type_name == "AdaGrad":
        state["v"] = state["v"] + g * g
        return lr * g / (np.sqrt(state["v"]) + d)
    if type_name == "RMSProp":
        r = p.rms_decay
        state["v"] = r * state["v"] + (1 - r) * g * g
        return lr * g / (np.sqrt(state["v"]) + d)
    if type_name == "AdaDelta":
        state["v"] = mu * state["v"] + (1 - mu) * g * g
        u = g * np.sqrt((state["h2"] + d) / (state["v"] + d))
        state["h2"] = mu * state["h2"] + (1 - mu) * u * u
        return lr * u
    if type_name == "Adam":
        b2 = p.momentum2
        state["v"] = mu * state["v"] + (1 - mu) * g
        state["h2"] = b2 * state["h2"] + (1 - b2) * g * g
        return lr * np.sqrt(1 - b2 ** t) / (1 - mu ** t) * state["v"] / (np.sqrt(state["h2"]) + d)
    raise AssertionError(type_name)


def expected(type_name, p, start, raw, iter_size=1):
    ws = [w.copy() for w in start]
    states = [{"v": np.zeros_like(w), "h2": np.zeros_like(w)} for w in ws]
    for it, grads in enumerate(raw):
        grads = [g.copy() for g in grads]
        if p.clip_gradients >= 0:
            norm = np.sqrt(sum((g ** 2).sum() for g in grads))
            if norm > p.clip_gradients:
                grads = [g * p.clip_gradients / norm for g in grads]
        for k, (w, g) in enumerate(zip(ws, grads)):
            g = g / iter_size
            decay = p.weight_decay * DECAY_MULT[k]
            g = g + decay * (np.sign(w) if p.regularization_type == "L1" else w)
            lr = np.float32(p.base_lr) * LR_MULT[k]
            ws[k] = w - numpy_rule(type_name, p, w, g, states[k], lr, it + 1)
    return ws


CASES = [
    (SGDSolver, "SGD", dict(momentum=0.9, weight_decay=0.01)),
    (NesterovSolver, "Nesterov", dict(momentum=0.8, weight_decay=0.02)),
    (AdaGradSolver, "AdaGrad", dict(weight_decay=0.01, delta=1e-6)),
    (RMSPropSolver, "RMSProp", dict(weight_decay=0.01, rms_decay=0.9, delta=1e-6)),
    (AdaDeltaSolver, "AdaDelta", dict(momentum=0.95, delta=1e-6, weight_decay=0.01, base_lr=1.0)),
    (AdamSolver, "Adam", dict(momentum=0.9, momentum2=0.999, weight_decay=0.01, base_lr=0.01)),
]


@pytest.mark.parametrize("cls,name,fields", CASES, ids=[c[1] for c in CASES])
def test_every_rule_matches_numpy(cls, name, fields):
    p = make_param(name, **fields)
    solver, start, raw = run(cls, p)
    want = expected(name, p, start, raw)
    for got, exp in zip(solver.net.learnable_params, want):
        np.testing.assert_allclose(got.data, exp, rtol=1e-6, atol=1e-9)
    assert solver.iter == 4
    assert len(solver.history) == len(start) * cls.history_sets


@pytest.mark.parametrize("extra", [
    dict(regularization_type="L1", weight_decay=0.05),
    dict(clip_gradients=0.05),
    dict(iter_size=3),
    dict(iter_size=2, clip_gradients=0.1, weight_decay=0.01),
], ids=["L1", "clip", "iter_size", "all"])
def test_sgd_decay_clip_iter_size(extra):
    p = make_param("SGD", momentum=0.9, **extra)
    solver, start, raw = run(SGDSolver, p, iter_size=p.iter_size)
    want = expected("SGD", p, start, raw, iter_size=p.iter_size)
    for got, exp in zip(solver.net.learnable_params, want):
        np.testing.assert_allclose(got.data, exp, rtol=1e-6, atol=1e-9)
    if "clip_gradients" in extra:
        norms = [np.sqrt(sum((g ** 2).sum() for g in gs)) for gs in raw]
        assert max(norms) > p.clip_gradients  # clipping really happened


def test_lr_mult_zero_keeps_param():
    p = make_param("SGD", momentum=0.9, weight_decay=0.1)
    solver, start, _ = run(SGDSolver, p)
    np.testing.assert_array_equal(solver.net.learnable_params[3].data, start[3])
    assert not np.array_equal(solver.net.learnable_params[0].data, start[0])


def test_class_decides_rule_and_factory_uses_type():
    p = make_param("Adam", momentum=0.9)
    assert type(get_solver(p)) is AdamSolver
    assert type(SGDSolver(p)) is SGDSolver
    old = make_param("SGD")
    old.ClearField("type")
    old.solver_type = caffe_pb2.SolverParameter.NESTEROV
    assert type(get_solver(old)) is NesterovSolver


@pytest.mark.parametrize("fields,cls,words", [
    (dict(type="Fancy"), None, "'type'"),
    (dict(max_iter=-1), None, "'max_iter'"),
    (dict(lr_policy="zigzag"), None, "'lr_policy'"),
    (dict(average_loss=0), None, "'average_loss'"),
    (dict(momentum=0.9), AdaGradSolver, "'momentum'"),
    (dict(momentum=0.9), RMSPropSolver, "'momentum'"),
    (dict(rms_decay=1.0), RMSPropSolver, "'rms_decay'"),
    (dict(regularization_type="L3"), None, "'regularization_type'"),
    (dict(lr_policy="step"), None, "'stepsize'"),
    (dict(snapshot_format=caffe_pb2.SolverParameter.HDF5), None, "HDF5"),
])
def test_bad_solver_fields_one_line(fields, cls, words):
    p = make_param()
    for k, v in fields.items():
        setattr(p, k, v)
    with pytest.raises(SolverError) as err:
        (cls or get_solver)(p)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_missing_max_iter_and_lr_policy():
    p = make_param()
    p.ClearField("max_iter")
    with pytest.raises(SolverError, match="'max_iter'"):
        get_solver(p)
    p = make_param()
    p.ClearField("lr_policy")
    with pytest.raises(SolverError, match="'lr_policy' is required"):
        get_solver(p)


@pytest.mark.parametrize("case", ["sgd", "adam"])
def test_matches_real_caffe(caffe_fixtures, case):
    folder = caffe_fixtures / "solvers"
    d = np.load(folder / "solver_updates.npz")
    solver = get_solver(str(folder / f"{case}_solver.prototxt"))
    W, b = solver.net.params["ip"]
    W.data[...] = d["W0"]
    b.data[...] = d["b0"]
    for t in range(5):
        solver.net.blobs["data"].data[...] = d["inputs"][t]
        solver.net.blobs["label"].data[...] = d["labels"][t]
        before = W.data.copy(), b.data.copy()
        solver.step(1)
        np.testing.assert_allclose(float(solver.net.blobs["loss"].data), d[f"{case}/loss"][t],
                                   rtol=1e-4)
        np.testing.assert_allclose(before[0] - W.data, d[f"{case}/update_W"][t], rtol=1e-4,
                                   atol=1e-7)
        np.testing.assert_allclose(before[1] - b.data, d[f"{case}/update_b"][t], rtol=1e-4,
                                   atol=1e-7)
        np.testing.assert_allclose(W.data, d[f"{case}/W"][t + 1], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(b.data, d[f"{case}/b"][t + 1], rtol=1e-4, atol=1e-7)
