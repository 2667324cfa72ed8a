"""``landscape surface | interpolate | plane | trajectory``: loss surfaces into HDF5 files.

Each command builds directions (saved once beside the output as ``OUT.directions.h5``),
then fills the surface file point by point (``landscape.compute_surface``), checkpointing it
atomically so that ``--resume`` continues an interrupted run.

Under torchrun (``torchrun --nproc-per-node N -m landscape surface ...``) the grid points are
shared by the ranks (``landscape.distributed``): every rank builds the same directions, rank 0
alone writes the directions and surface files and prints; ``--resume`` works with any number
of ranks.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import click

from .common import bundle_from, dataset_options, device_option, parse_range, wraps_threads

METRIC_NAMES = ("train_loss", "train_acc", "test_loss", "test_acc")


# ----------------------------------------------------------------------------------------
# option helpers


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
                  "dist_timeout", "device")


def surface_options(func):
    """Options shared by the surface commands, handed to the command as one ``opts`` dict
    (after refusing an existing output that is neither resumed nor forced)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        opts = {name: kwargs.pop(name) for name in SHARED_OPTIONS}
        _check_out(opts["out"], opts["resume"], opts["force"], _inputs(kwargs))
        _check_numerics(opts)
        return func(*args, opts=opts, **kwargs)

    options = [
        click.option("--metrics", default="train_loss,train_acc", callback=_metrics,
                     show_default=True, help="Comma-separated: " + ", ".join(METRIC_NAMES)),
        click.option("--loss", type=click.Choice(["cross_entropy", "mse"]), default=None,
                     help="Loss (default: the one the checkpoint was trained with, else "
                          "cross_entropy)."),
        click.option("--out", type=click.Path(dir_okay=False), required=True,
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
        click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=1800.0, show_default=True,
                     help="Under torchrun: seconds a rank waits for the others before the run "
                          "stops and names the ranks that did not answer."),
    ]
    for opt in reversed(options):
        wrapper = opt(wrapper)
    return device_option(wrapper)


def directions_file_for(out: str | Path) -> Path:
    """``surf.h5`` -> ``surf.directions.h5`` (beside the surface file)."""
    out = Path(out)
    stem = out.stem if out.suffix.lower() in (".h5", ".hdf5") else out.name
    return out.with_name(f"{stem}.directions.h5")


def _inputs(kwargs: dict[str, Any]) -> list[Path]:
    """The files a surface command reads: its checkpoints, or a run folder's."""
    paths = [Path(kwargs[k]) for k in ("checkpoint", "checkpoint_a", "checkpoint_b",
                                       "checkpoint_c") if kwargs.get(k)]
    if kwargs.get("run_dir"):
        run = Path(kwargs["run_dir"])
        paths += [run / "model.pt", *sorted((run / "checkpoints").glob("*.pt"))]
    return paths


def _check_out(out: str, resume: bool, force: bool, inputs: list[Path] = ()) -> None:
    """Refuse an existing output, or one that would replace an input, before any work."""
    from landscape.errors import StoreError

    from .common import guard_output

    path = Path(out)
    for written, option in ((path, "--out"), (directions_file_for(path), "--out's directions")):
        guard_output(written, inputs, force=True, option=option)
    if path.exists() and not path.is_file():
        raise StoreError(f"output {out!r} exists and is not a file")
    if path.exists() and not resume and not force:
        raise StoreError(f"{out!r} already exists: continue it with --resume or overwrite it "
                         "with --force")
    if resume and force:
        raise StoreError("use --resume or --force, not both")


MAX_POINTS = 10_000_000
"""Most grid points a surface command accepts (a 3,162 x 3,162 plane)."""


def _check_numerics(opts: dict[str, Any]) -> None:
    """Refuse a device or precision that cannot work, before anything is written."""
    from landscape._util import pick_device
    from landscape.evaluate import _check_precision

    _check_precision(opts["precision"], pick_device(opts["device"]))


def _check_grid(x, y) -> None:
    from landscape.errors import LandscapeError

    points = len(x) * (1 if y is None else len(y))
    if points > MAX_POINTS:
        raise LandscapeError(f"the grid has {points:,} points, more than {MAX_POINTS:,}: use "
                             "fewer points per axis")


def _load(path: str):
    from landscape import load_checkpoint
    from landscape._util import sha256_file

    model, info = load_checkpoint(path)
    return model, info, sha256_file(path)


def _labels(paths: list[str]) -> list[str]:
    """Short names of checkpoints: file names, with their folder when file names repeat
    (``runs/sb/model.pt`` and ``runs/lb/model.pt`` -> ``sb/model.pt``, ``lb/model.pt``)."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(Path(p).parent.name) / Path(p).name) for p in paths]


def _default_loss(loss: str | None, info: dict[str, Any]) -> str:
    if loss is not None:
        return loss
    config = (info.get("extra") or {}).get("config") or {}
    return config.get("loss", "cross_entropy")


def _auto_axis(values, num: int = 21):
    """An axis covering ``values`` (and 0) with a quarter of the span as margin."""
    import numpy as np

    values = np.concatenate([np.asarray(values, dtype=float).ravel(), [0.0]])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.25 * (hi - lo) if hi > lo else 1.0
    return np.linspace(lo - pad, hi + pad, num)


# ----------------------------------------------------------------------------------------
# the shared run


def _save_or_reuse_directions(path: Path, dirs, prov: dict[str, Any], force: bool
                              ) -> tuple[bool, Path | None]:
    """Write the directions file, or check that the existing one holds these directions.

    Returns:
        (True when the file was written by this call, the replaced file moved aside, if any:
        put it back if the run fails before the surface file is written).
    """
    from landscape.directions import directions_sha256, load_directions, save_directions
    from landscape.errors import StoreError

    digest = directions_sha256(dirs)
    if path.exists():
        try:
            _, info = load_directions(path)
            same = info["sha256"] == digest
        except StoreError:
            if not force:
                raise
            same = False
        if same:
            return False, None
        if not force:
            raise StoreError(f"directions file {str(path)!r} holds other directions than these "
                             "options make (sha256 differs); use --force to replace it or "
                             "another --out")
        aside = path.with_name(f".{path.name}.replaced")
        os.replace(path, aside)
        try:
            save_directions(path, dirs, prov)
        except BaseException:
            os.replace(aside, path)
            raise
        return True, aside
    save_directions(path, dirs, prov)
    return True, None


def _run(model, bundle, dirs, x, y, opts: dict[str, Any], dir_prov: dict[str, Any],
         prov: dict[str, Any], trajectory=None, anchors=None):
    """Save directions, compute the surface into ``opts['out']``, print the summary.

    Under torchrun the ranks share the points; only rank 0 writes files and prints.
    """
    from landscape.distributed import PeerError, init_distributed, shutdown
    from landscape.surface import summary_line

    _check_grid(x, y)
    context = init_distributed(opts["device"], opts["dist_timeout"])
    try:
        surface, complete = _compute(model, bundle, dirs, x, y, opts, dir_prov, prov,
                                     trajectory, anchors, context)
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
    if complete:
        click.echo(f"{opts['out']}: already complete, nothing computed ({summary_line(surface)})")
    else:
        click.echo(f"{opts['out']}: {summary_line(surface)}")
    return surface


def _compute(model, bundle, dirs, x, y, opts, dir_prov, prov, trajectory, anchors, context):
    from landscape.distributed import compute_surface_distributed, run_on_main
    from landscape.store import load_surface
    from landscape.surface import compute_surface

    out = Path(opts["out"])
    dpath = directions_file_for(out)

    def prepare() -> tuple[tuple | None, bool, bool, Path | None]:
        complete = False
        if opts["resume"] and out.exists():
            # a damaged file is reported before anything is written
            complete = load_surface(out).complete
        before = _stat(out)
        wrote, aside = _save_or_reuse_directions(dpath, dirs, dir_prov, opts["force"])
        return before, complete, wrote, aside

    before, complete, wrote, aside = (run_on_main(context, prepare, "writing of the directions")
                                      or (None, False, False, None))
    settings = dict(metrics=opts["metrics"], store=out, resume=opts["resume"],
                    force=opts["force"], loss=opts["loss"],
                    bn_recalibrate=opts["bn_recalibrate"], precision=opts["precision"],
                    checkpoint_seconds=opts["checkpoint_seconds"], progress=not opts["quiet"],
                    seed=prov.get("seed", 0), provenance=prov, hessian=opts["hessian"],
                    batch_points=opts["batch_points"], directions_path=str(dpath),
                    trajectory=trajectory, anchors=anchors, channels_last=opts["channels_last"])
    try:
        if context is None:
            surface = compute_surface(model, bundle, dirs, x, y, device=opts["device"],
                                      **settings)
        else:
            surface = compute_surface_distributed(model, bundle, dirs, x, y, context=context,
                                                  **settings)
    except BaseException:
        if wrote and _stat(out) == before:  # the surface file was never written: no debris
            dpath.unlink(missing_ok=True)
            if aside is not None:  # --force replaced a directions file: put it back
                os.replace(aside, dpath)
                aside = None
        raise
    finally:
        if aside is not None:
            aside.unlink(missing_ok=True)
    return surface, complete


def _note(message: str) -> None:
    """A line on stderr, from rank 0 only under torchrun."""
    from landscape.distributed import is_main_process

    if is_main_process():
        click.echo(message, err=True)


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# ----------------------------------------------------------------------------------------
# commands


@click.command("surface")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
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
    """Loss surface around CHECKPOINT along random filter-normalized directions."""
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
            kind=kind, loss=_default_loss(opts["loss"], info), seed=seed, device=opts["device"])
    cosine = direction_cosine(dirs[0], dirs[1]) if len(dirs) == 2 else None
    if orthogonalize and y is None:
        _note("warning: --orthogonalize has no effect on a 1-D line (one direction)")
    recipe = {"type": "random", "norm": norm, "ignore": ignore, "kind": kind, "seed": seed,
              "orthogonalize": orthogonalize, "checkpoint": str(checkpoint),
              "checkpoint_sha256": digest, "cosine": cosine, **found}
    if cosine is not None:
        _note(f"cosine between the directions: {cosine:.3g}")
    prov = dict(recipe, dataset=bundle.spec, model=info["model"])
    opts["loss"] = _default_loss(opts["loss"], info)
    _run(model, bundle, dirs, x, y, opts, recipe, prov)


@click.command("interpolate")
@click.argument("checkpoint_a", type=click.Path(dir_okay=False))
@click.argument("checkpoint_b", type=click.Path(dir_okay=False))
@dataset_options
@_range_option("alpha", "-1:2:61", "Interpolation coefficients, min:max:num (0 = A, 1 = B).")
@click.option("--kind", type=click.Choice(["weights", "states"]), default="states",
              show_default=True, help="states: interpolate BatchNorm statistics too.")
@surface_options
@wraps_threads
def interpolate_command(checkpoint_a, checkpoint_b, dataset, data_root, train_subset,
                        test_subset, data_seed, alpha, kind, opts):
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
    anchors = {"coords": [[0.0], [1.0]], "labels": _labels([checkpoint_a, checkpoint_b])}
    opts["loss"] = _default_loss(opts["loss"], info)
    _run(model_a, bundle, dirs, alpha, None, opts, recipe,
         dict(recipe, dataset=bundle.spec, model=info["model"]), anchors=anchors)


@click.command("plane")
@click.argument("checkpoint_a", type=click.Path(dir_okay=False))
@click.argument("checkpoint_b", type=click.Path(dir_okay=False))
@click.argument("checkpoint_c", type=click.Path(dir_okay=False))
@dataset_options
@_range_option("x", None, "Axis along B - A, min:max:num (default: the models plus margin).")
@_range_option("y", None, "Second axis, min:max:num (default: the models plus margin).")
@click.option("--orthogonal", is_flag=True,
              help="Second axis: the part of C - A orthogonal to B - A, same length as B - A.")
@click.option("--kind", type=click.Choice(["weights", "states"]), default="states",
              show_default=True, help="states: include BatchNorm statistics.")
@surface_options
@wraps_threads
def plane_command(checkpoint_a, checkpoint_b, checkpoint_c, dataset, data_root, train_subset,
                  test_subset, data_seed, x, y, orthogonal, kind, opts):
    """Surface on the plane through A, B and C (origin A, axes B - A and C - A)."""
    from landscape.directions import plane_directions

    loaded = [_load(p) for p in (checkpoint_a, checkpoint_b, checkpoint_c)]
    (model_a, info, _), models = loaded[0], [m for m, _, _ in loaded]
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    dirs, coords = plane_directions(*models, kind=kind, orthogonal=orthogonal)
    x = _auto_axis(coords[:, 0]) if x is None else x
    y = _auto_axis(coords[:, 1]) if y is None else y
    recipe = {"type": "plane", "kind": kind, "orthogonal": orthogonal,
              "checkpoint": str(checkpoint_a), "checkpoint_sha256": loaded[0][2],
              "checkpoints": [str(p) for p in (checkpoint_a, checkpoint_b, checkpoint_c)],
              "checkpoints_sha256": [d for _, _, d in loaded]}
    anchors = {"coords": coords, "labels": _labels([checkpoint_a, checkpoint_b, checkpoint_c])}
    opts["loss"] = _default_loss(opts["loss"], info)
    _run(model_a, bundle, dirs, x, y, opts, recipe,
         dict(recipe, dataset=bundle.spec, model=info["model"]), anchors=anchors)


def _run_checkpoints(run_dir: str) -> tuple[list[Path], Path]:
    from landscape.errors import LandscapeError

    root = Path(run_dir)
    if not root.is_dir():
        raise LandscapeError(f"run folder {run_dir!r} does not exist")
    paths = sorted((root / "checkpoints").glob("*.pt"))
    final = root / "model.pt"
    if not final.is_file():
        raise LandscapeError(f"{run_dir!r} has no model.pt (is it a finished `landscape train` "
                             "run folder?)")
    if len(paths) < 2:
        raise LandscapeError(f"{run_dir!r} has {len(paths)} checkpoints under checkpoints/; "
                             "trajectory PCA needs at least 2 (train with --checkpoint-every)")
    return paths, final


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
    from landscape.directions import trajectory_pca

    paths, final = _run_checkpoints(run_dir)
    model, info, digest = _load(str(final))
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    pca = trajectory_pca(paths, final=final, kind=kind)
    x = _auto_axis(pca.coords[:, 0]) if x is None else x
    y = _auto_axis(pca.coords[:, 1]) if y is None else y
    ratio = pca.explained_variance_ratio
    _note(f"explained variance: {ratio[0]:.3f}, {ratio[1]:.3f}")
    epochs = [int(m.group(1)) if (m := re.search(r"(\d+)", p.stem)) else -1 for p in paths]
    trajectory = {"coords": pca.coords, "explained_variance_ratio": ratio,
                  "labels": [p.name for p in paths], "epochs": epochs}
    recipe = {"type": "trajectory_pca", "kind": kind, "checkpoint": str(final),
              "checkpoint_sha256": digest, "run_dir": str(run_dir),
              "explained_variance_ratio": ratio.tolist(), "checkpoints": len(paths)}
    opts["loss"] = _default_loss(opts["loss"], info)
    _run(model, bundle, pca.directions, x, y, opts, recipe,
         dict(recipe, dataset=bundle.spec, model=info["model"]), trajectory=trajectory)


def register(group: click.Group) -> None:
    """Add ``surface``, ``interpolate``, ``plane`` and ``trajectory`` to ``group``."""
    for command in (surface_command, interpolate_command, plane_command, trajectory_command):
        group.add_command(command)
