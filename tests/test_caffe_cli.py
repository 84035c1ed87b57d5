"""`cos-caffe train|test|time` run as real subprocesses on a tiny net."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cos.proto.binary import read_solver_state
from cos.tools.caffe_cli import gflags_to_argparse, main

REPO = Path(__file__).resolve().parents[1]

NET = """
name: "clinet"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        include { phase: TEST } }
"""
SOLVER = """
net: "net.prototxt"
base_lr: 0.1
lr_policy: "fixed"
max_iter: 4
display: 2
snapshot: 2
snapshot_prefix: "snaps/m"
random_seed: 1
"""


def cos_caffe(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "cos.tools.caffe_cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "net.prototxt").write_text(NET)
    (tmp_path / "cfg" / "solver.prototxt").write_text(SOLVER)
    return tmp_path


def msgs(stderr):
    return [l.split("] ", 1)[1] for l in stderr.splitlines() if "] " in l]


def test_flag_spellings():
    assert gflags_to_argparse(["train", "-solver", "s", "--weights=w", "-snapshot=x"]) == \
        ["train", "--solver", "s", "--weights=w", "--snapshot=x"]


@pytest.mark.slow
def test_train_resume_test_and_time(workdir):
    r = cos_caffe("train", "-solver", "cfg/solver.prototxt", cwd=workdir)
    assert r.returncode == 0, r.stderr
    lines = msgs(r.stderr)
    assert lines.count("Optimization Done.") == 2
    assert "Snapshotting to binary proto file snaps/m_iter_2.caffemodel" in lines
    assert any(re.fullmatch(r"Iteration 2 \([\d.e+-]+ iter/s, [\d.e+-]+s/2 iters\), "
                            r"loss = [\d.e+-]+", l) for l in lines)
    assert read_solver_state(str(workdir / "snaps" / "m_iter_4.solverstate")).iter == 4

    (workdir / "cfg" / "solver.prototxt").write_text(SOLVER.replace("max_iter: 4", "max_iter: 6"))
    r = cos_caffe("--solver=cfg/solver.prototxt", "train", "-snapshot",
                  "snaps/m_iter_4.solverstate", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "Restoring previous solver status from snaps/m_iter_4.solverstate" in msgs(r.stderr)
    assert (workdir / "snaps" / "m_iter_6.caffemodel").exists()

    r = cos_caffe("test", "-model", "cfg/net.prototxt", "-weights", "snaps/m_iter_6.caffemodel",
                  "-iterations", "3", cwd=workdir)
    assert r.returncode == 0, r.stderr
    lines = msgs(r.stderr)
    assert sum(l.startswith("Batch ") for l in lines) == 6  # 3 batches x (acc, loss)
    assert any(l.startswith("Loss: ") for l in lines)
    assert any(re.fullmatch(r"loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", l) for l in lines)

    r = cos_caffe("time", "-model", "cfg/net.prototxt", "-iterations", "2", cwd=workdir)
    assert r.returncode == 0, r.stderr
    lines = msgs(r.stderr)
    assert any(re.fullmatch(r"\s+ip\tforward: [\d.e+-]+ ms\.", l) for l in lines)
    assert any(re.fullmatch(r"\s+ip\tbackward: [\d.e+-]+ ms\.", l) for l in lines)
    assert "*** Benchmark ends ***" in lines


@pytest.mark.parametrize("args,words", [
    (["train"], "-solver is required"),
    (["train", "-solver", "cfg/solver.prototxt", "-weights", "a", "-snapshot", "b"], "not both"),
    (["train", "-solver", "cfg/nope.prototxt"], "nope.prototxt"),
    (["test", "-model", "cfg/net.prototxt"], "-weights is required"),
    (["fly"], "unknown command 'fly'"),
])
def test_user_errors_are_one_line(workdir, args, words, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(args) != 0
    stderr = capsys.readouterr().err
    err = [l for l in stderr.splitlines() if l.startswith("cos-caffe: error:")]
    assert len(err) == 1 and words in err[0], stderr
    assert "Traceback" not in stderr


def test_error_from_real_process_has_no_traceback(workdir):
    r = cos_caffe("train", "-solver", "cfg/missing.prototxt", cwd=workdir)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("cos-caffe: error: cfg/missing.prototxt")
