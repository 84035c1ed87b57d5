"""compute_image_mean: the per-pixel mean of every Datum in an LMDB, as a BlobProto (caffe.md §5.7)."""

import lmdb
import numpy as np

from cos.errors import DataError
from cos.proto import caffe_pb2
from cos.proto.binary import write_binary
from cos.proto.datum import datum_to_array, parse_datum


def image_mean(db_path):
    """Mean C×H×W array (float64 accumulation) over all records of the LMDB at `db_path`."""
    try:
        env = lmdb.open(str(db_path), readonly=True, lock=False, subdir=True)
    except lmdb.Error as err:
        raise DataError(f"{db_path}: cannot open LMDB ({err})") from None
    total, count = None, 0
    with env.begin() as txn:
        for key, value in txn.cursor():
            where = f"{db_path} key {key.decode(errors='replace')}"
            arr = datum_to_array(parse_datum(bytes(value), where), where=where)
            if total is None:
                total = np.zeros(arr.shape, np.float64)
            elif arr.shape != total.shape:
                raise DataError(f"{where}: shape {arr.shape} differs from the first record's {total.shape}")
            total += arr
            count += 1
    env.close()
    if count == 0:
        raise DataError(f"{db_path}: LMDB has no records")
    return total / count


def mean_blob(mean):
    """BlobProto with Caffe's legacy 4-D fields num=1, channels, height, width."""
    blob = caffe_pb2.BlobProto()
    blob.num, (blob.channels, blob.height, blob.width) = 1, mean.shape
    blob.data.extend(mean.astype(np.float32).ravel().tolist())
    return blob


def compute_image_mean(db_path, output):
    mean = image_mean(db_path)
    write_binary(mean_blob(mean), output)
    return mean
