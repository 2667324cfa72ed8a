"""``landscape barriers``: the barrier matrix of N minima (straight lines, optionally trained
curves), grouped into basins."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import click

from .common import (MAX_EPOCHS, MAX_POINTS, bundle_from, code_options, dataset_options,
                     device_option, echo_table, guard_output, main_output_lock, split_names,
                     user_error, wraps_threads)


@click.command("barriers")
@click.argument("checkpoints", nargs=-1, required=True, metavar="CKPT_OR_RUN...")
@dataset_options
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="JSON file of the matrix: barriers per pair in training loss and test "
                   "error, the minima's values, the basins.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Also draw the matrix as heat maps into this PNG/PDF/SVG.")
@click.option("--labels", multiple=True, metavar="A,B,...",
              help="Names of the minima, one per checkpoint (default: run folder or file "
                   "names).")
@click.option("--points", type=click.IntRange(min=3, max=MAX_POINTS), default=21,
              show_default=True, help="Points on each straight line, alpha in [0, 1].")
@click.option("--threshold", type=float, default=None,
              help="Absolute barrier below which two minima are one basin (default: the "
                   "relative rule of `landscape shape`).")
@click.option("--relative", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Relative rule: one basin when the barrier is below RELATIVE x (loss at "
                   "the higher end + FLOOR).")
@click.option("--floor", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Relative rule: added to the higher end's loss.")
@click.option("--curve-epochs", type=click.IntRange(min=0, max=MAX_EPOCHS), default=0,
              show_default=True, help="Also train a Bezier curve this many epochs between "
                                      "every pair (N (N - 1) / 2 trainings; 0: none).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the curves' training.")
@click.option("--force", is_flag=True, help="Overwrite existing --out and --figure files.")
@code_options
@device_option
@click.option("--quiet", is_flag=True, help="No progress lines.")
@wraps_threads
def barriers_command(checkpoints, dataset, data_root, train_subset, test_subset, data_seed,
                     out, figure, labels, points, threshold, relative, floor, curve_epochs,
                     seed, force, device, quiet):
    """The barrier between every pair of minima (checkpoints or `landscape train` run
    folders of one architecture): the highest training loss and test error on the straight
    line between them above the higher end, and which minima are one basin (a barrier below
    the basin rule joins them)."""
    from landscape.barriers import barrier_matrix
    from landscape.checkpoint import checkpoint_path, read_checkpoint
    from landscape.connect import ConnectOptions
    from landscape.surface import SurfaceOptions
    from landscape.util import pick_device, provenance, sha256_file, write_json
    from landscape.workflows import load_minima

    paths = [checkpoint_path(p) for p in checkpoints]
    if len(paths) < 2:
        raise user_error(f"barriers needs at least two checkpoints, got {len(paths)}")
    if threshold is not None and not (threshold >= 0 and math.isfinite(threshold)):
        raise click.BadParameter(f"{threshold}: must be >= 0", param_hint="--threshold")
    names = split_names(labels, count=len(paths))
    connect_options = None
    if curve_epochs:
        connect_options = ConnectOptions(epochs=curve_epochs, points=points, seed=seed,
                                         device=device)
        connect_options.validate()
    outputs = [(Path(out), "--out")] + ([(Path(figure), "--figure")] if figure else [])
    if figure and Path(figure).resolve() == Path(out).resolve():
        raise user_error("--out and --figure must be different files")
    for path, option in outputs:
        guard_output(path, inputs=paths, force=force, option=option)
        click.get_current_context().with_resource(main_output_lock(path))
    if figure:
        from landscape.figures import figure_format

        figure_format(figure)
    pick_device(device)
    minima, _ = load_minima(paths, names)
    spec = (read_checkpoint(paths[0]).get("model") or {}).get("dataset")
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed, like=spec)
    loss = minima[0].loss
    if connect_options is not None:
        connect_options = dataclasses.replace(connect_options, loss=loss)
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    matrix = barrier_matrix([m.model for m in minima], bundle,
                            labels=[m.label for m in minima], points=points,
                            options=SurfaceOptions(progress=not quiet, device=device, loss=loss),
                            connect_options=connect_options, threshold=threshold,
                            relative=relative, floor=floor, log=log)
    record = matrix.to_dict()
    _echo(record)
    write_json(out, {"checkpoints": [str(p) for p in paths],
                     "checkpoint_sha256": [sha256_file(p) for p in paths],
                     "dataset": bundle.name, "points": points, "curve_epochs": curve_epochs,
                     "barriers": record, "provenance": provenance()})
    click.echo(f"wrote {out}", err=True)
    if figure:
        from landscape.figures import plot_barrier_matrix

        n = record["n_basins"]
        plot_barrier_matrix(record, out=figure, title=f"Straight-line barriers between "
                            f"{len(paths)} minima ({n} basin{'s' if n != 1 else ''})")
        click.echo(f"wrote {figure}", err=True)


def _echo(record: dict) -> None:
    """The training-loss barriers as a table, then the basins."""
    labels = record["labels"]

    def cell(v):
        return "n/a" if v is None else f"{v:.4g}"

    click.echo("training-loss barrier on the straight line")
    echo_table([(a, *(cell(v) for v in row)) for a, row in zip(labels, record["train_barrier"])],
               ("", *labels))
    if record["curve_train_barrier"] is not None:
        click.echo("training-loss barrier on the trained curve")
        echo_table([(a, *(cell(v) for v in row))
                    for a, row in zip(labels, record["curve_train_barrier"])], ("", *labels))
    top = max((v for row in record["test_error_barrier"] for v in row if v is not None),
              default=None)
    click.echo(f"test error rises at most {'n/a' if top is None else f'{100 * top:.2f}'} "
               "points above the worse end of a line")
    click.echo(f"{record['n_basins']} basin{'s' if record['n_basins'] != 1 else ''} "
               f"({record['rule']}): " + "; ".join(
                   ", ".join(g["members"]) + ("" if g["direct"] else " (through a chain)")
                   for g in record["groups"]))


def register(group: click.Group) -> None:
    """Add ``barriers`` to the main group."""
    group.add_command(barriers_command)
