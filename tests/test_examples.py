"""examples/mllib_pipeline.py end to end: a small LeNet trains on 2 MPI ranks (local[2]) from
real digit LMDBs, ip1 features of the test digits feed an MLlib LogisticRegression."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.mpi]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mllib_pipeline.py"

NET = """
name: "LeNetTiny"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  include { phase: TRAIN } source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:TRAIN_LMDB" batch_size: 10 channels: 1 height: 8 width: 8 }
  transform_param { scale: 0.00390625 } }
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  include { phase: TEST } source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:TEST_LMDB" batch_size: 20 channels: 1 height: 8 width: 8 }
  transform_param { scale: 0.00390625 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 20 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

SOLVER = """net: "lenet_tiny.prototxt"
base_lr: 0.05
momentum: 0.9
lr_policy: "fixed"
max_iter: 30
solver_mode: CPU
random_seed: 3
"""


def write_lmdb(path, images, labels):
    """A real Caffe LMDB of 1-channel Datums, keys 00000000, 00000001, ..."""
    import lmdb
    from cos.proto import caffe_pb2
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(zip(images, labels)):
            datum = caffe_pb2.Datum(channels=1, height=8, width=8,
                                    data=img.astype(np.uint8).tobytes(), label=int(label))
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def digits(count, offset=0):
    """Real 8x8 handwritten digits (scikit-learn's copy of the UCI set), scaled to 0..255."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = (bunch.images[offset:offset + count] * 255.0 / 16.0).round()
    return images, bunch.target[offset:offset + count]


def make_job(tmp):
    write_lmdb(tmp / "train_lmdb", *digits(400))
    write_lmdb(tmp / "test_lmdb", *digits(200, offset=1500))
    net = NET.replace("TRAIN_LMDB", str(tmp / "train_lmdb")) \
             .replace("TEST_LMDB", str(tmp / "test_lmdb"))
    (tmp / "lenet_tiny.prototxt").write_text(net)
    (tmp / "lenet_tiny_solver.prototxt").write_text(SOLVER)
    return tmp / "lenet_tiny_solver.prototxt"


def run_example(*args, cwd):
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    return subprocess.run([sys.executable, str(EXAMPLE), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=400)


def test_pipeline_trains_extracts_and_fits_logistic_regression(tmp_path):
    solver = make_job(tmp_path)
    model = tmp_path / "lenet.caffemodel"
    lr_dir = tmp_path / "lr_model"
    done = run_example("-conf", solver, "-model", f"file:{model}", "-features", "ip1",
                       "-label", "label", "-clusterSize", 2, "-connection", "ethernet",
                       "-output", lr_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert model.exists() and model.stat().st_size > 0
    found = re.search(r"of (\d+) test samples: accuracy ([0-9.]+)", done.stdout)
    assert found, done.stdout[-2000:]
    assert int(found.group(1)) == 200
    assert 0.5 < float(found.group(2)) <= 1.0  # chance is 0.1 for ten digits

    from pyspark.ml.classification import LogisticRegressionModel
    from cos.spark.caffe_on_spark import session
    assert (lr_dir / "metadata").is_dir()
    spark = session(cluster_size=1, app_name="test_examples")
    try:
        loaded = LogisticRegressionModel.load(str(lr_dir))
        assert loaded.numClasses == 10
        assert loaded.numFeatures == 20  # ip1 has 20 outputs
    finally:
        spark.stop()


def test_pipeline_rejects_unknown_option(tmp_path):
    done = run_example("-conf", "x.prototxt", "-nonsense", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "-nonsense" in done.stderr and "Traceback" not in done.stderr
