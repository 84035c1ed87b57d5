"""cos-tools: data converters for CaffeOnSpark, one click subcommand each."""

import sys

import click

from cos.errors import CosError


@click.group()
def cli():
    """Data preparation tools (compute_image_mean, ...)."""


@cli.command("compute_image_mean")
@click.argument("input_db")
@click.argument("output_file")
def compute_image_mean_cmd(input_db, output_file):
    """Write the per-pixel mean of INPUT_DB (an LMDB of Datums) to OUTPUT_FILE (binaryproto)."""
    from cos.tools.compute_image_mean import compute_image_mean
    mean = compute_image_mean(input_db, output_file)
    click.echo(f"wrote {output_file}: mean of shape {mean.shape}, average value {mean.mean():.4f}")


def main(argv=None):
    """Entry point; CosError becomes a one-line message and exit status 1."""
    try:
        cli.main(args=argv, prog_name="cos-tools", standalone_mode=False)
    except CosError as err:
        click.echo(f"cos-tools: {err}", err=True)
        return 1
    except click.ClickException as err:
        err.show()
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
