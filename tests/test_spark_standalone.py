"""A real Spark standalone cluster (master + 2 one-core workers on 127.0.0.1): train on
2 ranks, then extract features, through bin/caffe-on-spark."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from test_spark_local import make_job, read_json_rows, read_model, run_wrapper

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.mpi]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class():
    import pyspark
    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


@pytest.fixture
def standalone(tmp_path):
    """Start a master and two workers; yield the master URL; stop them all."""
    port, ui = free_port(), free_port()
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_WORKER_DIR=str(tmp_path / "work"),
               SPARK_LOG_DIR=str(tmp_path / "logs"))
    logs = open(tmp_path / "cluster.log", "w")
    procs = [subprocess.Popen([spark_class(), "org.apache.spark.deploy.master.Master",
                               "--host", "127.0.0.1", "--port", str(port),
                               "--webui-port", str(ui)], env=env, stdout=logs, stderr=logs)]
    url = f"spark://127.0.0.1:{port}"
    try:
        _wait(lambda: _alive_workers(ui) is not None, "master")
        for _ in range(2):
            procs.append(subprocess.Popen(
                [spark_class(), "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()), url],
                env=env, stdout=logs, stderr=logs))
        _wait(lambda: _alive_workers(ui) == 2, "2 workers")
        yield url
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()


def _alive_workers(ui):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json", timeout=2) as r:
            return json.load(r).get("aliveworkers", 0)
    except OSError:
        return None


def _wait(check, what, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"standalone {what} did not come up in {seconds}s")


def test_train_and_features_on_a_standalone_cluster(standalone, tmp_path):
    solver = make_job(tmp_path, train_count=100, test_count=20, max_iter=10, snapshot=0)
    model = tmp_path / "model.caffemodel"
    out = tmp_path / "features"
    result = run_wrapper("--master", standalone, "--conf", "spark.cores.max=2",
                         "--conf", "spark.executor.cores=1",
                         "--conf", "spark.executor.memory=512m",
                         "-train", "-features", "ip2", "-label", "label", "-conf", solver,
                         "-clusterSize", 2, "-connection", "ethernet",
                         "-model", f"file:{model}", "-output", f"file:{out}", cwd=tmp_path,
                         timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ip2" in read_model(model)
    rows = read_json_rows(out)
    assert len(rows) == 20
    assert list(rows[0]) == ["SampleID", "ip2", "label"]
