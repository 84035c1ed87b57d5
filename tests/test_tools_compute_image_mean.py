"""Tests for cos-tools compute_image_mean on a real LMDB built in the test."""

import subprocess
import sys

import lmdb
import numpy as np

from cos.proto import caffe_pb2
from cos.proto.datum import array_to_datum
from cos.tools.main import main


def make_lmdb(path, images):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, img in enumerate(images):
            txn.put(b"%08d" % i, array_to_datum(img, label=i % 3).SerializeToString())
    env.close()


def test_mean_written_as_legacy_blob(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)
    make_lmdb(tmp_path / "db", images)
    assert main(["compute_image_mean", str(tmp_path / "db"), str(tmp_path / "mean.binaryproto")]) == 0
    blob = caffe_pb2.BlobProto.FromString((tmp_path / "mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 4, 5)
    np.testing.assert_allclose(np.array(blob.data), images.mean(axis=0).ravel(), rtol=1e-5)


def test_mixed_shapes_give_one_line_error(tmp_path):
    make_lmdb(tmp_path / "db", [np.zeros((1, 2, 2), np.uint8), np.zeros((1, 3, 3), np.uint8)])
    proc = subprocess.run([sys.executable, "-m", "cos.tools.main", "compute_image_mean",
                           str(tmp_path / "db"), str(tmp_path / "m.binaryproto")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "00000001" in proc.stderr
    assert not (tmp_path / "m.binaryproto").exists()


def test_missing_db_is_reported(tmp_path, capsys):
    assert main(["compute_image_mean", str(tmp_path / "nope"), str(tmp_path / "m")]) == 1
    assert "nope" in capsys.readouterr().err
