"""Snapshots and restore: file names, atomic writes, exact resume, mismatched states."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cos.engine.solvers import AdamSolver, SGDSolver
from cos.errors import SolverError
from cos.proto import caffe_pb2
from cos.proto.binary import read_net_binary, read_solver_state
from cos.proto.text import parse_net_text

NET = """
name: "snapnet"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def solver_param(prefix, outputs=3, **fields):
    base = dict(base_lr=0.1, lr_policy="multistep", gamma=0.5, max_iter=20, random_seed=1,
                momentum=0.9, weight_decay=0.01, snapshot_prefix=str(prefix))
    p = caffe_pb2.SolverParameter(**{**base, **fields})
    p.stepvalue.extend([4, 12])
    p.net_param.CopyFrom(parse_net_text(NET % outputs))
    return p


def feed_by_iter(solver):
    """Batch k is a function of the iteration only, so a resumed run sees the same data."""
    orig = solver.net.forward_backward

    def fb():
        rs = np.random.RandomState(solver.iter)
        solver.net.blobs["data"].data[...] = rs.randn(4, 3)
        solver.net.blobs["label"].data[...] = rs.randint(0, 3, 4)
        return orig()
    solver.net.forward_backward = fb
    return solver


@pytest.mark.parametrize("cls", [SGDSolver, AdamSolver])
def test_resume_is_bit_exact(tmp_path, cls):
    straight = feed_by_iter(cls(solver_param(tmp_path / "a", type=cls.type_name)))
    straight.step(20)
    first = feed_by_iter(cls(solver_param(tmp_path / "b", type=cls.type_name)))
    first.step(10)
    model, state = first.snapshot()
    assert model == str(tmp_path / "b_iter_10.caffemodel")
    assert state == str(tmp_path / "b_iter_10.solverstate")
    second = feed_by_iter(cls(solver_param(tmp_path / "b", type=cls.type_name, random_seed=9)))
    second.restore(state)
    assert second.iter == 10 and second.current_step == 1
    second.step(10)
    for a, b in zip(straight.net.learnable_params, second.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)
    for a, b in zip(straight.history, second.history):
        assert np.array_equal(a.numpy(), b.numpy())


def test_state_contents(tmp_path):
    solver = feed_by_iter(AdamSolver(solver_param(tmp_path / "s", type="Adam")))
    solver.step(5)
    model, state_path = solver.snapshot()
    state = read_solver_state(state_path)
    assert state.iter == 5 and state.learned_net == model and state.current_step == 1
    assert len(state.history) == 4  # m for W, b then v for W, b
    np.testing.assert_array_equal(np.array(state.history[2].data).reshape(3, 3),
                                  solver.history[2].numpy())
    net = read_net_binary(model)
    ip = [l for l in net.layer if l.name == "ip"][0]
    np.testing.assert_array_equal(np.array(ip.blobs[0].data).reshape(3, 3),
                                  solver.net.params["ip"][0].data)


def test_learned_net_found_next_to_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    solver = feed_by_iter(SGDSolver(solver_param("run/m")))
    solver.step(2)
    _, state = solver.snapshot()
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    other = SGDSolver(solver_param("x"))
    other.restore(str(moved / "m_iter_2.solverstate"))
    np.testing.assert_array_equal(other.net.params["ip"][0].data, solver.net.params["ip"][0].data)


def test_state_from_another_net_is_rejected(tmp_path):
    solver = feed_by_iter(SGDSolver(solver_param(tmp_path / "s", outputs=3)))
    solver.step(1)
    _, state = solver.snapshot()
    other = SGDSolver(solver_param(tmp_path / "t", outputs=5))
    with pytest.raises(SolverError, match="does not match this net") as err:
        other.restore(state)
    assert "\n" not in str(err.value) and state in str(err.value)
    adam = AdamSolver(solver_param(tmp_path / "t", outputs=3, type="Adam"))
    with pytest.raises(SolverError, match="Incorrect length of history blobs"):
        adam.restore(state)
    with pytest.raises(SolverError, match="HDF5"):
        adam.restore(str(tmp_path / "x.solverstate.h5"))


def test_missing_prefix_directory_is_created(tmp_path):
    solver = SGDSolver(solver_param(tmp_path / "deep" / "er" / "m", snapshot=1, max_iter=1))
    feed_by_iter(solver).solve()
    assert (tmp_path / "deep" / "er" / "m_iter_1.caffemodel").exists()
    assert (tmp_path / "deep" / "er" / "m_iter_1.solverstate").exists()
    # snapshot_after_train does not repeat the snapshot of the last iteration
    assert len(list((tmp_path / "deep" / "er").iterdir())) == 2


def test_solve_with_resume_file_runs_to_max_iter(tmp_path):
    solver = feed_by_iter(SGDSolver(solver_param(tmp_path / "m", max_iter=3)))
    solver.solve()
    state = tmp_path / "m_iter_3.solverstate"
    assert state.exists()
    again = feed_by_iter(SGDSolver(solver_param(tmp_path / "m", max_iter=5)))
    again.solve(str(state))
    assert again.iter == 5 and (tmp_path / "m_iter_5.caffemodel").exists()


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from cos.engine.solvers import SGDSolver
    from cos.proto import caffe_pb2
    from cos.proto.text import parse_net_text
    p = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", max_iter=1, random_seed=1,
                                  snapshot_prefix={prefix!r})
    p.net_param.CopyFrom(parse_net_text({net!r}))
    s = SGDSolver(p)
    n = 0
    while True:
        s.snapshot()
        n += 1
        if n == 3:
            print("ready", flush=True)
""")


@pytest.mark.slow
def test_killed_writer_leaves_whole_files(tmp_path):
    net = NET.replace('dim: 4 dim: 3', 'dim: 4 dim: 3000') % 300  # ~3.6 MB model
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = CHILD.format(repo=repo, prefix=str(tmp_path / "k"), net=net)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    model = tmp_path / "k_iter_0.caffemodel"
    state = tmp_path / "k_iter_0.solverstate"
    assert model.exists() and state.exists()
    ip = [l for l in read_net_binary(str(model)).layer if l.name == "ip"][0]
    assert len(ip.blobs[0].data) == 300 * 3000
    assert read_solver_state(str(state)).iter == 0


def test_float64_history_round_trips_exactly(tmp_path):
    import torch
    solver = feed_by_iter(SGDSolver(solver_param(tmp_path / "d"), dtype=torch.float64))
    solver.step(3)
    _, state = solver.snapshot()
    other = SGDSolver(solver_param(tmp_path / "e"), dtype=torch.float64)
    other.restore(state)
    for a, b in zip(solver.history, other.history):
        assert b.dtype == torch.float64 and torch.equal(a, b)
