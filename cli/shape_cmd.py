"""``landscape shape`` (V or W basin of a surface file) and ``landscape sharpness`` (sharpness
measures of a checkpoint). Commands of this module are registered by ``register``."""
from __future__ import annotations

import math

import click

from .common import (MAX_COUNT, bundle_from, checkpoint_callback, code_options,
                     dataset_options, device_option, echo_table, guard_output,
                     check_suffix, main_output_lock, wraps_threads)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@click.command("shape")
@click.argument("surface", type=click.Path(dir_okay=False))
@click.option("--metric", default="train_loss", show_default=True,
              help="Which loss of the surface (train_loss, test_loss, ...); accuracies are "
                   "refused.")
@click.option("--rise", type=float, default=0.1, show_default=True,
              help="The central basin ends where the metric first rises this much above the "
                   "centre.")
@click.option("--threshold", type=float, default=None,
              help="Absolute depth a minimum needs to count as a basin (default: the relative "
                   "rule, depth >= RELATIVE x (value + FLOOR), set by the loss at each minimum "
                   "and not by how far the grid reaches).")
@click.option("--relative", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Relative rule: the barrier must exceed the minimum's loss by this factor "
                   "(1: the loss at least doubles).")
@click.option("--floor", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Relative rule: added to the minimum's loss, so that near-zero losses still "
                   "need a barrier this high.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the numbers to this JSON file.")
@click.option("--diagram", type=click.Path(dir_okay=False), default=None,
              help="Write the persistence pairs (minimum, saddle and its coordinates, the "
                   "minimum it merges into), the roughness and the basin rule to this JSON "
                   "file.")
@click.option("--diagram-figure", type=click.Path(dir_okay=False), default=None,
              help="Draw the persistence diagram and the merge tree into this PNG/PDF/SVG.")
@click.option("--force", is_flag=True,
              help="Overwrite an existing --json, --diagram or --diagram-figure file.")
def shape_command(surface, metric, rise, threshold, relative, floor, json_out, diagram,
                  diagram_figure, force):
    """V (one funnel) or W (several basins): basin count, width and curvature of SURFACE,
    and its roughness (the share of its relief in minima too shallow to be basins)."""
    from landscape.util import provenance, sha256_file, write_json
    from landscape.errors import LandscapeError
    from landscape.shape import surface_diagram, surface_shape
    from landscape.store import load_surface

    if not (rise > 0 and math.isfinite(rise)):
        raise click.BadParameter(f"{rise}: must be a positive number", param_hint="--rise")
    if threshold is not None and not (threshold >= 0 and math.isfinite(threshold)):
        raise click.BadParameter(f"{threshold}: must be >= 0", param_hint="--threshold")
    _guard_outputs(surface, json_out, diagram, diagram_figure, force)
    surf = load_surface(surface)
    bad = _nonfinite_points(surface, surf, metric)
    try:
        shape = surface_shape(surf, metric, rise=rise, threshold=threshold,
                              relative=relative, floor=floor)
        pairs = surface_diagram(surf, metric, threshold=threshold, relative=relative,
                                floor=floor)
    except LandscapeError as exc:
        raise LandscapeError(f"{surface}: {exc}") from None
    _echo_shape(surface, metric, shape)
    shallow = len(pairs.pairs) - sum(pairs.basins)
    click.echo(f"roughness      {pairs.roughness:.3g}  (share of the relief in {shallow} "
               f"minim{'um' if shallow == 1 else 'a'} below the basin rule)")
    _warn_grid(shape)
    head = {"surface": str(surface), "surface_sha256": sha256_file(surface), "metric": metric,
            "nonfinite_points": bad}
    for path, body in ((json_out, {"shape": shape.to_dict()}),
                       (diagram, {"diagram": pairs.to_dict()})):
        if path:
            write_json(path, {**head, **body, "provenance": provenance()})
            click.echo(f"wrote {path}", err=True)
    if diagram_figure:
        from landscape.figures import plot_persistence

        plot_persistence(pairs.to_dict(), out=diagram_figure,
                         title=f"{surface} ({metric}): {sum(pairs.basins)} basin"
                               f"{'s' if sum(pairs.basins) != 1 else ''}, roughness "
                               f"{pairs.roughness:.3g}")
        click.echo(f"wrote {diagram_figure}", err=True)


def _guard_outputs(surface: str, json_out: str | None, diagram: str | None,
                   figure: str | None, force: bool) -> None:
    """Refuse bad outputs before any work; hold a lock on each one to the end."""
    import os

    from landscape.errors import LandscapeError

    given = [(p, o) for p, o in ((json_out, "--json"), (diagram, "--diagram"),
                                 (figure, "--diagram-figure")) if p]
    seen: dict[str, str] = {}
    for path, option in given:
        if os.path.abspath(path) in seen:
            raise LandscapeError(f"{seen[os.path.abspath(path)]} and {option} are the same "
                                 f"file ({path}): give different paths")
        seen[os.path.abspath(path)] = option
    if figure:
        from landscape.figures import figure_format

        figure_format(figure)
    for path, option in given:
        if path:
            guard_output(path, inputs=(surface,), force=force, option=option)
            click.get_current_context().with_resource(main_output_lock(path))


def _nonfinite_points(path: str, surf, metric: str) -> int:
    """Warn about computed points whose value is NaN or infinite; refuse a verdict when they
    are the majority (the basins would be drawn by the few finite points left).

    Returns:
        The number of such points.
    """
    import numpy as np

    from landscape.errors import LandscapeError

    if metric not in surf.metrics:
        return 0  # surface_shape names the metrics the file has
    values = np.asarray(surf.metrics[metric])
    bad = int(np.sum(~np.isfinite(values) & surf.done))
    total = int(values.size)
    if 2 * bad > total:
        raise LandscapeError(f"{path}: {bad} of {total} points of {metric} are NaN or "
                             "infinite (the loss diverged there): too few finite values for a "
                             "basin shape")
    if bad:
        click.echo(f"warning: {bad} of {total} points of {metric} are NaN or infinite and "
                   "count as walls: basins next to them may be cut short", err=True)
    return bad


def _echo_shape(path: str, metric: str, shape) -> None:
    axes = "xy"[:shape.ndim]
    click.echo(f"{path}: {metric} on a {shape.ndim}-D grid")
    click.echo(f"label          {shape.label}  ({shape.n_basins} basin"
               f"{'' if shape.n_basins == 1 else 's'}; a basin needs {shape.rule})")
    center = ", ".join(f"{c:.4g}" for c in shape.center)
    click.echo(f"centre         ({center})  value {shape.center_value:.6g}")
    click.echo(f"width          {_fmt(shape.width)}  (loss +{shape.rise:g}; mean over "
               f"directions; '-' = wider than the grid)")
    for name, w, c in zip(axes, shape.axis_widths, shape.curvature):
        click.echo(f"along {name}        width {_fmt(w)}  curvature {c:.4g}")
    if shape.minima:
        # The deepest basin never merges: its depth is the grid's range, it has no barrier.
        rows = [(k + 1, ", ".join(f"{v:.4g}" for v in at), f"{value:.6g}",
                 "-" if k == 0 else f"{value + depth:.6g}", "-" if k == 0 else f"{depth:.4g}")
                for k, (at, value, depth) in enumerate(shape.minima)]
        echo_table(rows, ("basin", "at", "value", "saddle", "barrier"))


def _warn_grid(shape) -> None:
    """Warnings on stderr where the grid cannot support the numbers printed."""
    if shape.min_on_edge:
        at = ", ".join(f"{v:.4g}" for v in shape.min_at)
        click.echo(f"warning: the lowest value lies on the grid's edge at ({at}): the minimum "
                   "may be outside the grid; widen the range", err=True)
    if not shape.width_resolved:
        steps = ", ".join(f"{h:.4g}" for h in shape.grid_steps)
        click.echo(f"warning: the basin width is not resolved by the grid (below two grid "
                   f"steps, step {steps}): width and curvature are unreliable; use a finer "
                   "grid", err=True)


def _eps_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give numbers separated by commas, e.g. 1e-3,5e-4",
                                 param_hint="--eps") from None
    if not values or not all(v > 0 and math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r}: every eps must be a positive number",
                                 param_hint="--eps")
    return values


def _nonnegative(value: float, name: str, zero: str = "0 skips it") -> float:
    if not (value >= 0 and math.isfinite(value)):
        raise click.BadParameter(f"{value}: must be >= 0 ({zero})", param_hint=name)
    return value


@click.command("sharpness")
@click.argument("checkpoint", type=click.Path(), callback=checkpoint_callback)
@dataset_options
@click.option("--split", type=click.Choice(["train", "test"]), default="train",
              show_default=True, help="The loss is the mean over this whole split.")
@click.option("--loss", type=click.Choice(["cross_entropy", "mse"]), default=None,
              help="Loss (default: the one the checkpoint was trained with, else cross_entropy).")
@click.option("--eps", "eps_text", default="1e-3,5e-4", show_default=True,
              help="Keskar box sizes, comma-separated.")
@click.option("--subspace-dim", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also measure Keskar sharpness in a random subspace of this dimension "
                   "(at most the number of parameters; 0 skips it).")
@click.option("--maxiter", type=click.IntRange(min=1, max=MAX_COUNT), default=10, show_default=True,
              help="L-BFGS-B iterations per Keskar measure.")
@click.option("--adaptive-rho", type=float, default=0.05, show_default=True,
              help="Radius of the adaptive l2 ball (0 skips it).")
@click.option("--adaptive-rho-inf", type=float, default=1e-3, show_default=True,
              help="Radius of the adaptive l-inf ball (0 skips it).")
@click.option("--average-rho", type=float, default=0.05, show_default=True,
              help="Relative noise of average-case adaptive sharpness: each weight gets "
                   "Gaussian noise of std average-rho * (|w| + eta) (0 skips it).")
@click.option("--eta", type=float, default=0.01, show_default=True,
              help="Adaptive scale is |w| + eta (>= 0; with 0, zero weights cannot move).")
@click.option("--steps", type=click.IntRange(min=1, max=MAX_COUNT), default=10, show_default=True,
              help="Projected-ascent steps for adaptive sharpness.")
@click.option("--samples", type=click.IntRange(min=0, max=MAX_COUNT), default=10, show_default=True,
              help="Random draws for average-case adaptive sharpness (0 skips it; else >= 2).")
@click.option("--reparam-alpha", type=float, default=None,
              help="Also run the reparametrization check: rescale the first pair of layers "
                   "joined by a ReLU by this factor and its inverse, and show which measures "
                   "change.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the subspace, random starts and draws.")
@device_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write every number, with provenance, to this JSON file.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@code_options
@wraps_threads
def sharpness_command(checkpoint, dataset, data_root, train_subset, test_subset, data_seed,
                      out, force, quiet, device, **options):
    """Keskar epsilon-sharpness and adaptive sharpness of CHECKPOINT (on its own dataset
    unless --dataset says otherwise)."""
    from landscape import load_checkpoint
    from landscape.util import pick_device
    from landscape.errors import LandscapeError
    from landscape.sharpness import (check_subspace_dim, measure_sharpness,
                                     reparametrization_report)

    opts = _checked(options)
    if out:
        guard_output(out, inputs=(checkpoint,), force=force, option="--out")
        check_suffix(out, (".json",), "JSON")
        click.get_current_context().with_resource(main_output_lock(out))
    model, info = load_checkpoint(checkpoint)
    check_subspace_dim(model, opts["subspace_dim"])
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    opts["loss"] = (opts["loss"] or (info.get("extra") or {}).get("config", {}).get("loss")
                    or "cross_entropy")
    dev = pick_device(device)
    model.to(dev)
    split = opts["split"]
    click.echo(f"sharpness of {checkpoint} on {bundle.name} {split} "
               f"({len(bundle.split(split)[1])} examples, full batch, eval mode, "
               f"{opts['loss']}) on {dev}", err=True)
    summary = measure_sharpness(
        model, bundle, eps=opts["eps"], subspace_dim=opts["subspace_dim"],
        rho=opts["adaptive_rho"], rho_inf=opts["adaptive_rho_inf"], rho_avg=opts["average_rho"],
        eta=opts["eta"], samples=opts["samples"], seed=opts["seed"], split=split,
        loss=opts["loss"], maxiter=opts["maxiter"], steps=opts["steps"], progress=not quiet)
    if not math.isfinite(summary.base_loss):
        raise LandscapeError(f"the {split} loss of {checkpoint} is {summary.base_loss}: "
                             "sharpness of a non-finite loss is undefined")
    click.echo(f"{split} loss {summary.base_loss:.6g}")
    echo_table(summary.rows(), ("measure", "setting", "value", "max loss", "seconds"))
    report = None
    if opts["reparam_alpha"] is not None:
        report = reparametrization_report(
            model, bundle, opts["reparam_alpha"], eps=opts["eps"][0],
            rho=opts["adaptive_rho"] or 0.05, eta=opts["eta"], steps=opts["steps"], split=split,
            loss=opts["loss"], seed=opts["seed"], maxiter=opts["maxiter"])
        _echo_reparam(report)
    if out:
        _write_sharpness(out, checkpoint, bundle, opts, summary, report, dev)


def _checked(options: dict) -> dict:
    """Validate the sharpness options that click's types cannot."""
    opts = dict(options)
    opts["eps"] = _eps_list(opts.pop("eps_text"))
    for key in ("adaptive_rho", "adaptive_rho_inf", "average_rho"):
        _nonnegative(opts[key], "--" + key.replace("_", "-"))
    _nonnegative(opts["eta"], "--eta", zero="0: the scale is |w| alone")
    if opts["samples"] == 1:
        raise click.BadParameter("1: use 0 (skip) or at least 2", param_hint="--samples")
    alpha = opts["reparam_alpha"]
    if alpha is not None and not (alpha > 0 and math.isfinite(alpha)):
        raise click.BadParameter(f"{alpha}: must be a positive number",
                                 param_hint="--reparam-alpha")
    return opts


def _write_sharpness(out, checkpoint, bundle, opts, summary, report, dev) -> None:
    from landscape.util import provenance, sha256_file, write_json

    write_json(out, {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                     "dataset": bundle.spec, "options": {**opts, "eps": list(opts["eps"])},
                     "sharpness": summary.to_dict(),
                     "reparametrization": report.to_dict() if report else None,
                     "provenance": provenance(device=str(dev))})
    click.echo(f"wrote {out}", err=True)


def _echo_reparam(report) -> None:
    click.echo(f"\nreparametrization: layer {report.layer_a} x {report.alpha:g}, layer "
               f"{report.layer_b} x 1/{report.alpha:g} (outputs change by at most "
               f"{report.output_max_abs_diff:.2g})")
    rows = [(m.name, _fmt(m.before, 6), _fmt(m.after, 6), _fmt(m.relative_change, 3),
             "should not change" if m.invariant else "may change")
            for m in report.measures]
    echo_table(rows, ("measure", "before", "after", "relative change", "expected"))


def register(group: click.Group) -> None:
    """Add ``shape`` and ``sharpness`` to the main group."""
    group.add_command(shape_command)
    group.add_command(sharpness_command)
