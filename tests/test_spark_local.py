"""End to end on local[2] through bin/caffe-on-spark: a small LeNet trains on 2 MPI ranks
from a real LMDB, then -test and -features read the saved model back."""

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.mpi]

REPO = Path(__file__).resolve().parents[1]
WRAPPER = REPO / "bin" / "caffe-on-spark"

LENET = """
name: "LeNetSmall"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  include { phase: TRAIN } source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:TRAIN_LMDB" batch_size: 10 channels: 1 height: 8 width: 8 }
  transform_param { scale: 0.00390625 } }
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  include { phase: TEST } source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:TEST_LMDB" batch_size: 8 channels: 1 height: 8 width: 8 }
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
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

SOLVER = """net: "lenet_small.prototxt"
base_lr: 0.05
momentum: 0.9
lr_policy: "fixed"
max_iter: MAX_ITER
snapshot: SNAPSHOT
snapshot_prefix: "lenet_small"
solver_mode: CPU
random_seed: 7
"""


def write_lmdb(path, images, labels):
    """A real Caffe LMDB of 1-channel Datums, keys 00000000, 00000001, ..."""
    import lmdb
    from cos.proto import caffe_pb2
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(zip(images, labels)):
            datum = caffe_pb2.Datum(channels=1, height=img.shape[0], width=img.shape[1],
                                    data=img.astype(np.uint8).tobytes(), label=int(label))
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def digits(count, offset=0):
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = (bunch.images[offset:offset + count] * 255.0 / 16.0).round()
    return images, bunch.target[offset:offset + count]


def make_job(tmp, train_count=300, test_count=50, max_iter=30, snapshot=20):
    """Solver, net and two LMDBs in `tmp`; returns the solver path."""
    tmp = Path(tmp)
    write_lmdb(tmp / "train_lmdb", *digits(train_count))
    write_lmdb(tmp / "test_lmdb", *digits(test_count, offset=1500))
    net = LENET.replace("TRAIN_LMDB", str(tmp / "train_lmdb")) \
               .replace("TEST_LMDB", str(tmp / "test_lmdb"))
    (tmp / "lenet_small.prototxt").write_text(net)
    solver = SOLVER.replace("MAX_ITER", str(max_iter)).replace("SNAPSHOT", str(snapshot))
    (tmp / "lenet_small_solver.prototxt").write_text(solver)
    return tmp / "lenet_small_solver.prototxt"


def run_wrapper(*args, cwd=None, env=None, timeout=480):
    full_env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", **(env or {}))
    start = time.monotonic()
    result = subprocess.run([str(WRAPPER), *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, env=full_env, timeout=timeout)
    result.seconds = time.monotonic() - start
    return result


def read_model(path):
    from cos.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.ParseFromString(Path(path).read_bytes())
    return {layer.name: layer for layer in net.layer}


def read_json_rows(directory):
    rows = []
    for part in sorted(Path(directory).glob("part-*")):
        rows += [json.loads(line) for line in part.read_text().splitlines() if line]
    return rows


def test_train_then_test_and_features_on_two_ranks(tmp_path):
    solver = make_job(tmp_path)
    model = tmp_path / "out" / "lenet.caffemodel"
    model.parent.mkdir()
    features_dir = tmp_path / "features"
    trained = run_wrapper("--master", "local[2]", "-train", "-features", "ip2",
                          "-label", "label", "-conf", solver, "-clusterSize", 2,
                          "-connection", "ethernet", "-model", f"file:{model}",
                          "-output", f"file:{features_dir}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    layers = read_model(model)
    assert {"conv1", "ip1", "ip2"} <= set(layers)
    assert len(layers["ip2"].blobs[0].data) == 200
    # rank 0's snapshot at iteration 20 lands in the model's directory
    assert (model.parent / "lenet_small_iter_20.caffemodel").exists()
    assert (model.parent / "lenet_small_iter_20.solverstate").exists()

    rows = read_json_rows(features_dir)
    assert len(rows) == 50  # every record once, the partial last batch padded
    assert sorted(r["SampleID"] for r in rows) == [f"{i:08d}" for i in range(50)]
    assert list(rows[0]) == ["SampleID", "ip2", "label"]
    assert all(len(r["ip2"]) == 10 and len(r["label"]) == 1 for r in rows)
    _, test_labels = digits(50, offset=1500)
    by_id = {r["SampleID"]: r for r in rows}
    assert [by_id[f"{i:08d}"]["label"][0] for i in range(50)] == list(test_labels)
    predicted = np.array([np.argmax(by_id[f"{i:08d}"]["ip2"]) for i in range(50)])
    assert (predicted == test_labels).mean() > 0.5  # it learned something

    result_file = tmp_path / "test_result"
    tested = run_wrapper("--master", "local[2]", "-test", "-conf", solver, "-clusterSize", 2,
                         "-model", f"file:{model}", "-output", f"file:{result_file}",
                         cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    lines = result_file.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["accuracy", "loss"]
    accuracy = float(lines[0].split(": ")[1])
    loss = float(lines[1].split(": ")[1])
    assert 0.5 < accuracy <= 1.0 and 0 < loss < 2.3
