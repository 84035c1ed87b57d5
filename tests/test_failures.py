"""Failures on local[2]: a rank dying mid-training, a cluster too small for -clusterSize,
and resuming from a snapshot with -snapshot/-weights."""

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from test_spark_local import make_job, read_model, run_wrapper

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.mpi]


def error_line(result):
    """The driver's one-line error (Spark's own logging may follow it on stderr)."""
    tag = "caffe-on-spark: error:"
    # spark-submit merges the Python driver's stderr into its stdout: look in both.
    output = result.stdout + result.stderr
    lines = [l[l.index(tag):] for l in output.splitlines() if tag in l]
    assert len(lines) == 1, output[-2000:]
    return lines[0]


def processes_with(marker):
    """PIDs whose environment carries `marker` (the driver's JVM, Python workers, ranks)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(marker, seconds=20):
    deadline = time.monotonic() + seconds
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    return processes_with(marker)


def test_killed_rank_fails_the_job_fast_and_names_it(tmp_path):
    solver = make_job(tmp_path, train_count=100, test_count=8, max_iter=200, snapshot=0)
    marker = f"COS_TEST_MARK={uuid.uuid4().hex}"
    key, value = marker.split("=")
    result = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 2,
                         "-connection", "ethernet", "-model", f"file:{tmp_path}/m.caffemodel",
                         cwd=tmp_path, timeout=480,
                         env={key: value, "COS_TEST_KILL_RANK": "1", "COS_TEST_KILL_ITER": "3",
                              "COS_TEST_KILL_STAMP": str(tmp_path / "died_at")})
    ended = time.time()
    assert result.returncode != 0
    assert ended - float((tmp_path / "died_at").read_text()) < 60
    assert "rank 1 failed" in error_line(result), result.stderr[-2000:]
    assert not (tmp_path / "m.caffemodel").exists()
    assert wait_until_gone(marker) == []


def test_cluster_smaller_than_cluster_size_is_a_clear_error(tmp_path):
    solver = make_job(tmp_path, train_count=20, test_count=8, max_iter=2, snapshot=0)
    result = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 3,
                         "-model", f"file:{tmp_path}/m.caffemodel", cwd=tmp_path)
    assert result.returncode == 1
    assert result.seconds < 400  # no hang: fails before any task (JVM start-up dominates)
    line = error_line(result)
    assert "-clusterSize 3 needs 3 task slots" in line and "offers 2" in line


def test_resume_from_snapshot_matches_an_uninterrupted_run(tmp_path):
    # 2 ranks x batch 10 over 20 records: every iteration sees the same batches, so a
    # resumed run must end with the uninterrupted run's weights.
    solver = make_job(tmp_path, train_count=20, test_count=8, max_iter=6, snapshot=3)
    full = tmp_path / "full" / "m.caffemodel"
    full.parent.mkdir()
    first = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 2,
                        "-model", f"file:{full}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    state = full.parent / "lenet_small_iter_3.solverstate"
    weights = full.parent / "lenet_small_iter_3.caffemodel"
    assert state.exists() and weights.exists()

    resumed = tmp_path / "resumed" / "m.caffemodel"
    resumed.parent.mkdir()
    second = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 2,
                         "-snapshot", state, "-weights", weights,
                         "-model", f"file:{resumed}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (resumed.parent / "lenet_small_iter_6.caffemodel").exists()
    assert not (resumed.parent / "lenet_small_iter_3.caffemodel").exists()
    a, b = read_model(full), read_model(resumed)
    for name in ("conv1", "ip1", "ip2"):
        for blob_a, blob_b in zip(a[name].blobs, b[name].blobs):
            np.testing.assert_allclose(blob_b.data, blob_a.data, rtol=1e-5, atol=1e-7)
