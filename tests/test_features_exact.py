"""Features see every record exactly once: 1,003 records, batch 10, 2 ranks -> 1,003 rows
with the LMDB's ids (the original dropped each partition's last partial batch)."""

from pathlib import Path

import numpy as np
import pytest

from test_spark_local import LENET, digits, read_json_rows, run_wrapper, write_lmdb

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def test_features_over_1003_records_on_two_ranks(tmp_path):
    from cos.engine.net import Net
    from cos.proto import caffe_pb2, text
    images, labels = digits(1003)
    write_lmdb(tmp_path / "lmdb", images, labels)
    net_text = LENET.replace("TRAIN_LMDB", str(tmp_path / "lmdb")) \
                    .replace("TEST_LMDB", str(tmp_path / "lmdb")).replace("batch_size: 8",
                                                                          "batch_size: 10")
    (tmp_path / "net.prototxt").write_text(net_text)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\n'
        'test_iter: 1\ntest_interval: 1000\nrandom_seed: 3\n')
    # An untrained model is enough: the check is about rows, not accuracy.
    param = text.parse_net_text(net_text.replace('type: "MemoryData"', 'type: "Input"'))
    for layer in param.layer:
        if layer.type == "Input":
            layer.ClearField("memory_data_param")
            layer.ClearField("source_class")
            layer.input_param.shape.add(dim=[10, 1, 8, 8])
            layer.input_param.shape.add(dim=[10])
    model = tmp_path / "model.caffemodel"
    Net(param, phase=caffe_pb2.TEST, seed=1).save(str(model))

    out = tmp_path / "features"
    result = run_wrapper("--master", "local[2]", "-features", "ip2", "-label", "label",
                         "-conf", tmp_path / "solver.prototxt", "-clusterSize", 2,
                         "-model", f"file:{model}", "-output", f"file:{out}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = read_json_rows(out)
    assert len(rows) == 1003
    assert sorted(r["SampleID"] for r in rows) == [f"{i:08d}" for i in range(1003)]
    by_id = {r["SampleID"]: r for r in rows}
    assert [by_id[f"{i:08d}"]["label"][0] for i in range(1003)] == list(labels.astype(float))
    assert all(len(r["ip2"]) == 10 and np.isfinite(r["ip2"]).all() for r in rows)
