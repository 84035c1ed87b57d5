#!/usr/bin/env python
"""The original's example pipeline (MyMLPipeline) with our API: train a Caffe net on Spark,
extract features of the TEST data, and fit an MLlib LogisticRegression on them.

Options are the original's single-dash words, for example:

    python examples/mllib_pipeline.py -conf data/lenet_memory_solver.prototxt \\
        -model file:/tmp/lenet.caffemodel -features ip1 -label label \\
        -clusterSize 2 -output /tmp/lr_model

With plain `python` Spark runs embedded as local[clusterSize]; under `spark-submit`
(options after the script name) it joins spark-submit's master.
"""

import sys

from cos.errors import CosError
from cos.spark.config import FLAGS, OPTIONS


def parse_args(argv):
    """Single-dash tokens -> the dict Config takes (flags get '')."""
    opts, i = {}, 0
    while i < len(argv):
        token = argv[i]
        name = token.lstrip("-")
        if not token.startswith("-") or name not in OPTIONS:
            raise CosError(f"unknown option {token!r} (options are the original's, "
                           "e.g. -conf, -model, -features, -label, -output)", exit_code=2)
        if name in FLAGS:
            opts[name], i = "", i + 1
            continue
        if i + 1 >= len(argv):
            raise CosError(f"{token}: missing value", exit_code=2)
        opts[name], i = argv[i + 1], i + 2
    for name in ("conf", "model", "features", "label"):
        if not opts.get(name):
            raise CosError(f"-{name} is required (see the usage at the top of "
                           "examples/mllib_pipeline.py)", exit_code=2)
    size = opts.get("clusterSize", "1")
    if not str(size).isdigit() or int(size) < 1:
        raise CosError(f"-clusterSize: expected a positive integer, got {size!r}", exit_code=2)
    return opts


def lr_input(df, cfg):
    """Columns `Label` (first element of the label column, double) and `Feature` (the first
    feature column as an MLlib dense vector), as the original's two UDFs make them."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F
    return (df.withColumn("Label", F.col(cfg.label)[0].cast("double"))
              .withColumn("Feature", array_to_vector(F.col(cfg.features[0]))))


def accuracy(model, df):
    """Share of rows whose predicted class equals `Label`."""
    from pyspark.sql import functions as F
    scored = model.transform(df)
    right = scored.filter(F.col("prediction") == F.col("Label")).count()
    return right / max(scored.count(), 1)


def run(spark, opts):
    from pyspark.ml.classification import LogisticRegression

    from cos.spark import CaffeOnSpark, Config, DataSource
    sc = spark.sparkContext
    cfg = Config(sc, opts)
    source = DataSource(sc)
    cos = CaffeOnSpark(spark)
    cos.train(source.getSource(cfg, True))
    features = cos.features(source.getSource(cfg, False))
    data = lr_input(features, cfg)
    lr = LogisticRegression(labelCol="Label", featuresCol="Feature")
    model = lr.fit(data)
    model.write().overwrite().save(cfg.outputPath)
    print(f"LogisticRegression on '{cfg.features[0]}' of {data.count()} test samples: "
          f"accuracy {accuracy(model, data):.4f}; model saved to {cfg.outputPath}")


def main(argv=None):
    from cos.spark.caffe_on_spark import session
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except CosError as err:
        print(f"mllib_pipeline: error: {err}", file=sys.stderr)
        return err.exit_code
    spark = session(cluster_size=int(opts.get("clusterSize", 1)), app_name="MyMLPipeline")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        run(spark, opts)
    except CosError as err:
        print(f"mllib_pipeline: error: {err}", file=sys.stderr)
        return err.exit_code
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
