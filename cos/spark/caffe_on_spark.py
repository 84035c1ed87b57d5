"""CaffeOnSpark(sc): train, test, features and trainWithValidation over Spark, with the
ranks of a training job joined by MPI inside one barrier stage."""

import logging
import os
import sys

import numpy as np

from ..errors import CosError, DataError
from . import jobs
from .launcher import SPARK_SETTINGS, Launcher

log = logging.getLogger("cos.spark")


def session(cluster_size=1, app_name="CaffeOnSpark"):
    """A SparkSession with the settings the launcher relies on; without spark-submit's
    --master it runs embedded local[cluster_size]."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession
    # Start (or join spark-submit's) JVM first, so that SparkConf sees --master and --conf.
    SparkContext._ensure_initialized()
    conf = SparkConf()
    if not conf.contains("spark.master"):
        conf.setMaster(f"local[{max(int(cluster_size), 1)}]")
    for key, value in SPARK_SETTINGS.items():
        if not conf.contains(key):
            conf.set(key, value)
    return SparkSession.builder.appName(app_name).config(conf=conf).getOrCreate()


class CaffeOnSpark:
    """The driver API; `sc` may be a SparkContext or a SparkSession."""

    def __init__(self, sc):
        from pyspark.sql import SparkSession
        if isinstance(sc, SparkSession):
            self.spark, self.sc = sc, sc.sparkContext
        else:
            self.sc = sc
            self.spark = SparkSession.builder.getOrCreate()

    # ---- training -----------------------------------------------------------
    def train(self, source):
        """Train on `source` (the TRAIN data layer's); rank 0 writes -model."""
        self._train(source, None)

    def trainWithValidation(self, train_source, validation_source):
        """Train, validating every test_interval iterations on `validation_source`.

        Returns a DataFrame with one array<float> column per test-net output and one row
        per validation round."""
        rows, names = self._train(train_source, validation_source)
        from pyspark.sql.types import ArrayType, FloatType, StructField, StructType
        schema = StructType([StructField(n, ArrayType(FloatType(), False), False)
                             for n in names])
        return self.spark.createDataFrame([tuple(r[n] for n in names) for r in rows], schema)

    def _train(self, source, val_source):
        cfg = _cfg(source)
        if cfg.snapshotStateFile and not cfg.snapshotModelFile:
            raise CosError("-snapshot needs -weights: input model file must be provided "
                           "for incremental training")
        if not cfg.modelPath:
            raise CosError("-model: where to write the trained model is not given")
        size = cfg.clusterSize
        launcher = Launcher(self.sc, size, cfg.connection, cfg.barrier_timeout)
        launcher.check_cluster()
        records = ranked_records(source.make_rdd(self.sc), size, cfg.isRddPersistent)
        payload = jobs.TrainPayload(
            cfg.shipped_solver(), source, cfg.modelPath, cfg.connection,
            weights=_read(cfg.snapshotModelFile) if cfg.snapshotModelFile
            and not cfg.snapshotStateFile else None,
            state=(_read(cfg.snapshotStateFile), _read(cfg.snapshotModelFile))
            if cfg.snapshotStateFile else None,
            sync_timeout=cfg.sync_timeout)
        names = []
        if val_source is not None:
            payload.val_source = val_source
            payload.val_records = self._validation_records(cfg, source, val_source, size)
        log.info("training on %d ranks", size)
        results = launcher.run(jobs.train_rank, payload, records)
        rows = results[0]["rows"]
        if val_source is not None:
            names = list(rows[0]) if rows else []
        self.last_train = results
        return rows, names

    def _validation_records(self, cfg, source, val_source, size):
        solver = cfg.solverParameter
        per_round = solver.test_interval * source.batch_size
        if source.make_rdd(self.sc).count() < per_round * size:
            raise DataError("Insufficient training data. Please adjust hyperparameters or "
                            "increase dataset.")
        per_val = solver.test_iter[0] * val_source.batch_size
        val_records = val_source.make_rdd(self.sc).collect()
        if len(val_records) < per_val:
            raise DataError("Insufficient validation data. Please adjust hyperparameters "
                            "or increase dataset.")
        return val_records

    # ---- inference ----------------------------------------------------------
    def test(self, source):
        """Mean of every test-net output over all records: {name: [floats]}."""
        cfg = _cfg(source)
        cfg.isTest = True
        payload = self._infer_payload(cfg, source, None)
        names = jobs.output_names(payload)
        parts = source.make_rdd(self.sc).mapPartitions(
            lambda it: jobs.sum_partition(it, payload)).collect()
        if not parts:
            raise DataError(f"layer '{source.layer.name}': the test data is empty")
        total = sum(count for count, _ in parts)
        sums = parts[0][1]
        for _, more in parts[1:]:
            sums = [s + m[:len(s)] for s, m in zip(sums, more)]
        return {name: (s / total).tolist() for name, s in zip(names, sums)}

    def features(self, source):
        """DataFrame: SampleID, one array<float> column per -features blob (+ label)."""
        cfg = _cfg(source)
        names = cfg.features
        if not names:
            raise CosError("-features: no blob names given")
        payload = self._infer_payload(cfg, source, names)
        rows = source.make_rdd(self.sc).mapPartitions(
            lambda it: ((sid, *values) for sid, values in jobs.infer_partition(it, payload)))
        from pyspark import StorageLevel
        from pyspark.sql.types import (ArrayType, FloatType, StringType, StructField,
                                       StructType)
        schema = StructType([StructField("SampleID", StringType(), False)] +
                            [StructField(n, ArrayType(FloatType(), False), False)
                             for n in names])
        df = self.spark.createDataFrame(rows, schema).persist(StorageLevel.DISK_ONLY)
        df.count()
        return df

    def _infer_payload(self, cfg, source, blobs):
        if not cfg.modelPath:
            raise CosError("-model: the weights to test with are not given")
        return jobs.InferPayload(cfg.shipped_solver(), source, _read(cfg.modelPath), blobs)


def ranked_records(rdd, size, persistent=False):
    """Exactly `size` partitions; rank r gets source partitions r, r+size, ... in order, or,
    when the source has fewer partitions than ranks (a small SequenceFile is one split),
    the r-th contiguous block of the records."""
    if persistent:
        from pyspark import StorageLevel
        rdd = rdd.persist(StorageLevel.DISK_ONLY)
    parts = rdd.getNumPartitions()
    if parts == size:
        return rdd
    if parts < size:
        total = max(rdd.count(), 1)

        def block(pair):
            record, index = pair
            return (min(index * size // total, size - 1), ((0, index), record))
        return rdd.zipWithIndex().map(block).partitionBy(size, lambda rank: rank).values()

    def tag(part, it):
        return ((part % size, ((part, i), record)) for i, record in enumerate(it))
    return rdd.mapPartitionsWithIndex(tag).partitionBy(size, lambda rank: rank).values()


def _cfg(source):
    cfg = getattr(source, "cfg", None)
    if cfg is None:
        raise CosError("source has no Config: build it with DataSource(sc).getSource(cfg, ...)")
    return cfg


def _read(uri):
    from ..proto import paths
    if not paths.exists(uri):
        raise CosError(f"{uri}: file not found")
    return paths.read_bytes(uri)
