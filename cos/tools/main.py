"""cos-tools: data converters for CaffeOnSpark, one click subcommand each.

The original's converters keep their class names and single-dash options (Binary2Sequence
-imageRoot DIR -labelFile F -output DIR); Caffe's tools keep their gflags-style names
(convert_imageset -shuffle -resize_height 28 ROOT LISTFILE DB).
"""

import logging
import sys

import click

from cos.errors import CosError

# The options of the original's Config parser that its tools read (spec 2.2).
TOOL_OPTIONS = {
    "-imageRoot": (str, None, "input image folder, or the LMDB directory"),
    "-labelFile": (str, None, "label list file"),
    "-output": (str, "output", "output folder"),
    "-outputFormat": (str, "json", "DataFrame format: json or parquet"),
    "-lmdb_partitions": (int, None, "partitions the LMDB is read in (default -clusterSize)"),
    "-clusterSize": (int, 1, "number of executors"),
    "-captionFile": (str, "", "COCO caption JSON"),
    "-captionLength": (int, 20, "length of the sentence arrays"),
    "-vocabSize": (int, -1, "keep the N most frequent words (-1: all)"),
    "-imageCaptionDFDir": (str, "", "image/caption DataFrame, appended to -output"),
    "-vocabDir": (str, "", "vocabulary folder, appended to -output"),
    "-embeddingDFDir": (str, "", "embedding DataFrame, appended to -output"),
}


def tool_options(*names):
    """Declare the named single-dash options of the original's parser on a command."""
    def decorate(command):
        for name in reversed(names):
            kind, default, text = TOOL_OPTIONS[name]
            command = click.option(name, name[1:], type=kind, default=default, help=text,
                                   show_default=default not in (None, ""))(command)
        return command
    return decorate


@click.group(context_settings={"help_option_names": ["--help", "-help", "-h"]})
def cli():
    """Data preparation tools: the CaffeOnSpark converters and Caffe's image tools."""


@cli.command("Binary2Sequence", short_help="image files + labels -> SequenceFile")
@tool_options("-imageRoot", "-labelFile", "-output")
def binary2sequence_cmd(imageRoot, labelFile, output):
    """Images listed as '<file> <label>' -> a SequenceFile folder (Tuple2 keys)."""
    from cos.tools.converters import binary2sequence
    _need(imageRoot and labelFile, "Both -imageRoot and -labelFile must be defined")
    count = binary2sequence(imageRoot, labelFile, output)
    click.echo(f"wrote {count} images to SequenceFile {output}")


@cli.command("Binary2DataFrame", short_help="image files + labels + ids -> DataFrame")
@tool_options("-imageRoot", "-labelFile", "-output", "-outputFormat")
def binary2dataframe_cmd(imageRoot, labelFile, output, outputFormat):
    """Images listed as '<file> <label> <id>' -> a DataFrame (SampleID, label, data)."""
    from cos.tools.converters import binary2dataframe
    _need(imageRoot and labelFile, "Both -imageRoot and -labelFile must be defined")
    count = binary2dataframe(imageRoot, labelFile, output, outputFormat)
    click.echo(f"wrote {count} images to {outputFormat} DataFrame {output}")


@cli.command("LMDB2Sequence", short_help="LMDB -> SequenceFile")
@tool_options("-imageRoot", "-output", "-lmdb_partitions", "-clusterSize")
def lmdb2sequence_cmd(imageRoot, output, lmdb_partitions, clusterSize):
    """A Caffe LMDB (-imageRoot) -> a SequenceFile folder (Tuple6 keys, HWC pixels)."""
    from cos.tools.converters import lmdb2sequence
    _need(imageRoot and output, "-imageRoot <LMDB directory> and -output <SequenceFile> "
                                "must be defined")
    count = lmdb2sequence(imageRoot, output, lmdb_partitions or clusterSize)
    click.echo(f"wrote {count} records to SequenceFile {output}")


@cli.command("LMDB2DataFrame", short_help="LMDB -> DataFrame")
@tool_options("-imageRoot", "-output", "-lmdb_partitions", "-clusterSize", "-outputFormat")
def lmdb2dataframe_cmd(imageRoot, output, lmdb_partitions, clusterSize, outputFormat):
    """A Caffe LMDB (-imageRoot) -> a DataFrame in ImageDataFrame's schema."""
    from cos.tools.converters import lmdb2dataframe
    _need(imageRoot and output, "-imageRoot <LMDB directory> and -output <DataFrameFile> "
                                "must be defined")
    count = lmdb2dataframe(imageRoot, output, lmdb_partitions or clusterSize, outputFormat)
    click.echo(f"wrote {count} records to {outputFormat} DataFrame {output}")


@cli.command("CocoDataSetConverter", short_help="COCO captions -> caption/vocabulary/embedding")
@tool_options("-imageRoot", "-captionFile", "-output", "-imageCaptionDFDir", "-vocabDir",
              "-embeddingDFDir", "-vocabSize", "-captionLength", "-outputFormat",
              "-clusterSize")
def coco_cmd(imageRoot, captionFile, output, imageCaptionDFDir, vocabDir, embeddingDFDir,
             vocabSize, captionLength, outputFormat, clusterSize):
    """COCO captions + images -> image/caption DataFrame, vocabulary, embedding DataFrame
    (sub-directories of -output)."""
    from cos.tools.converters import coco_dataset_converter
    _need(imageRoot and captionFile, "Both -imageRoot and -captionFile must be defined")
    count = coco_dataset_converter(imageRoot, captionFile, output, imageCaptionDFDir, vocabDir,
                                   embeddingDFDir, vocabSize, captionLength, outputFormat)
    click.echo(f"wrote {count} embedded rows under {output}")


def _gflag(name, **kwargs):
    """A Caffe tool flag, spelled -name or --name."""
    return click.option(f"-{name}", f"--{name}", name, **kwargs)


@cli.command("convert_imageset", short_help="image files + labels -> LMDB of Datums")
@_gflag("gray", is_flag=True, help="load images as 1-channel gray (default: BGR colour)")
@_gflag("shuffle", is_flag=True, help="shuffle the list (with -seed) before numbering")
@_gflag("seed", type=int, default=0, show_default=True, help="seed for -shuffle")
@_gflag("backend", default="lmdb", show_default=True, help="database type (lmdb only)")
@_gflag("resize_width", type=int, default=0, help="resize to this width (with -resize_height)")
@_gflag("resize_height", type=int, default=0, help="resize to this height (with -resize_width)")
@_gflag("check_size", is_flag=True, help="fail if the images differ in size")
@_gflag("encoded", is_flag=True, help="store encoded images (the file bytes when possible)")
@_gflag("encode_type", default="", help="png or jpg (implies -encoded)")
@click.argument("root")
@click.argument("listfile")
@click.argument("db")
def convert_imageset_cmd(root, listfile, db, **flags):
    """Images listed as '<path> <label>' under ROOT -> an LMDB of Datums at DB."""
    from cos.tools.converters import convert_imageset
    count = convert_imageset(root, listfile, db, **flags)
    click.echo(f"wrote {count} images to {db}")


@cli.command("compute_image_mean", short_help="mean image of an LMDB -> binaryproto")
@click.argument("input_db")
@click.argument("output_file")
def compute_image_mean_cmd(input_db, output_file):
    """Write the per-pixel mean of INPUT_DB (an LMDB of Datums) to OUTPUT_FILE (binaryproto)."""
    from cos.tools.compute_image_mean import compute_image_mean
    mean = compute_image_mean(input_db, output_file)
    click.echo(f"wrote {output_file}: mean of shape {mean.shape}, average value {mean.mean():.4f}")


def _need(ok, message):
    if not ok:
        raise CosError(message, exit_code=2)


def main(argv=None):
    """Entry point; CosError becomes a one-line message and a non-zero exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("cos.tools").setLevel(logging.INFO)
    try:
        cli.main(args=argv, prog_name="cos-tools", standalone_mode=False)
    except CosError as err:
        click.echo(f"cos-tools: {err}", err=True)
        return err.exit_code
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Abort:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
