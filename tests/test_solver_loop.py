"""The Solver loop: Caffe's Step/Solve order, test nets, display, smoothing, hooks, net choice."""

import io
import re

import numpy as np
import pytest
import torch

from cos.engine import logging as cos_logging
from cos.engine.solvers import SGDSolver, get_solver
from cos.errors import SolverError
from cos.proto import caffe_pb2
from cos.proto.text import parse_net_text

NET = """
name: "loopnet"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "extra" type: "InnerProduct" bottom: "data" top: "extra"
        include { stage: "big" }
        inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        include { phase: TEST } }
"""


@pytest.fixture
def logs():
    buf = io.StringIO()
    handler = cos_logging.configure(buf)
    yield buf
    cos_logging.get_logger().removeHandler(handler)


def messages(buf):
    return [line.split("] ", 1)[1] for line in buf.getvalue().splitlines() if "] " in line]


def solver_param(**fields):
    p = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", max_iter=4, random_seed=1,
                                  momentum=0.9)
    p.net_param.CopyFrom(parse_net_text(NET))
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(p, k).extend(v)
        else:
            setattr(p, k, v)
    return p


def feed(solver, seed=0):
    """Give the train net a fresh deterministic batch before every forward/backward."""
    rs = np.random.RandomState(seed)
    orig = solver.net.forward_backward

    def fb():
        solver.net.blobs["data"].data[...] = rs.randn(4, 3)
        solver.net.blobs["label"].data[...] = rs.randint(0, 2, 4)
        return orig()
    solver.net.forward_backward = fb


def test_solve_logs_in_caffe_order(logs, tmp_path):
    p = solver_param(display=2, test_interval=2, test_iter=[3], snapshot=3,
                     snapshot_prefix=str(tmp_path / "snap" / "m"))
    solver = get_solver(p)
    feed(solver)
    solver.solve()
    got = messages(logs)
    want_order = [
        "Solving loopnet", "Learning Rate Policy: fixed",
        "Iteration 0, Testing net (#0)", "    Test net output #0: acc = ",
        "    Test net output #1: loss = ", "Iteration 0 (", "    Train net output #0: loss = ",
        "Iteration 0, lr = 0.1", "Iteration 2, Testing net (#0)", "Iteration 2 (",
        "Snapshotting to binary proto file " + str(tmp_path / "snap" / "m_iter_3.caffemodel"),
        "Snapshotting solver state to binary proto file "
        + str(tmp_path / "snap" / "m_iter_3.solverstate"),
        "Snapshotting to binary proto file " + str(tmp_path / "snap" / "m_iter_4.caffemodel"),
        "Iteration 4, loss = ", "Iteration 4, Testing net (#0)", "Optimization Done.",
    ]
    pos = 0
    for want in want_order:
        while pos < len(got) and not got[pos].startswith(want):
            pos += 1
        assert pos < len(got), f"missing or out of order: {want!r}\n" + "\n".join(got)
    assert re.search(r"Test net output #1: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)",
                     logs.getvalue())
    assert solver.iter == 4
    assert (tmp_path / "snap" / "m_iter_4.solverstate").exists()


def test_smoothed_loss_is_running_mean_then_window(logs):
    p = solver_param(display=1, average_loss=3, base_lr=0.0)
    solver = get_solver(p)
    seen = []
    orig = solver.net.forward_backward
    rs = np.random.RandomState(5)

    def fb():
        solver.net.blobs["data"].data[...] = rs.randn(4, 3) * 3
        solver.net.blobs["label"].data[...] = rs.randint(0, 2, 4)
        seen.append(orig())
        return seen[-1]
    solver.net.forward_backward = fb
    solver.step(6)
    shown = [float(m.rsplit("= ", 1)[1]) for m in messages(logs) if re.match(r"Iteration \d+ \(", m)]
    want = [np.mean(seen[max(0, i - 2):i + 1]) for i in range(6)]
    np.testing.assert_allclose(shown, want, rtol=1e-5)


def test_iter_size_averages_loss_and_consumes_batches():
    p = solver_param(iter_size=3)
    solver = get_solver(p)
    calls = []
    orig = solver.net.forward_backward
    solver.net.forward_backward = lambda: calls.append(1) or orig()
    solver.step(2)
    assert len(calls) == 6 and solver.iter == 2


def test_gradient_hook_runs_before_update_and_non_root_is_silent(logs, tmp_path):
    p = solver_param(display=1, snapshot=1, snapshot_prefix=str(tmp_path / "x"))
    solver = SGDSolver(p, rank=1)
    feed(solver)
    seen = []

    def hook(s):
        seen.append((s.iter, s.net.learnable_params[0].data.copy()))
        for blob in s.net.learnable_params:
            blob.diff_tensor.zero_()       # an allreduce could overwrite the diffs here
    solver.gradient_hook = hook
    before = solver.net.learnable_params[0].data.copy()
    solver.step(2)
    assert [i for i, _ in seen] == [0, 1]
    np.testing.assert_array_equal(seen[0][1], before)
    np.testing.assert_array_equal(solver.net.learnable_params[0].data, before)  # zero step
    assert logs.getvalue() == "" and not list(tmp_path.iterdir())


def test_test_nets_share_weights_and_test_state(tmp_path):
    p = solver_param(test_iter=[2, 1], test_interval=100)
    p.test_state.add(stage=["big"])
    p.test_state.add()
    solver = get_solver(p)
    assert len(solver.test_nets) == 2
    assert "extra" in solver.test_nets[0]._layer_names
    assert "extra" not in solver.test_nets[1]._layer_names
    assert "acc" not in solver.net._layer_names
    solver.step(1)
    means = solver.test(1)
    assert set(means) == {"acc", "loss"}
    assert solver.test_nets[1].params["ip"][0] is solver.net.params["ip"][0]


def test_train_state_stage_reaches_train_net():
    p = solver_param()
    p.train_state.stage.append("big")
    assert "extra" in get_solver(p).net._layer_names


def test_random_seed_reproduces_fillers():
    a = get_solver(solver_param()).net.params["ip"][0].data.copy()
    b = get_solver(solver_param()).net.params["ip"][0].data.copy()
    c = get_solver(solver_param(random_seed=2)).net.params["ip"][0].data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_net_path_relative_to_solver_file_and_weights(tmp_path, monkeypatch):
    (tmp_path / "n.prototxt").write_text(NET)
    (tmp_path / "s.prototxt").write_text('net: "n.prototxt" base_lr: 0.1 lr_policy: "fixed" '
                                         'max_iter: 2 random_seed: 7')
    monkeypatch.chdir("/")
    solver = get_solver(str(tmp_path / "s.prototxt"))
    assert solver.param.snapshot_prefix == str(tmp_path / "s")
    weights = tmp_path / "w.caffemodel"
    solver.net.params["ip"][0].data[...] = 0.25
    solver.net.save(str(weights))
    p = solver_param(weights=[str(weights)])
    np.testing.assert_array_equal(get_solver(p).net.params["ip"][0].data, 0.25)


def test_two_train_nets_is_an_error():
    p = solver_param(train_net="a.prototxt")
    with pytest.raises(SolverError, match="exactly one train net"):
        get_solver(p)


def test_test_iter_count_must_match():
    p = solver_param(test_iter=[1])
    p.test_net_param.add().CopyFrom(parse_net_text(NET))
    p.ClearField("net_param")
    p.train_net_param.CopyFrom(parse_net_text(NET))
    get_solver(p)  # one test_net_param, one test_iter: fine
    p.test_iter.append(1)
    with pytest.raises(SolverError, match="'test_iter'"):
        get_solver(p)


def test_float64_solver_keeps_dtype():
    solver = SGDSolver(solver_param(), dtype=torch.float64)
    feed(solver)
    solver.step(1)
    assert solver.net.learnable_params[0].tensor.dtype == torch.float64
    assert solver.history[0].dtype == torch.float64


def test_test_loss_clip_and_multistep_lines(logs):
    p = solver_param(test_iter=[2], test_interval=1, test_compute_loss=True, clip_gradients=1e-6,
                     lr_policy="multistep", gamma=0.1, stepvalue=[1], display=1)
    solver = get_solver(p)
    feed(solver)
    solver.step(2)
    got = messages(logs)
    assert any(m.startswith("Test loss: ") for m in got)
    assert any(re.fullmatch(r"Gradient clipping: scaling down gradients \(L2 norm [\d.e+-]+ > "
                            r"1e-06\) by scale factor [\d.e+-]+", m) for m in got)
    assert "MultiStep Status: Iteration 1, step = 1" in got
    assert "Iteration 1, lr = 0.01" in got
    assert solver.lr == pytest.approx(0.01)


def test_request_stop_ends_early_with_final_snapshot(logs, tmp_path):
    p = solver_param(max_iter=50, snapshot_prefix=str(tmp_path / "m"))
    solver = get_solver(p)
    feed(solver)
    solver.add_callback(lambda: solver.iter == 2 and solver.request_stop(), lambda: None)
    solver.solve()
    assert solver.iter == 3
    assert (tmp_path / "m_iter_3.caffemodel").exists()
    got = messages(logs)
    assert "Optimization stopped early." in got and "Optimization Done." not in got
