"""1-D figures: loss (left axis) and accuracy (right axis) along a direction, an
interpolation or a path between two minima, several runs overlaid, with the anchor models
and each basin's width at a given rise marked.

Every function draws the arrays it is given (it never computes a loss), returns a matplotlib
``Figure`` and, when ``out`` is given, saves it atomically (PNG, PDF or SVG by the suffix).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import LandscapeError
from ..shape import basin_shape
from ..surface import Surface
from .data import (anchors_of, axis_labels, metric_values, panel_labels, pretty,
                   provenance_value, short_name, surface_list, surface_name)
from .scales import loss_cap
from .style import RUN_COLORS, STYLE, finish_figure, new_figure


def plot_lines(surfaces: Surface | Sequence[Surface], metrics: Sequence[str] | None = None,
               accuracy: Sequence[str] | bool = True, *, labels: Sequence[str] | None = None,
               log: bool = False, vmin: float | None = None, vmax: float | None = None,
               xlabel: str | None = None, title: str | None = None, anchors: bool = True,
               rise: float | None = None, refined: Sequence[float | None] | None = None,
               note: str | None = None, size: tuple[float, float] = (6.0, 4.0),
               out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Loss (left axis) and accuracy (right axis) along a direction or an interpolation.

    Runs are told apart by colour, train and test by solid and dashed lines, loss and accuracy
    by line width. A linear loss axis starts at 0 and is capped near the minima by default
    (``loss_cap``), so that curves compare by width; ``log`` shows depth instead.

    Args:
        surfaces: one 1-D surface or several (overlaid, e.g. small vs large batch).
        metrics: metrics for the left axis; default every "*loss" metric present in all runs.
        accuracy: metrics for the right axis; True: every "*acc*" metric present in all runs;
            False: none. Fractions in [0, 1] are shown as percent.
        labels: one legend label per run (default: file names).
        log: logarithmic loss axis.
        vmin: lower limit of the loss axis (default 0 on a linear capped axis).
        vmax: upper limit of the loss axis; default ``loss_cap`` of the loss curves (on a
            linear axis), ``inf`` for the whole range.
        xlabel: x-axis label (default: from the surface's direction names).
        title: figure title.
        anchors: mark the models an interpolation runs between (dotted vertical lines).
        rise: mark on each run's first loss curve its basin width at ``rise`` above the
            value at 0 (``landscape.shape.basin_shape``), a bar with the width in the legend.
        refined: per run, a width measured on a finer grid than this one (compare's refined
            widths), shown in the legend instead of the grid's where not None.
        note: a small caption under the axes (what the axis unit means, a caveat).
        size: width, height in inches.
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.

    Returns:
        The figure.
    """
    runs = surface_list(surfaces)
    names = panel_labels(labels, runs)
    common = set.intersection(*(set(s.metrics) for s in runs))
    train_first = lambda m: (not m.startswith("train"), m)  # noqa: E731
    left = list(metrics) if metrics else sorted((m for m in common if m.endswith("loss")),
                                                key=train_first)
    if accuracy is True:
        right = sorted((m for m in common if "acc" in m and m not in left), key=train_first)
    else:
        right = list(accuracy) if accuracy else []
    if not left and not right:
        raise LandscapeError("nothing to plot: no loss metrics; available: "
                             + (", ".join(sorted(common)) or "none"))
    if vmax is None and left and not log and all(m.endswith("loss") for m in left):
        vmax = loss_cap([metric_values(s, m, 1, "a line plot") for s in runs for m in left],
                        rise=rise or 0.1)
    names = list(names)
    with rc_context(STYLE):
        fig = new_figure(size)
        ax = fig.add_subplot()
        ax2 = ax.twinx() if right and left else None
        for k, (surface, name) in enumerate(zip(runs, names)):
            color = RUN_COLORS[k % len(RUN_COLORS)]
            x = np.asarray(surface.x, dtype=float)
            for m in left:
                _curve(ax, x, metric_values(surface, m, 1, "a line plot"), m, color, 2.0,
                       log=log)
            if rise and left:
                names[k] += _width_bar(ax, x, metric_values(surface, left[0], 1), rise, color,
                                       (refined or [None] * len(runs))[k])
            for m in right:
                y = metric_values(surface, m, 1, "a line plot")
                _curve(ax2 or ax, x, _percent(y, runs, m), m, color, 1.1, alpha=0.75)
        ax.set_xlabel(xlabel or axis_labels(runs[0])[0])
        if anchors:
            _anchor_lines(ax, runs[0])
        _label_value_axes(ax, ax2, left, right, runs, log, vmax)
        if vmin is not None:
            ax.set_ylim(bottom=vmin)
        _line_legend(ax, names if len(runs) > 1 or labels else [], left, right)
        if title:
            ax.set_title(title)
        if note:
            import textwrap

            fig.supxlabel(textwrap.fill(note, int(size[0] * 15)), fontsize=8, color="0.3")
    return finish_figure(fig, out, dpi)


def plot_paths(paths: Sequence[Surface], *, log: bool = True, title: str | None = None,
               size: tuple[float, float] = (6.0, 4.0), out: str | os.PathLike | None = None,
               dpi: float | None = None) -> Figure:
    """Paths between the same two minima on one axis (``landscape connect``'s trained curve
    against the straight line): loss and accuracy over t, each path named by its
    provenance (``path_label``).

    Args:
        paths: 1-D surfaces over t in [0, 1] (e.g. ``ConnectResult.curve`` and ``.line``).
        log, title, size, out, dpi: as in ``plot_lines``.

    Returns:
        The figure.
    """
    runs = [p for p in paths if p is not None]
    names = [str(provenance_value(s, ("path_label",)) or surface_name(s, k))
             for k, s in enumerate(runs)]
    return plot_lines(runs, labels=names, log=log, size=size, out=out, dpi=dpi,
                      title=title or "Between two minima: " + " vs ".join(names))


def _anchor_lines(ax, surface: Surface) -> None:
    coords, names = anchors_of(surface)
    if coords is None:
        return
    for c, name in zip(coords[:, 0], names):
        ax.axvline(c, color="0.35", ls=":", lw=1.2, zorder=1)
        if name:
            ax.annotate(short_name(name), (c, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top", fontsize=8.5,
                        color="0.25", rotation=90)


def _percent(y: np.ndarray, runs: list[Surface], metric: str) -> np.ndarray:
    return y * 100 if _is_fraction(runs, metric) else y


def _is_fraction(runs: list[Surface], metric: str) -> bool:
    vals = np.concatenate([np.asarray(s.metrics[metric], float).ravel() for s in runs])
    vals = vals[np.isfinite(vals)]
    return bool(vals.size and vals.min() >= 0 and vals.max() <= 1.0)


def _curve(ax, x, y, metric, color, width, alpha=1.0, log=False) -> None:
    if log:
        y = np.where(y > 0, y, np.nan)
    style = "--" if metric.startswith("test") else "-"
    ax.plot(x, y, style, color=color, linewidth=width, alpha=alpha)


def _label_value_axes(ax, ax2, left, right, runs, log, vmax) -> None:
    if left:
        ax.set_ylabel("loss" if all(m.endswith("loss") for m in left) else
                      ", ".join(pretty(m) for m in left))
        if log:
            ax.set_yscale("log")
        elif vmax is not None and np.isfinite(vmax):
            ax.set_ylim(bottom=0.0)  # a linear axis from 0: heights compare as they are
        if vmax is not None and np.isfinite(vmax):
            ax.set_ylim(top=vmax)
    target = ax2 if ax2 is not None else (None if left else ax)
    if target is not None and right:
        frac = all(_is_fraction(runs, m) for m in right)
        target.set_ylabel("accuracy (%)" if frac else ", ".join(pretty(m) for m in right))
        if frac:
            target.set_ylim(-2, 102)
    ax.grid(True, alpha=0.25)


def _width_bar(ax, x: np.ndarray, y: np.ndarray, rise: float, color: str,
               refined: float | None = None) -> str:
    """Draw the basin's extent at ``rise`` above the value at 0; return the legend text (with
    the ``refined`` width, where given, instead of this grid's)."""
    finite = np.isfinite(y)
    if finite.sum() < 3:
        return ""
    shape = basin_shape(x[finite], y[finite], rise=rise)
    level = shape.center_value + rise
    lo, hi = shape.radii
    left = shape.center[0] - (lo if lo is not None else shape.center[0] - x[finite][0])
    right = shape.center[0] + (hi if hi is not None else x[finite][-1] - shape.center[0])
    ax.plot([left, right], [level, level], color=color, lw=1.3, ls=(0, (4, 2)), zorder=4)
    ax.plot([left, right], [level, level], "|", color=color, ms=9, mew=1.8, zorder=4)
    if refined is not None:
        return f": width {refined:.3g} at +{rise:g} (refined grid)"
    width = f"{shape.width:.3g}" if shape.width is not None else "beyond the grid"
    return f": width {width} at +{rise:g}"


def _line_legend(ax, names, left, right) -> None:
    handles = []
    if names:
        handles += [Line2D([], [], color=RUN_COLORS[k % len(RUN_COLORS)], lw=2.5, label=n)
                    for k, n in enumerate(names)]
    splits = {"--" if m.startswith("test") else "-" for m in left + right}
    if len(splits) > 1:
        handles += [Line2D([], [], color="0.3", ls="-", lw=1.6, label="train"),
                    Line2D([], [], color="0.3", ls="--", lw=1.6, label="test")]
    if left and right:
        handles += [Line2D([], [], color="0.3", lw=2.2, label="loss (left)"),
                    Line2D([], [], color="0.3", lw=1.1, alpha=0.75, label="accuracy (right)")]
    if handles:  # above the axes, so that it never hides a curve
        widest = max(len(h.get_label()) for h in handles)
        fit = 4 if widest <= 14 else 3 if widest <= 20 else 2 if widest <= 36 else 1
        ax.figure.legend(handles=handles, loc="outside upper center",
                         ncol=min(len(handles), fit, 3 if len(handles) > 4 else 4))
