"""``landscape plot`` (2-D figures) and ``landscape render`` (3-D scenes, animations, VTK)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import split_names

PLOT_KINDS = ("line", "contour", "filled", "heatmap", "eig-ratio", "density", "trajectory",
              "history", "eigenvalues", "sharpness")
JSON_KINDS = ("density", "history", "eigenvalues", "sharpness")
"""What a .json input can be drawn as: a spectrum file's density or eigenvalues, or a
training run's history.json."""
NAMES_HELP = ("once with commas (a comma inside a name: \\,), or once per name")


def _split_labels(labels: tuple[str, ...], count: int) -> list[str] | None:
    return split_names(labels, count, "--labels")


def _size(text: str | None, what: str, cast=float) -> tuple | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        w, h = (cast(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT (e.g. {what})",
                                 param_hint="--size") from None
    if w <= 0 or h <= 0:
        raise click.BadParameter(f"{text!r}: width and height must be positive",
                                 param_hint="--size")
    return w, h


def _axis_names(names: tuple[str, ...]) -> list[str] | None:
    axes = split_names(names, option="--axis-names")
    if axes and len(axes) > 2:
        raise click.BadParameter(f"{len(axes)} names for at most 2 directions",
                                 param_hint="--axis-names")
    return axes


MAX_PIXELS = 30_000
"""Longest side of a figure in pixels (matplotlib cannot draw beyond 2^16)."""
MAX_LEVELS = 1_000
"""Most contour levels (more are not told apart)."""
MAX_FRAMES = 3_600
"""Most frames of an orbit animation (every frame is held in memory until it is written)."""
MOVIE_BYTES = 4 << 30
"""Most memory the frames of an orbit animation may take."""


def _check_pixels(figsize: tuple | None, dpi: int) -> None:
    if figsize and max(figsize) * dpi > MAX_PIXELS:
        raise click.BadParameter(f"{figsize[0]:g}x{figsize[1]:g} inches at {dpi} dpi is "
                                 f"{max(figsize) * dpi:,.0f} pixels across; at most "
                                 f"{MAX_PIXELS:,} (a smaller --size or --dpi)",
                                 param_hint="--size")


def _warn_incomplete(surfaces: list) -> None:
    """One line per surface with points still to compute (they are drawn blank)."""
    import numpy as np

    for s in surfaces:
        if not s.complete:
            click.echo(f"warning: {s.path} is incomplete ({int(np.sum(s.done))} of "
                       f"{s.done.size} points computed): missing points are left blank and "
                       "minima are over the computed points only (finish it with `--resume`)",
                       err=True)


def load_surfaces(paths: tuple[str, ...]) -> list:
    """Surfaces from HDF5 files; anything unreadable becomes one clear LandscapeError."""
    from landscape.errors import LandscapeError
    from landscape.store import load_surface

    surfaces = []
    for path in paths:
        try:
            surfaces.append(load_surface(path))
        except LandscapeError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LandscapeError(f"{path}: not a landscape surface file ({exc})") from None
    return surfaces


def load_density(path: str) -> tuple[Any, Any]:
    """``(grid, density)`` from a JSON file written by ``landscape hessian --density``."""
    from landscape.errors import LandscapeError
    from landscape.figures import density_arrays

    obj = _read_json(path)
    try:
        return density_arrays(obj)
    except LandscapeError as exc:
        raise LandscapeError(f"{path}: {exc}") from None


def _default_kind(inputs: tuple[str, ...], surfaces: list | None) -> str | None:
    """The kind of figure the inputs make by default; None: read the surfaces first."""
    if all(p.lower().endswith(".json") for p in inputs):
        return _json_kind(_read_json(inputs[0]))
    if surfaces is None:
        return None
    return "line" if surfaces[0].ndim == 1 else "contour"


def _read_json(path: str) -> Any:
    """A JSON input, or one clear error."""
    from landscape.errors import LandscapeError

    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LandscapeError(f"{path}: not a JSON file (plot reads spectra that `landscape "
                             "hessian --out spec.json` writes, and runs' history.json)") from None


def _json_kind(obj: Any) -> str:
    """history for a run's history.json; density for a spectrum with one; else eigenvalues."""
    if isinstance(obj, dict) and "epochs" in obj and "status" in obj:
        return "history"
    if isinstance(obj, dict) and obj.get("format") == "landscape-spectrum" \
            and "eigenvalues" in obj and "density" not in obj:
        return "eigenvalues"
    return "density"


HISTORY_METRICS = ("loss", "accuracy")
"""--metric of --kind history: its panels."""
SHARPNESS_METRICS = ("lambda_max", "lambda_max_preconditioned")
"""--metric of --kind sharpness: the tracked eigenvalue to draw."""


def _json_metric(kind: str, metric: str | None) -> tuple[str, str | None]:
    """The kind and metric of .json inputs: ``--metric lambda_max`` on a history draws
    sharpness; a metric the kind does not draw is refused."""
    if metric in SHARPNESS_METRICS and kind == "history":
        kind = "sharpness"
    allowed = {"history": HISTORY_METRICS, "sharpness": SHARPNESS_METRICS}.get(kind, ())
    if metric is not None and metric not in allowed:
        what = f"one of {', '.join(allowed)}" if allowed else "none"
        raise click.BadParameter(f"--kind {kind} does not draw {metric!r} (its metrics: "
                                 f"{what})", param_hint="--metric")
    return kind, metric


def _draw_sharpness(inputs: tuple[str, ...], names: list[str] | None, metric: str | None,
                    log: bool, title: str | None, figsize: tuple | None, out: str,
                    dpi: int) -> None:
    """Tracked eigenvalues of runs' history.json against steps, with each run's threshold
    (from its config.json, when the run folder has one)."""
    from landscape import figures
    from landscape.errors import LandscapeError
    from landscape.tracking import MATRIX_NAMES, threshold_applies
    from landscape.train import run_threshold

    metric = metric or "lambda_max"
    histories, limits, texts, matrices = [], [], [], []
    for path in inputs:
        epochs = load_history_file(path)
        # The preconditioned sharpness is always the Hessian's.
        curvature = _tracked_curvature(path) if metric == "lambda_max" else "hessian"
        if not any(metric in e for e in epochs):
            hint = (" (recorded for rmsprop, adam and adamw runs)"
                    if metric == "lambda_max_preconditioned" else "")
            raise LandscapeError(f"{path}: no {metric} in this history: train with "
                                 f"--track-eigenvalues EVERY{hint}")
        config_file = Path(path).parent / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
        limit, text = (run_threshold(config, epochs[-1], metric)
                       if config and threshold_applies(curvature) else (None, ""))
        histories.append([{"step": e["step"], "lambda_max": e.get(metric)} for e in epochs])
        limits.append(limit)
        texts.append(text)
        matrices.append(MATRIX_NAMES.get(curvature, curvature))
    default = ("Preconditioned sharpness: top eigenvalue of P⁻¹H"
               if metric == "lambda_max_preconditioned" else None)
    figures.plot_sharpness(histories, labels=names or _run_names(inputs), thresholds=limits,
                           threshold_names=texts, matrices=matrices, title=title or default,
                           size=figsize or (6.0, 4.0), out=out, dpi=dpi)


def _draw_json(kind: str, inputs: tuple[str, ...], names: list[str] | None, log: bool,
               title: str | None, figsize: tuple | None, out: str, dpi: int,
               metric: str | None = None) -> None:
    """Figures of .json inputs, all of one kind, overlaid."""
    from landscape import figures as plot2d

    if kind == "sharpness":
        _draw_sharpness(inputs, names, metric, log, title, figsize, out, dpi)
    elif kind == "density":
        spectra = [load_density(p) for p in inputs]
        plot2d.plot_density(spectra, labels=names or [Path(p).stem for p in inputs], log=log,
                            title=title, size=figsize or (6.0, 4.0), out=out, dpi=dpi)
    elif kind == "history":
        histories = [load_history_file(p) for p in inputs]
        plot2d.plot_history(histories, labels=names or _run_names(inputs), log=log,
                            metrics=(metric,) if metric else HISTORY_METRICS,
                            title=title, size=figsize, out=out, dpi=dpi)
    else:
        values = [load_eigenvalues(p) for p in inputs]
        plot2d.plot_eigenvalues(values, labels=names or [Path(p).stem for p in inputs],
                                title=title, size=figsize or (6.0, 4.0), out=out, dpi=dpi)


def _run_names(inputs: tuple[str, ...]) -> list[str]:
    """A run's name is its folder's (``runs/small/history.json`` -> ``small``)."""
    return [Path(p).resolve().parent.name or Path(p).stem for p in inputs]


def load_history_file(path: str) -> list[dict[str, Any]]:
    """The per-epoch entries of a run's ``history.json``; one clear error otherwise."""
    from landscape.errors import LandscapeError

    obj = _read_json(path)
    if _json_kind(obj) != "history":
        raise LandscapeError(f"{path}: not a training history (the history.json that "
                             "`landscape train` writes in its run folder)")
    if not obj["epochs"]:
        raise LandscapeError(f"{path}: the run has no evaluated epoch yet")
    return obj["epochs"]


def _tracked_curvature(path: str) -> str:
    """The matrix whose top eigenvalue a history tracked (``tracked.curvature``; histories
    written before the choice existed tracked the Hessian)."""
    tracked = _read_json(path).get("tracked")
    curvature = tracked.get("curvature") if isinstance(tracked, dict) else None
    return curvature if isinstance(curvature, str) else "hessian"


def load_eigenvalues(path: str) -> list[float]:
    """The eigenvalues of a spectrum file (``landscape hessian --top-k ... --out``)."""
    from landscape.errors import LandscapeError
    from landscape.curvature import load_spectrum

    record = load_spectrum(path)
    if "eigenvalues" not in record:
        raise LandscapeError(f"{path}: holds no eigenvalues (compute them with `landscape "
                             "hessian --top-k K --out spec.json`)")
    return record["eigenvalues"]["values"]


@click.command("plot")
@click.argument("inputs", metavar="SURFACE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(PLOT_KINDS), default=None,
              help="What to draw (default: line for 1-D surfaces, contour for 2-D ones; for "
                   ".json files, history for a run's history.json, density for spectra with "
                   "one, else eigenvalues; sharpness: a history's tracked lambda_max with its "
                   "stability threshold).")
@click.option("--metric", default=None,
              help="Metric to draw (default: train_loss; for line, every loss and accuracy; "
                   "history: loss or accuracy; sharpness: lambda_max or "
                   "lambda_max_preconditioned).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output figure: .png, .pdf or .svg.")
@click.option("--vmin", type=float, default=None, help="Bottom of the colour scale.")
@click.option("--vmax", type=float, default=None,
              help="Clip: top of the colour scale / loss axis (default for a loss: near the "
              "minima, so every basin shows; 'inf': the whole range; eig-ratio: 0.5).")
@click.option("--log", is_flag=True, help="Logarithmic levels, colours or loss axis.")
@click.option("--levels", type=click.IntRange(min=2, max=MAX_LEVELS), default=20, show_default=True,
              help="Number of contour levels (about; round numbers are chosen).")
@click.option("--labels", multiple=True,
              help="Names, one per input (legend or panel titles): " + NAMES_HELP + ".")
@click.option("--axis-names", multiple=True,
              help="Names of the directions: " + NAMES_HELP + ".")
@click.option("--title", default=None, help="Figure title.")
@click.option("--dpi", type=click.IntRange(min=10), default=200, show_default=True,
              help="Resolution of PNG output.")
@click.option("--size", default=None, help="Figure size in inches, WIDTHxHEIGHT (e.g. 10x4).")
@click.option("--cmap", default=None, help="Matplotlib colour map (default viridis / magma).")
@click.option("--rise", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Mark each basin's edge this much above the value at 0 (line: a width "
                   "bar; contour, filled, heatmap: a dashed line), with its width.")
@click.option("--saddles", is_flag=True,
              help="Contour, filled, heatmap: mark the saddle where each basin merges into a "
                   "deeper one (the persistence pairs that pass the basin rule of `landscape "
                   "shape`).")
def plot_command(inputs, kind, metric, out, vmin, vmax, log, levels, labels, axis_names, title,
                 dpi, size, cmap, rise, saddles):
    """Draw SURFACE files as a figure (several side by side on one colour scale, or
    overlaid for curves); or .json files: spectra (density, eigenvalue bars) and training
    curves from runs' history.json, overlaid."""
    from landscape import figures as plot2d
    from landscape.util import check_writable

    plot2d.figure_format(out)  # an unknown suffix or an unwritable place fails before any work
    check_writable(out)
    if log and vmin is not None and not vmin > 0:
        raise click.BadParameter(f"{vmin:g}: a log scale needs a positive --vmin",
                                 param_hint="--vmin")
    names = _split_labels(labels, len(inputs))
    axes = _axis_names(axis_names)
    figsize = _size(size, "10x4")
    _check_pixels(figsize, dpi)
    kind = kind or _default_kind(inputs, None)
    if kind in JSON_KINDS:
        if rise is not None:
            raise click.BadParameter(f"--kind {kind} marks no basin edge", param_hint="--rise")
        kind, metric = _json_metric(kind, metric)
        _draw_json(kind, inputs, names, log, title, figsize, out, dpi, metric)
        click.echo(f"wrote {out}", err=True)
        return
    surfaces = load_surfaces(inputs)
    kind = kind or _default_kind(inputs, surfaces)
    if rise is not None and kind not in ("line", "contour", "filled", "heatmap"):
        raise click.BadParameter(f"--kind {kind} marks no basin edge", param_hint="--rise")
    if saddles and kind not in ("contour", "filled", "heatmap"):
        raise click.BadParameter(f"--kind {kind} marks no saddles (contour, filled and "
                                 "heatmap do)", param_hint="--saddles")
    _check_dims(kind, surfaces)
    _warn_incomplete(surfaces)
    points = _saddles(surfaces, metric or "train_loss") if saddles else None
    _draw(kind, surfaces, metric, names, axes, out, vmin, vmax, log, levels, title, dpi,
          figsize, cmap, rise, points)
    click.echo(f"wrote {out}", err=True)


def _check_dims(kind: str, surfaces: list) -> None:
    from landscape.errors import LandscapeError

    want = 1 if kind == "line" else 2
    for s in surfaces:
        if s.ndim == want:
            continue
        if kind == "render":
            raise LandscapeError(f"{s.path}: is a 1-D surface; render draws 2-D surfaces "
                                 "(use `landscape plot --kind line` for curves)")
        hint = "use --kind contour, filled or heatmap" if s.ndim == 2 else "use --kind line"
        raise LandscapeError(f"{s.path}: is a {s.ndim}-D surface; --kind {kind} needs "
                             f"{want}-D surfaces ({hint})")
    if kind == "trajectory" and len(surfaces) != 1:
        raise LandscapeError("--kind trajectory draws one surface at a time")


def _saddles(surfaces: list, metric: str) -> list:
    """Per surface, the coordinates of the saddles of its basins (``surface_diagram``)."""
    import numpy as np

    from landscape.errors import LandscapeError
    from landscape.shape import surface_diagram

    points = []
    for s in surfaces:
        try:
            d = surface_diagram(s, metric)
        except LandscapeError as exc:
            raise LandscapeError(f"{s.path}: {exc}") from None
        at = [d.at(p.saddle) for p, basin in zip(d.pairs, d.basins)
              if basin and p.saddle is not None]
        points.append(np.array(at, dtype=float).reshape(-1, 2))
    return points


def _draw(kind, surfaces, metric, names, axes, out, vmin, vmax, log, levels, title, dpi,
          figsize, cmap, rise=None, saddles=None) -> None:
    from landscape import figures as plot2d

    common = dict(title=title, out=out, dpi=dpi)
    if figsize:
        common["size"] = figsize
    if kind == "line":
        plot2d.plot_lines(surfaces, [metric] if metric else None, accuracy=metric is None,
                          labels=names, log=log, vmin=vmin, vmax=vmax, rise=rise,
                          xlabel=axes[0] if axes else None, **common)
    elif kind == "eig-ratio":
        plot2d.plot_eig_ratio(surfaces, vmax=0.5 if vmax is None else vmax, labels=names,
                              axis_names=axes, cmap=cmap or "magma", **common)
    elif kind == "trajectory":
        if axes:
            raise click.BadParameter("--kind trajectory labels its axes with the explained "
                                     "variance", param_hint="--axis-names")
        plot2d.plot_trajectory(surfaces[0], metric=metric or "train_loss", levels=levels,
                               log=log, vmin=vmin, vmax=vmax, **common)
    else:
        plot2d.plot_contours(surfaces, metric or "train_loss", kind, levels=levels, log=log,
                             vmin=vmin, vmax=vmax, labels=names, axis_names=axes, rise=rise,
                             cmap=cmap or "viridis", saddles=saddles, **common)


@click.command("render")
@click.argument("inputs", metavar="SURFACE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Screenshot: .png or .jpg.")
@click.option("--gif", type=click.Path(dir_okay=False), default=None,
              help="Orbit animation as GIF.")
@click.option("--mp4", type=click.Path(dir_okay=False), default=None,
              help="Orbit animation as MP4 (needs imageio-ffmpeg or av).")
@click.option("--vtk", "vtk_out", type=click.Path(dir_okay=False), default=None,
              help="Surface as VTK (.vts) for ParaView; several inputs get _1, _2, ... .")
@click.option("--vtp", "vtp_out", type=click.Path(dir_okay=False), default=None,
              help="The training path of a trajectory surface as VTK polydata (.vtp).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None,
              help="Interactive 3-D scene (rotate, zoom) as one self-contained .html file "
                   "that opens offline (needs pip install 'landscape-minima[web]').")
@click.option("--html-every", type=click.IntRange(min=1, max=MAX_PIXELS), default=1,
              show_default=True,
              help="Keep every Nth grid line of each axis in the --html page (a smaller page; "
                   "pages over 64 MB are refused).")
@click.option("--metric", default="train_loss", show_default=True, help="Height and colour.")
@click.option("--log", is_flag=True, help="Height log(loss + 0.1) and a log colour scale.")
@click.option("--zmax", type=float, default=None, help="Clip heights above this loss.")
@click.option("--overlay", is_flag=True, help="All surfaces in one view instead of side by side.")
@click.option("--labels", multiple=True, help="Names, one per surface: " + NAMES_HELP + ".")
@click.option("--axis-names", multiple=True,
              help="Names of the directions: " + NAMES_HELP + ".")
@click.option("--title", default=None, help="Text at the top.")
@click.option("--levels", type=click.IntRange(min=2, max=MAX_LEVELS), default=12, show_default=True,
              help="Contour lines on the surface (about).")
@click.option("--no-contours", is_flag=True, help="No contour lines.")
@click.option("--rise", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Draw each basin's edge, this much above the value at (0, 0), as a red "
                   "line on the surface and the floor map (as `plot --rise`'s dashed line).")
@click.option("--size", default="900x700", show_default=True,
              help="Pixels per panel, WIDTHxHEIGHT.")
@click.option("--azimuth", type=float, default=-60.0, show_default=True,
              help="Camera azimuth in degrees.")
@click.option("--elevation", type=float, default=32.0, show_default=True,
              help="Camera elevation in degrees.")
@click.option("--frames", type=click.IntRange(min=2, max=MAX_FRAMES), default=36, show_default=True,
              help="Frames of the orbit animation.")
@click.option("--fps", type=click.FloatRange(min=0.1), default=12.0, show_default=True,
              help="Frames per second of the animation.")
@click.option("--show", is_flag=True, help="Also open an interactive window (needs a display).")
def render_command(inputs, out, gif, mp4, vtk_out, vtp_out, html_out, html_every, metric, log,
                   zmax, overlay, labels, axis_names, title, levels, no_contours, rise, size,
                   azimuth, elevation, frames, fps, show):
    """Render SURFACE files in 3-D: screenshot, orbit animation, VTK export, interactive
    HTML scene."""
    import numpy as np

    from landscape import figures as plot3d
    from landscape.errors import LandscapeError
    from landscape.util import check_writable

    if not any((out, gif, mp4, vtk_out, vtp_out, html_out, show)):
        raise click.UsageError("nothing to do: give --out, --gif, --mp4, --vtk, --vtp, --html "
                               "or --show")
    # every output is checked before any work, so a bad one leaves no other file behind
    for path, allowed, what in ((out, plot3d.IMAGE_SUFFIXES, "image"),
                                (gif, (".gif",), "GIF"), (mp4, (".mp4",), "MP4"),
                                (vtk_out, (".vts", ".vtk"), "VTK surface"),
                                (vtp_out, (".vtp", ".vtk"), "VTK trajectory"),
                                (html_out, plot3d.HTML_SUFFIXES, "web page")):
        if path is not None:
            check_writable(plot3d.check_figure_path(path, allowed, what))
    if html_out and plot3d.web_export_missing():
        raise LandscapeError(f"--html: {plot3d.web_export_missing()}")
    if show and not plot3d.has_display():
        raise LandscapeError("--show needs a display (DISPLAY is not set); use --out instead")
    pixels = _size(size, "900x700", int)
    if max(pixels) > MAX_PIXELS:
        raise click.BadParameter(f"{size!r}: at most {MAX_PIXELS} pixels a side",
                                 param_hint="--size")
    if gif or mp4:
        _check_movie(frames, pixels, 1 if overlay else len(inputs))
    surfaces = load_surfaces(inputs)
    _check_dims("render", surfaces)
    if vtp_out and len(surfaces) != 1:
        raise LandscapeError("--vtp exports the path of one trajectory surface")
    if vtp_out and plot3d.trajectory_of(surfaces[0])[0] is None:
        raise LandscapeError(f"{surfaces[0].path}: carries no training path for --vtp (make "
                             "one with `landscape trajectory`)")
    scene = dict(labels=_split_labels(labels, len(inputs)), log=log, zmax=zmax, overlay=overlay,
                 contours=None if no_contours else levels, title=title, azimuth=azimuth,
                 elevation=elevation, rise=rise,
                 axis_names=_axis_names(axis_names))
    lowest = float("inf")
    for s in surfaces:  # fail on a missing metric before writing anything
        values = plot3d.metric_values(s, metric, 2, "render")
        if np.isfinite(values).any():
            lowest = min(lowest, float(np.nanmin(np.where(np.isfinite(values), values, np.nan))))
    if zmax is not None and zmax <= lowest:
        raise LandscapeError(f"--zmax ({zmax:g}) must be above the smallest {metric} "
                             f"({lowest:.4g})")
    if html_out:  # before any output is written
        plot3d.check_page_size(surfaces, html_every)
    _warn_incomplete(surfaces)
    written = _render_outputs(surfaces, metric, scene, pixels, out, gif, mp4, vtk_out, vtp_out,
                              frames, fps, log, zmax)
    if html_out:
        written.append(str(plot3d.export_html(surfaces, html_out, metric, every=html_every,
                                                  **scene)))
    for path in written:
        click.echo(f"wrote {path}", err=True)
    if show:
        plot3d.render_surface(surfaces, None, metric, size=pixels, show=True, **scene)


def _check_movie(frames: int, pixels: tuple[int, int], panels: int) -> None:
    """Refuse an orbit animation whose frames would not fit ``MOVIE_BYTES`` of memory."""
    need = frames * pixels[0] * pixels[1] * panels * 3
    if need > MOVIE_BYTES:
        raise click.BadParameter(f"{frames} frames of {panels} x {pixels[0]}x{pixels[1]} pixels "
                                 f"take {need / 2**30:.1f} GiB of memory, more than "
                                 f"{MOVIE_BYTES / 2**30:.0f} GiB: use fewer --frames or a "
                                 "smaller --size", param_hint="--frames")


def _render_outputs(surfaces, metric, scene, pixels, out, gif, mp4, vtk_out, vtp_out, frames,
                    fps, log, zmax) -> list[str]:
    from landscape import figures as plot3d

    written = []
    if vtk_out:
        for k, s in enumerate(surfaces):
            target = Path(vtk_out)
            if len(surfaces) > 1:
                target = target.with_name(f"{target.stem}_{k + 1}{target.suffix}")
            written.append(str(plot3d.export_vtk(s, target, metric, log=log, zmax=zmax)))
    if vtp_out:
        written.append(str(plot3d.export_trajectory_vtk(surfaces[0], vtp_out, metric=metric,
                                                        log=log, zmax=zmax)))
    if out:
        plot3d.render_surface(surfaces, out, metric, size=pixels, **scene)
        written.append(out)
    for movie in (gif, mp4):
        if movie:
            plot3d.orbit_animation(surfaces, movie, metric, frames=frames, fps=fps, size=pixels,
                                   **scene)
            written.append(movie)
    return written


def register(group: click.Group) -> None:
    """Add ``plot`` and ``render`` to ``group``."""
    group.add_command(plot_command)
    group.add_command(render_command)
