"""``landscape surface | interpolate | plane | trajectory``: loss surfaces into HDF5 files.

Each command builds its directions, then calls ``landscape.compute_surface``, which saves the
directions once beside the output (``OUT.directions.h5``) and fills the surface file point by
point, checkpointing it atomically so that ``--resume`` continues an interrupted run.

Under torchrun (``torchrun --nproc-per-node N -m landscape surface ...``) the grid points are
shared by the ranks; rank 0 alone writes files and prints; ``--resume`` works with any number
of ranks.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from .common import (bundle_from, checkpoint_callback, code_options, dataset_options,
                     device_option, memory_option, parse_range, surface_out_callback,
                     wraps_threads)

METRIC_NAMES = ("train_loss", "train_acc", "test_loss", "test_acc")


# ----------------------------------------------------------------------------------------
# options


def _range_option(name: str, default: str | None, help_text: str):
    def convert(ctx, param, value):
        return None if value is None else parse_range(value, f"--{param.name}")
    return click.option(f"--{name}", default=default, callback=convert, show_default=True,
                        help=help_text)


def _metrics(ctx, param, value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [n for n in names if n not in METRIC_NAMES]
    if bad or not names:
        raise click.BadParameter(f"{value!r}: use a comma-separated list of "
                                 f"{', '.join(METRIC_NAMES)}", param_hint="--metrics")
    return names


SHARED_OPTIONS = ("metrics", "loss", "out", "resume", "force", "bn_recalibrate", "precision",
                  "channels_last", "hessian", "checkpoint_seconds", "batch_points", "quiet",
                  "dist_timeout", "device", "dry_run", "max_memory")
DIRECTION_OPTIONS = ("norm", "ignore", "kind", "seed", "orthogonalize", "orthogonal", "along")
"""Options that decide a command's directions: on --resume, left out, the saved ones are used."""
LARGE_GRID = 2500
"""From this many points on, the expected time and file size are printed before the work."""


def surface_options(func):
    """Options shared by the surface commands, handed to the command as one ``opts`` dict
    (after refusing an output that exists, or that is one of the inputs)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from landscape.store import check_output
        from landscape.surface import directions_file_for

        from .common import guard_output

        opts = {name: kwargs.pop(name) for name in SHARED_OPTIONS}
        out = Path(opts["out"])
        for written, option in ((out, "--out"), (directions_file_for(out),
                                                 "--out's directions")):
            guard_output(written, _inputs(kwargs), force=True, option=option)
        check_output(out, resume=opts["resume"], force=opts["force"])
        return func(*args, opts=opts, **kwargs)

    options = [
        click.option("--metrics", default="train_loss,train_acc", callback=_metrics,
                     show_default=True, help="Comma-separated: " + ", ".join(METRIC_NAMES)),
        click.option("--loss", type=click.Choice(["cross_entropy", "mse"]), default=None,
                     help="Loss (default: the one the checkpoint was trained with, else "
                          "cross_entropy)."),
        click.option("--out", type=click.Path(dir_okay=False), required=True,
                     callback=surface_out_callback,
                     help="Surface file (.h5); directions go to OUT.directions.h5."),
        click.option("--resume", is_flag=True,
                     help="Continue OUT: compute only its missing points (inputs must match)."),
        click.option("--force", is_flag=True, help="Overwrite OUT (and its directions file)."),
        click.option("--bn-recalibrate", is_flag=True,
                     help="Recompute BatchNorm statistics on the training data at each point."),
        click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]),
                     default="fp32", show_default=True,
                     help="tf32 (CUDA only) or bf16 autocast: faster on GPUs; the error vs fp32 "
                          "at the origin and corners is printed and stored."),
        click.option("--channels-last", is_flag=True,
                     help="Image models: NHWC memory format (faster convolutions on GPUs)."),
        click.option("--hessian", is_flag=True,
                     help="Also store the extreme Hessian eigenvalues (eig_max, eig_min)."),
        click.option("--checkpoint-seconds", type=click.FloatRange(min=0), default=30.0,
                     show_default=True, help="Most seconds of work lost if killed."),
        click.option("--batch-points", type=click.IntRange(min=1), default=None,
                     help="Grid points per batched forward (default: 1 on CPU, 16 on GPU "
                          "for small models)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--dry-run", is_flag=True,
                     help="Print the points, expected time (one point measured) and file size; "
                          "compute and write nothing."),
        memory_option,
        click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=1800.0, show_default=True,
                     help="Under torchrun: seconds a rank waits for the others before the run "
                          "stops and names the ranks that did not answer."),
    ]
    for opt in reversed(options):
        wrapper = opt(wrapper)
    return code_options(device_option(wrapper))


def _inputs(kwargs: dict[str, Any]) -> list[Path]:
    """The files a surface command reads: its checkpoints, or a run folder's."""
    paths = [Path(kwargs[k]) for k in ("checkpoint", "checkpoint_a", "checkpoint_b",
                                       "checkpoint_c") if kwargs.get(k)]
    if kwargs.get("run_dir"):
        run = Path(kwargs["run_dir"])
        paths += [run / "model.pt", *sorted((run / "checkpoints").glob("*.pt"))]
    return paths


def _load(path: str):
    from landscape import load_checkpoint
    from landscape.util import sha256_file

    model, info = load_checkpoint(path)
    return model, info, sha256_file(path)


def _anchor_labels(paths: list[str], given: str | None) -> list[str]:
    """Names of the models on figures: ``given`` (comma-separated, from --labels), else their
    run folder or file names (``landscape.checkpoint.checkpoint_labels``)."""
    from landscape.checkpoint import checkpoint_labels

    if given is None:
        return checkpoint_labels(paths)
    names = [n.strip() for n in given.split(",")]
    if len(names) != len(paths) or not all(names):
        raise click.BadParameter(f"{given!r}: give {len(paths)} names separated by commas",
                                 param_hint="--labels")
    return names


# ----------------------------------------------------------------------------------------
# the shared run


def _run(model, bundle, dirs, x, y, opts: dict[str, Any], info: dict[str, Any],
         recipe: dict[str, Any], trajectory=None, anchors=None):
    """Compute the surface into ``opts['out']`` (directions saved beside it) and print the
    summary. Under torchrun the ranks share the points; only rank 0 writes and prints."""
    from landscape.checkpoint import trained_loss
    from landscape.distributed import PeerError, init_distributed, shutdown
    from landscape.surface import SurfaceOptions, compute_surface, summary_line

    x, y, dirs, stored = _resumed(opts, x, y, dirs)
    options = SurfaceOptions(
        metrics=stored.get("metrics", opts["metrics"]),
        loss=stored.get("loss") or trained_loss(info, opts["loss"]),
        bn_recalibrate=stored.get("bn_recalibrate", opts["bn_recalibrate"]),
        precision=stored.get("precision", opts["precision"]),
        channels_last=stored.get("channels_last", opts["channels_last"]),
        hessian=stored.get("hessian", opts["hessian"]),
        seed=stored.get("seed", recipe.get("seed", 0)), device=opts["device"],
        batch_points=opts["batch_points"], checkpoint_seconds=opts["checkpoint_seconds"],
        progress=not opts["quiet"])
    memory = _memory(model, bundle, 1 if y is None else 2, options, opts["max_memory"])
    if opts["dry_run"] or len(x) * (1 if y is None else len(y)) >= LARGE_GRID:
        _cost(model, bundle, dirs, x, y, options, opts["dry_run"], memory)
        if opts["dry_run"]:
            return None
    context = init_distributed(opts["device"], opts["dist_timeout"])
    try:
        surface = compute_surface(model, bundle, dirs, x, y, options=options, out=opts["out"],
                                  resume=opts["resume"], force=opts["force"],
                                  provenance=dict(recipe, dataset=bundle.spec,
                                                  model=info["model"]),
                                  directions_recipe=recipe, trajectory=trajectory,
                                  anchors=anchors, context=context)
    except PeerError:
        click.get_current_context().exit(1)  # rank 0 prints the error
    finally:
        shutdown(context)
    if surface is None:  # a rank other than 0
        return None
    err = surface.provenance.get("precision_error")
    if err:
        click.echo(f"{opts['precision']} error vs fp32 (largest absolute difference at the "
                   "origin and corners): "
                   + ", ".join(f"{k} {v:.3g}" for k, v in err.items()), err=True)
    if opts["resume"] and surface.provenance.get("computed_now") == 0 and surface.complete:
        click.echo(f"{opts['out']}: already complete, nothing computed ({summary_line(surface)})")
    else:
        click.echo(f"{opts['out']}: {summary_line(surface)}")
    return surface


def _given(name: str) -> bool:
    """True when the command line (or the environment) set option ``name``."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _resumed(opts: dict[str, Any], x, y, dirs):
    """On --resume of an existing file, what it was made with stands in for every option the
    command line leaves out: the grid, the evaluation settings, and the saved directions.

    Returns:
        (x, y, directions, stored settings to use).
    """
    from landscape.store import stored_settings
    from landscape.surface import directions_file_for

    out = Path(opts["out"])
    if not (opts["resume"] and out.is_file()):
        return x, y, dirs, {}
    stored = stored_settings(out)
    if not (_given("x") or _given("alpha")):
        x = stored["x"]
    if not _given("y"):
        y = stored["y"]
    saved = directions_file_for(out)
    if saved.is_file() and not any(_given(name) for name in DIRECTION_OPTIONS):
        dirs = str(saved)
    return x, y, dirs, {k: v for k, v in stored.items()
                        if k not in ("x", "y") and not _given(k)}


def _memory(model, bundle, n_directions: int, options, max_memory: int | None):
    """The surface's memory estimate; refuses in one line if it does not fit."""
    import dataclasses

    from landscape.surface import surface_memory
    from landscape.util.memory import fit_or_refuse, format_bytes, memory_limit

    estimate = surface_memory(model, bundle, n_directions, options=options)
    limit = memory_limit(options.device or "cpu", max_memory)

    def fits(lim: int) -> str | None:
        if (options.batch_points or 1) > 1:
            one = surface_memory(model, bundle, n_directions,
                                 options=dataclasses.replace(options, batch_points=1))
            if one.total_added <= lim:
                return f"--batch-points 1 fits (about {format_bytes(one.total_added)})"
        return None

    fit_or_refuse("this surface", estimate, limit, fits)
    return estimate


def _cost(model, bundle, dirs, x, y, options, dry_run: bool, memory=None) -> None:
    """Print what the surface will cost (rank 0 only)."""
    from landscape.distributed import is_main_process
    from landscape.surface import estimate_surface
    from landscape.util.memory import format_bytes

    if not is_main_process():
        return
    cost = estimate_surface(model, bundle, dirs, x, y, options=options)
    hours, rest = divmod(cost["seconds"], 3600)
    took = f"{hours:.0f} h {rest / 60:.0f} min" if hours else f"{rest / 60:.1f} min"
    click.echo(f"{cost['points']:,} points, about {took} at {cost['seconds_per_point']:.3g} s a "
               f"point (one point measured now, one process), file about "
               f"{cost['file_bytes'] / 2**20:.1f} MiB"
               + (f", memory about {memory.describe()} over the model and data "
                  f"({format_bytes(sum(memory.resident.values()))})" if memory else "")
               + ("; --dry-run: nothing computed" if dry_run else ""), err=True)


def _note(message: str) -> None:
    """A line on stderr, from rank 0 only under torchrun."""
    from landscape.distributed import is_main_process

    if is_main_process():
        click.echo(message, err=True)


# ----------------------------------------------------------------------------------------
# commands


@click.command("surface")
@click.argument("checkpoint", type=click.Path(), callback=checkpoint_callback)
@dataset_options
@_range_option("x", "-1:1:51", "First axis, min:max:num.")
@_range_option("y", None, "Second axis, min:max:num (omit for a 1-D line).")
@click.option("--norm", type=click.Choice(["filter", "layer", "model", "none"]),
              default="filter", show_default=True, help="Direction normalization.")
@click.option("--ignore", type=click.Choice(["biasbn", "none"]), default="biasbn",
              show_default=True, help="biasbn: zero bias and BatchNorm entries of directions.")
@click.option("--kind", type=click.Choice(["weights", "states"]), default="weights",
              show_default=True, help="states: also perturb BatchNorm running statistics.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the directions.")
@click.option("--orthogonalize", is_flag=True,
              help="Make the second direction orthogonal to the first (per filter).")
@click.option("--directions", "along", type=click.Choice(["random", "hessian"]),
              default="random", show_default=True, help="hessian: along the top Hessian "
              "eigenvectors, unit norm (or filter-normalized with an explicit --norm filter).")
@surface_options
@wraps_threads
def surface_command(checkpoint, dataset, data_root, train_subset, test_subset, data_seed, x,
                    y, norm, ignore, kind, seed, orthogonalize, along, opts):
    """Loss surface around CHECKPOINT along random filter-normalized directions (or the top
    Hessian eigenvectors)."""
    from landscape.checkpoint import trained_loss
    from landscape.directions import (direction_cosine, hessian_surface_directions,
                                      random_directions)

    model, info, digest = _load(checkpoint)
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    dirs = random_directions(model, count=1 if y is None else 2, norm=norm, ignore=ignore,
                             kind=kind, seed=seed, orthogonalize=orthogonalize)
    found = {}
    if along == "hessian":  # the library finds, signs and describes the eigenvectors
        explicit = click.get_current_context().get_parameter_source("norm").name != "DEFAULT"
        dirs, found = hessian_surface_directions(
            model, bundle, len(dirs), norm=norm if explicit else "none", ignore=ignore,
            kind=kind, loss=trained_loss(info, opts["loss"]), seed=seed, device=opts["device"])
    cosine = direction_cosine(dirs[0], dirs[1]) if len(dirs) == 2 else None
    if orthogonalize and y is None:
        _note("warning: --orthogonalize has no effect on a 1-D line (one direction)")
    recipe = {"type": "random", "norm": norm, "ignore": ignore, "kind": kind, "seed": seed,
              "orthogonalize": orthogonalize, "checkpoint": str(checkpoint),
              "checkpoint_sha256": digest, "cosine": cosine, **found}
    if cosine is not None:
        _note(f"cosine between the directions: {cosine:.3g}")
    _run(model, bundle, dirs, x, y, opts, info, recipe)


@click.command("interpolate")
@click.argument("checkpoint_a", type=click.Path(), callback=checkpoint_callback)
@click.argument("checkpoint_b", type=click.Path(), callback=checkpoint_callback)
@dataset_options
@_range_option("alpha", "-1:2:61", "Interpolation coefficients, min:max:num (0 = A, 1 = B).")
@click.option("--kind", type=click.Choice(["weights", "states"]), default="states",
              show_default=True, help="states: interpolate BatchNorm statistics too.")
@click.option("--labels", "anchor_names", default=None,
              help="Names of A and B on figures, comma-separated (default: run folder or "
                   "file names).")
@surface_options
@wraps_threads
def interpolate_command(checkpoint_a, checkpoint_b, dataset, data_root, train_subset,
                        test_subset, data_seed, alpha, kind, anchor_names, opts):
    """Metrics along (1 - alpha) A + alpha B (A's dataset unless given)."""
    from landscape.directions import interpolation_direction

    model_a, info, digest_a = _load(checkpoint_a)
    model_b, _, digest_b = _load(checkpoint_b)
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    dirs = [interpolation_direction(model_a, model_b, kind=kind)]
    recipe = {"type": "interpolation", "kind": kind, "checkpoint": str(checkpoint_a),
              "checkpoint_sha256": digest_a, "checkpoint_b": str(checkpoint_b),
              "checkpoint_b_sha256": digest_b}
    anchors = {"coords": [[0.0], [1.0]],
               "labels": _anchor_labels([checkpoint_a, checkpoint_b], anchor_names)}
    _run(model_a, bundle, dirs, alpha, None, opts, info, recipe, anchors=anchors)


@click.command("plane")
@click.argument("checkpoint_a", type=click.Path(), callback=checkpoint_callback)
@click.argument("checkpoint_b", type=click.Path(), callback=checkpoint_callback)
@click.argument("checkpoint_c", type=click.Path(), callback=checkpoint_callback)
@dataset_options
@_range_option("x", None, "Axis along B - A, min:max:num (default: the models plus margin, a "
              "grid point on each model).")
@_range_option("y", None, "Second axis, min:max:num (default: the models plus margin).")
@click.option("--orthogonal", is_flag=True,
              help="Second axis: the part of C - A orthogonal to B - A, same length as B - A.")
@click.option("--kind", type=click.Choice(["weights", "states"]), default="states",
              show_default=True, help="states: include BatchNorm statistics.")
@click.option("--labels", "anchor_names", default=None,
              help="Names of A, B and C on figures, comma-separated (default: run folder or "
                   "file names).")
@surface_options
@wraps_threads
def plane_command(checkpoint_a, checkpoint_b, checkpoint_c, dataset, data_root, train_subset,
                  test_subset, data_seed, x, y, orthogonal, kind, anchor_names, opts):
    """Surface on the plane through A, B and C (origin A, axes B - A and C - A)."""
    from landscape.directions import plane_directions
    from landscape.grid import auto_axis

    loaded = [_load(p) for p in (checkpoint_a, checkpoint_b, checkpoint_c)]
    (model_a, info, _), models = loaded[0], [m for m, _, _ in loaded]
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    dirs, coords = plane_directions(*models, kind=kind, orthogonal=orthogonal)
    # Default grid through the three models: the losses at their marks are their own.
    x = auto_axis(coords[:, 0], through=True) if x is None else x
    y = auto_axis(coords[:, 1], through=True) if y is None else y
    recipe = {"type": "plane", "kind": kind, "orthogonal": orthogonal,
              "checkpoint": str(checkpoint_a), "checkpoint_sha256": loaded[0][2],
              "checkpoints": [str(p) for p in (checkpoint_a, checkpoint_b, checkpoint_c)],
              "checkpoints_sha256": [d for _, _, d in loaded]}
    anchors = {"coords": coords,
               "labels": _anchor_labels([checkpoint_a, checkpoint_b, checkpoint_c],
                                        anchor_names)}
    _run(model_a, bundle, dirs, x, y, opts, info, recipe, anchors=anchors)


@click.command("trajectory")
@click.argument("run_dir", type=click.Path(file_okay=False))
@dataset_options
@_range_option("x", None, "First PCA axis, min:max:num (default: the path plus margin).")
@_range_option("y", None, "Second PCA axis, min:max:num (default: the path plus margin).")
@click.option("--kind", type=click.Choice(["weights", "states"]), default="weights",
              show_default=True, help="states: include BatchNorm statistics in the PCA.")
@surface_options
@wraps_threads
def trajectory_command(run_dir, dataset, data_root, train_subset, test_subset, data_seed, x,
                       y, kind, opts):
    """Surface on the top-2 PCA plane of a training run, with its path (stored in
    /trajectory: coords, explained_variance_ratio, labels, epochs)."""
    from landscape.checkpoint import run_checkpoints
    from landscape.directions import trajectory_pca
    from landscape.grid import auto_axis

    paths, final, epochs = run_checkpoints(run_dir)
    model, info, digest = _load(str(final))
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    pca = trajectory_pca(paths, final=final, kind=kind)
    x = auto_axis(pca.coords[:, 0]) if x is None else x
    y = auto_axis(pca.coords[:, 1]) if y is None else y
    ratio = pca.explained_variance_ratio
    _note(f"explained variance: {ratio[0]:.3f}, {ratio[1]:.3f}")
    trajectory = {"coords": pca.coords, "explained_variance_ratio": ratio,
                  "labels": [p.name for p in paths], "epochs": epochs}
    recipe = {"type": "trajectory_pca", "kind": kind, "checkpoint": str(final),
              "checkpoint_sha256": digest, "run_dir": str(run_dir),
              "explained_variance_ratio": ratio.tolist(), "checkpoints": len(paths)}
    _run(model, bundle, pca.directions, x, y, opts, info, recipe, trajectory=trajectory)


def register(group: click.Group) -> None:
    """Add ``surface``, ``interpolate``, ``plane`` and ``trajectory`` to ``group``."""
    for command in (surface_command, interpolate_command, plane_command, trajectory_command):
        group.add_command(command)
