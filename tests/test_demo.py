"""Run scripts/demo.sh (the `make demo` pipeline) with a short solver and check what it reports."""

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def short_solver(tmp_path):
    text = (ROOT / "data" / "demo_lenet_solver.prototxt").read_text()
    text = re.sub(r'net: "[^"]*"', f'net: "{ROOT}/data/lenet_memory_train_test.prototxt"', text)
    text = re.sub(r"max_iter: \d+", "max_iter: 60", text)
    path = tmp_path / "solver.prototxt"
    path.write_text(text)
    return path


def parse_log(path):
    spec = importlib.util.spec_from_file_location("plot_training", ROOT / "scripts" / "plot_training.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(path, errors="replace") as f:
        return mod.parse_log(f)


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.mpi
def test_demo_reports_accuracy_model_and_plot(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, COS_DEMO_DIR=str(out), COS_DEMO_SOLVER=str(short_solver(tmp_path)))
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    accuracy = float(re.search(r"test accuracy: *([0-9.]+)", proc.stdout).group(1))
    assert 0.3 < accuracy <= 1.0  # 60 iterations already lift LeNet well above chance
    assert (out / "lenet.caffemodel").stat().st_size > 100_000
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    train, tests = parse_log(out / "train.log")
    assert len(train) >= 2 and len(tests["accuracy"]) >= 2  # both curves had points
