"""Training with the model and snapshots on a real HDFS: rank 0 writes them from inside its
Spark task (no JVM there), -test reads the model back, and -snapshot resumes from HDFS."""

import pytest

from test_spark_local import make_job, run_wrapper

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.mpi, pytest.mark.hdfs]


def hdfs_bytes(uri):
    from cos.proto import paths
    return paths.read_bytes(uri)


def test_model_and_snapshots_on_hdfs_then_test_and_resume(hdfs_uri, tmp_path):
    from cos.proto import caffe_pb2, paths
    solver = make_job(tmp_path, train_count=200, test_count=40, max_iter=20, snapshot=10)
    base = f"{hdfs_uri}/jobs/{tmp_path.name}"
    model = f"{base}/lenet.caffemodel"
    trained = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 2,
                          "-model", model, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    net = caffe_pb2.NetParameter()
    net.ParseFromString(hdfs_bytes(model))
    assert {"conv1", "ip1", "ip2"} <= {layer.name for layer in net.layer}
    for it in (10, 20):
        for ext in ("caffemodel", "solverstate"):
            assert paths.exists(f"{base}/lenet_small_iter_{it}.{ext}")
    assert not paths.exists(f"{model}._COPYING_")

    result = tmp_path / "test_result"
    tested = run_wrapper("--master", "local[2]", "-test", "-conf", solver, "-clusterSize", 2,
                         "-model", model, "-output", f"file:{result}", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-2000:]
    assert [line.split(":")[0] for line in result.read_text().splitlines()] == \
        ["accuracy", "loss"]

    resumed_model = f"{base}/resumed.caffemodel"
    solver.write_text(solver.read_text().replace("max_iter: 20", "max_iter: 30"))
    resumed = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 2,
                          "-snapshot", f"{base}/lenet_small_iter_20.solverstate",
                          "-weights", f"{base}/lenet_small_iter_20.caffemodel",
                          "-model", resumed_model, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert paths.exists(f"{base}/lenet_small_iter_30.caffemodel")
    assert not paths.exists(f"{base}/lenet_small_iter_40.caffemodel")
