"""Entry point of the ``landscape`` command."""
from __future__ import annotations

import click

from . import (barriers_cmd, connect_cmd, hessian_cmd, plot_cmd, shape_cmd, study_cmd,
               surface_cmd, train_cmd)
from .common import LandscapeGroup


@click.group(cls=LandscapeGroup, context_settings={"help_option_names": ["-h", "--help"]})
# The version from the installed package's metadata: importing `landscape` (torch) for it
# made `--version` take seconds.
@click.version_option(None, "--version", "-V", package_name="landscape-minima",
                      prog_name="landscape")
def cli() -> None:
    """Loss landscapes, Hessian spectra and sharpness of neural-network minima.

    Start with `landscape demo` (trains a small-batch and a full-batch model on MNIST-1D and
    writes a report), or see each command's --help.
    """


@cli.command()
def info() -> None:
    """Versions, the device that would be used, and CPU threads."""
    import torch

    from landscape.util import pick_device, versions

    for name, ver in versions().items():
        click.echo(f"{name:18s} {ver}")
    click.echo(f"{'device':18s} {pick_device()}")
    click.echo(f"{'cuda available':18s} {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        click.echo(f"{'cuda device':18s} {torch.cuda.get_device_name(0)}")
    click.echo(f"{'torch threads':18s} {torch.get_num_threads()}")
    from landscape.data import cache_dir
    click.echo(f"{'dataset cache':18s} {cache_dir()}")


for _module in (train_cmd, surface_cmd, hessian_cmd, plot_cmd, shape_cmd, study_cmd, connect_cmd,
                barriers_cmd):
    _module.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="landscape")


if __name__ == "__main__":
    main()
