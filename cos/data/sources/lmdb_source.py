"""LMDB of Caffe Datums -> sample tuples (id, label, channels, height, width, encoded, data).

Raw data is converted from Datum's planar CHW to interleaved HWC (channels > 1); encoded
images pass through. float_data is ignored, as in the original.

Where the LMDB lives (spec 4.3): a local or `file:` directory is read in place (on a cluster
it must exist at the same path on every node). Any Hadoop path (`hdfs://`, or a scheme-less
one when the default filesystem is not local) is copied once to a local cache on the driver,
which needs the key ranges, and shipped once per application to the executors with
`SparkContext.addFile(path, recursive=True)`. Every copy is opened read-only with lock=False,
so no `lock.mdb` is ever written and a shipped copy never changes under Spark.
"""

import atexit
import functools
import itertools
import os
import shutil
import tempfile

import numpy as np

from ...errors import DataError
from ...proto import caffe_pb2, paths
from .. import partition
from .base import ImageSource

DATA_FILE = "data.mdb"

# Per application (SparkContext id): driver copies {uri: (local dir, data.mdb size)} and
# shipped directories {directory name: uri}.
_DRIVER_COPIES = {}
_SHIPPED = {}


def datum_sample(key, value, where, datum=None):
    """One LMDB (key, value) -> the sample tuple; a value that is not a Datum -> DataError.
    `datum`: a Datum message to parse into (reused across records by the readers)."""
    datum = caffe_pb2.Datum() if datum is None else datum
    try:
        datum.ParseFromString(value)
    except Exception:
        raise DataError(f"{where}: key {key.decode(errors='replace')!r}: "
                        "value is not a Caffe Datum") from None
    channels, height, width = datum.channels, datum.height, datum.width
    encoded, data = datum.encoded, datum.data
    if not encoded:
        size = channels * height * width
        if len(data) != size or size == 0:
            raise DataError(f"{where}: key {key.decode(errors='replace')!r}: "
                            f"{len(data)} data bytes for {channels}x{height}x{width}")
        if channels > 1:
            data = np.frombuffer(data, np.uint8).reshape(
                channels, height, width).transpose(1, 2, 0).tobytes()
    return (key.decode("utf-8", "replace"), str(datum.label), channels, height, width,
            encoded, data)


def read_samples(local_dir, start_key, count, where):
    """The samples of one key range of the LMDB at `local_dir` (start_key None: from the
    first key; count None: to the end); errors name `where`.
    (One tight loop over the C cursor: this is the hot path of every LMDB job.)"""
    datum = caffe_pb2.Datum()
    with partition.shared_env(local_dir) as env, env.begin() as txn:
        cursor = txn.cursor()
        if start_key is None:
            if not cursor.first():
                raise DataError(f"{where}: LMDB is empty")
        elif not cursor.set_key(start_key):
            raise DataError(f"{where}: key {start_key!r} not found")
        for key, value in itertools.islice(cursor.iternext(), count):
            yield datum_sample(key, value, where, datum)


def read_shipped(name, size, where, part):
    """Inside a task: the samples of `part` from the executor's copy of directory `name`."""
    from pyspark import SparkFiles
    local_dir = SparkFiles.get(name)
    data_file = os.path.join(local_dir, DATA_FILE)
    actual = os.path.getsize(data_file) if os.path.isfile(data_file) else -1
    if actual != size:
        found = f"{actual} bytes" if actual >= 0 else "no such file"
        raise DataError(f"{where}: the executor's copy {data_file}: {found}, the driver saw "
                        f"{size} bytes (was the LMDB changed during the job?)")
    return read_samples(local_dir, part[0], part[1], where)


class LMDBSource(ImageSource):
    """A Data/MemoryData/CoSData layer whose `source` is an LMDB directory."""

    def __init__(self, layer, is_train, partitions=1, resize=False, cluster_size=1,
                 dataframe=None, **options):
        super().__init__(layer, is_train, partitions=partitions, resize=resize,
                         cluster_size=cluster_size, dataframe=dataframe, **options)
        if paths.scheme(self.path) == "file":
            self.path = paths.absolute(self.path)  # relative to the driver's CWD (spec 4.1)

    # ---- without Spark (and the local side of make_rdd) -----------------------------
    def local(self):
        """The local directory to read: the path itself, or the driver's cached copy."""
        if paths.is_local(self.path):
            return paths.local_path(self.path)
        return _driver_copy(self.path)[0]

    def partitions(self, spark=None):
        """[(start_key, count)]: min(lmdb_partitions, ceil(entries / batch)) key ranges."""
        return _key_ranges(self.local(), self.path, self.batch_size, self.lmdb_partitions)

    def iter_partition(self, part):
        start_key, count = part
        return read_samples(self.local(), start_key, count, self.path)

    def iter_local(self):
        """All samples in key order (a Hadoop path needs an active SparkContext)."""
        return read_samples(self.local(), None, None, self.path)

    # ---- Spark --------------------------------------------------------------------
    def make_rdd(self, sc):
        """The RDD of samples, one Spark partition per key range."""
        local, uri = _resolve(sc, self.path)
        if local is not None:
            parts = _key_ranges(local, self.path, self.batch_size, self.lmdb_partitions)
            read = functools.partial(_read_in_place, local, self.path)
        else:
            local, size = _driver_copy(uri, sc, where=self.path)
            parts = _key_ranges(local, self.path, self.batch_size, self.lmdb_partitions)
            name = _ship_once(sc, uri)
            read = functools.partial(read_shipped, name, size, self.path)
        return sc.parallelize(parts, len(parts)).flatMap(read)


def _read_in_place(local_dir, where, part):
    return read_samples(local_dir, part[0], part[1], where)


def _key_ranges(local_dir, uri, batch_size, lmdb_partitions):
    """partition.key_ranges with errors naming `uri` rather than a cache directory."""
    try:
        return partition.key_ranges(local_dir, batch_size, lmdb_partitions)
    except DataError as err:
        if local_dir == uri:
            raise
        raise DataError(str(err).replace(local_dir, uri)) from None


def _resolve(sc, uri):
    """(local directory, None) for a path read in place, (None, full URI) for a Hadoop one.
    A scheme-less path goes through Hadoop's default filesystem, like the original (Spark's
    addFile would take it for a local file, so it is qualified first)."""
    if paths.scheme(uri) == "file":
        return paths.local_path(uri), None
    if paths.scheme(uri):
        return None, uri
    jpath = sc._jvm.org.apache.hadoop.fs.Path(uri)
    fs = jpath.getFileSystem(sc._jsc.hadoopConfiguration())
    if str(fs.getUri().getScheme()) == "file":
        return os.path.abspath(uri), None  # relative to this process's CWD, like partitions()
    return None, str(fs.makeQualified(jpath).toString())


def _app_key(sc):
    from pyspark import SparkContext
    sc = sc or SparkContext._active_spark_context
    if sc is None:
        return None  # paths raises the "needs a running Spark session" error
    return sc.applicationId


def _driver_copy(uri, sc=None, where=None):
    """(local directory, data.mdb size) of the driver's copy of a Hadoop LMDB, made once
    per application. Only data.mdb is copied: lock.mdb is never needed with lock=False."""
    where = where or uri
    key = (_app_key(sc), uri)
    if key in _DRIVER_COPIES:
        return _DRIVER_COPIES[key]
    base = uri.rstrip("/")
    if not paths.exists(base):
        raise DataError(f"{where}: LMDB directory not found")
    if not paths.exists(base + "/" + DATA_FILE):
        raise DataError(f"{where}: not an LMDB directory (no {DATA_FILE})")
    local_dir = tempfile.mkdtemp(prefix="cos-lmdb-")
    atexit.register(shutil.rmtree, local_dir, True)
    paths.copy_to_local(base + "/" + DATA_FILE, local_dir)
    _DRIVER_COPIES[key] = (local_dir, os.path.getsize(os.path.join(local_dir, DATA_FILE)))
    return _DRIVER_COPIES[key]


def _ship_once(sc, uri):
    """addFile(uri, recursive=True) once per application; the executors' directory name.
    Two different LMDBs with one directory name would overwrite each other's copy."""
    name = os.path.basename(uri.rstrip("/"))
    shipped = _SHIPPED.setdefault(sc.applicationId, {})
    if name in shipped:
        if shipped[name] != uri:
            raise DataError(f"{uri}: an LMDB directory named '{name}' was already shipped "
                            f"from {shipped[name]}; rename one of them")
        return name
    sc.addFile(uri.rstrip("/"), recursive=True)
    shipped[name] = uri
    return name
