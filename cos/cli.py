"""`caffe-on-spark`: the original's single-dash command line, checked before Spark starts."""

import logging
import sys
import traceback

import click

from .errors import CosError

_HELP = {
    "-conf": "solver prototxt (its 'net:' is looked up next to it, then in the CWD)",
    "-train": "train the net; rank 0 writes the final model to -model",
    "-test": "run the TEST net over the test data; write 'name: v1,v2' lines to -output",
    "-features": "comma list of blobs to extract from the TEST net into a DataFrame at -output",
    "-label": "label blob appended to the -features columns",
    "-outputFormat": "DataFrame format of the feature output (json, parquet, ...)",
    "-model": "train: final model path (snapshots go to its directory); test/features: "
              "the weights to load",
    "-output": "test result file or feature DataFrame directory",
    "-devices": "devices per executor (1 in CPU mode; more needs that many GPUs)",
    "-persistent": "persist the training RDD on disk",
    "-snapshot": "solver state to resume from (needs -weights)",
    "-weights": "weights to start training from (with -snapshot: the snapshot's weights)",
    "-connection": "MPI fabric between ranks: ethernet (TCP) or infiniband (UCX)",
    "-resize": "resize images to the data layer's height x width",
    "-clusterSize": "number of ranks (one Spark task each); ignored on YARN",
    "-lmdb_partitions": "partitions of an LMDB source (default: the cluster size)",
    "-imageRoot": "tools: input image folder or LMDB",
    "-labelFile": "tools: label list file",
    "-captionFile": "tools: COCO caption JSON",
    "-captionLength": "tools: caption length",
    "-vocabSize": "tools: keep the top N words (-1: all)",
    "-imageCaptionDFDir": "tools: image/caption DataFrame sub-directory",
    "-vocabDir": "tools: vocabulary sub-directory",
    "-embeddingDFDir": "tools: embedded DataFrame sub-directory",
}
_INTS = {"-devices", "-clusterSize", "-lmdb_partitions", "-captionLength", "-vocabSize"}
_FLAG_NAMES = {"-train", "-test", "-persistent", "-resize"}


def _options(command):
    for name in reversed(list(_HELP)):
        dest = name[1:]
        if name in _FLAG_NAMES:
            command = click.option(name, dest, is_flag=True, help=_HELP[name])(command)
        else:
            kind = int if name in _INTS else str
            command = click.option(name, dest, type=kind, default=None,
                                   help=_HELP[name])(command)
    return command


@click.command(context_settings={"help_option_names": ["--help", "-help", "-h"]})
@click.option("--verbose", is_flag=True, help="show tracebacks and Spark's own logs")
@_options
def cli(verbose, **options):
    """Train, test or extract features with a Caffe net on Spark, ranks joined by MPI.

    Options are single-dash words as in the original CaffeOnSpark (-train -conf s.prototxt
    -model file:/tmp/m.caffemodel). Spark's own options go to spark-submit, before them
    (see bin/caffe-on-spark).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname).1s %(name)s] %(message)s")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    try:
        cfg = check(given)
        run(cfg, given)
    except CosError as err:
        if verbose:
            traceback.print_exc()
        click.echo(f"caffe-on-spark: error: {err}", err=True)
        sys.exit(err.exit_code)
    except Exception as err:  # a bug or a Spark failure: one line unless --verbose
        if verbose:
            traceback.print_exc()
        click.echo(f"caffe-on-spark: error: {_one_line(err)}", err=True)
        sys.exit(1)


def check(given):
    """Every check that needs no cluster: mode, -snapshot/-weights, -conf, -devices."""
    from .spark.config import Config
    if not (given.get("train") or given.get("test") or given.get("features")):
        raise CosError("no mode given: pass -train, -test and/or -features", exit_code=2)
    if given.get("snapshot") and not given.get("weights"):
        raise CosError("-snapshot needs -weights: input model file must be provided for "
                       "incremental training", exit_code=2)
    if not given.get("conf"):
        raise CosError("-conf: solver prototxt is required", exit_code=2)
    if not given.get("model"):
        raise CosError("-model: path is required (train: where to write the model; "
                       "test/features: the weights to load)", exit_code=2)
    for name in ("devices", "clusterSize", "lmdb_partitions"):
        if name in given and given[name] < 1:
            raise CosError(f"-{name}: must be at least 1, got {given[name]}", exit_code=2)
    devices = given.get("devices", 1)
    if devices > 1:
        gpus = _gpu_count()
        if gpus < devices:
            raise CosError(f"-devices {devices}: only {gpus} GPU(s) here; CPU mode allows "
                           "a single device", exit_code=2)
    try:
        return Config(None, given)
    except CosError as err:
        raise CosError(str(err), exit_code=2) from None


def run(cfg, given):
    """Section 2.6: start Spark, train (with validation when the solver asks), then
    test or features, and write the outputs."""
    from .spark.caffe_on_spark import CaffeOnSpark, session
    from .spark.config import Config
    from .spark.datasource import DataSource
    spark = session(cluster_size=given.get("clusterSize", 1))
    try:
        sc = spark.sparkContext
        sc.setLogLevel("WARN" if logging.getLogger().level <= logging.INFO else "ERROR")
        cfg = Config(sc, given)
        cos = CaffeOnSpark(sc)
        source = DataSource(sc)
        if cfg.isTraining:
            solver = cfg.solverParameter
            if solver.test_interval and solver.test_iter and solver.test_iter[0]:
                cos.trainWithValidation(source.getSource(cfg, True),
                                        source.getSource(cfg, False))
            else:
                cos.train(source.getSource(cfg, True))
        if cfg.isFeature:
            df = cos.features(source.getSource(cfg, False))
            df.write.format(cfg.outputFormat).save(cfg.outputPath)
        elif cfg.isTest:
            result = cos.test(source.getSource(cfg, False))
            write_test_result(result, cfg.outputPath)
    finally:
        spark.stop()


def write_test_result(result, output):
    """`name: v1,v2` per test-net output, in the net's order, repr floats (section 8.3)."""
    from .proto import paths
    lines = [f"{name}: {','.join(repr(float(v)) for v in values)}"
             for name, values in result.items()]
    paths.write_bytes_atomic(output, ("\n".join(lines) + "\n").encode())


def _gpu_count():
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def _one_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def main(argv=None):
    cli.main(args=argv, prog_name="caffe-on-spark", standalone_mode=True)


if __name__ == "__main__":
    main()
