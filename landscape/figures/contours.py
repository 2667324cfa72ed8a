"""2-D maps: contour lines, filled contours or heatmaps of one or several surfaces side by
side on one shared colour scale, a training path over its PCA plane, and the eigenvalue-ratio
map |lambda_min / lambda_max|.

Panels share one normalization, one set of round levels and one colour bar, so equal colours
mean equal values. Nothing here computes a loss; every function returns a ``Figure`` and
saves it atomically when ``out`` is given.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..errors import LandscapeError
from ..shape import basin_shape
from ..surface import Surface
from .data import (anchors_of, as_path, axis_labels, metric_values, panel_labels, pretty,
                   short_name, surface_list, trajectory_of)
from .scales import colorbar_ticks, is_round, loss_cap, shared_scale
from .style import STYLE, check_cmap, finish_figure, new_figure

KINDS_2D = ("contour", "filled", "heatmap")
ASPECT_LIMIT = 4.0
"""A panel whose axes' extents differ by more than this factor is drawn with a scale per axis
(labelled as such) instead of equal scales."""


def _anchor_points(ax, surface: Surface) -> None:
    coords, names = anchors_of(surface)
    if coords is None or coords.shape[1] != 2:
        return
    ax.plot(coords[:, 0], coords[:, 1], "o", ms=6, color="black", mfc="white", mew=1.5,
            ls="none", zorder=6)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for (cx, cy), name in zip(coords, names):
        if name:
            # Labels point inwards near the right and top edges, so none leaves the axes.
            right = (cx - x0) > 0.8 * (x1 - x0)
            top = (cy - y0) > 0.85 * (y1 - y0)
            ax.annotate(short_name(name), (cx, cy), xytext=(-5 if right else 5, -5 if top else 5),
                        textcoords="offset points", ha="right" if right else "left",
                        va="top" if top else "bottom", fontsize=8.5, zorder=7,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))


def _grid_panels(n: int, size: tuple[float, float] | None, colorbar: bool = True,
                 share: bool = True):
    size = size or (4.3 * n + (1.1 if colorbar else 0.3), 4.3)
    # "compressed" lays out equal-aspect panels and their colour bar without wasted space
    fig = new_figure(size, "compressed")
    axes = fig.subplots(1, n, sharex=share, sharey=share, squeeze=False)[0]
    return fig, list(axes)


def _draw_panel(ax, x, y, z, kind, norm, levels, cmap, extend, line_labels=True):
    """Draw one 2-D map; returns the mappable for the colour bar."""
    zt = np.ma.masked_invalid(z.T)  # contour wants [row = y, column = x]
    if kind == "heatmap":
        return ax.pcolormesh(x, y, zt, shading="nearest", norm=norm, cmap=cmap, rasterized=True)
    if kind == "filled":
        mappable = ax.contourf(x, y, zt, levels=levels, norm=norm, cmap=cmap, extend=extend)
        ax.contour(x, y, zt, levels=levels, colors="k", linewidths=0.4, alpha=0.45)
        return mappable
    if kind == "contour":
        # a line at the very minimum is a dot; leave it out
        lines = levels[1:] if levels[0] <= np.nanmin(z) else levels
        cs = ax.contour(x, y, zt, levels=lines, norm=norm, cmap=cmap, linewidths=1.2)
        if line_labels and len(cs.levels):
            ticks = colorbar_ticks(norm)
            marked = [v for v in cs.levels if np.isclose(v, ticks, rtol=1e-6).any()]
            if not marked:  # never a label like 0.538119: round levels only
                marked = [v for v in cs.levels if is_round(v)][::max(1, len(cs.levels) // 5)]
            if marked:
                ax.clabel(cs, marked, inline=True, fontsize=8,
                          fmt=FuncFormatter(lambda v, _: f"{v:g}"))
        return cs
    raise LandscapeError(f"unknown plot kind {kind!r}; use one of {', '.join(KINDS_2D)}")


def _basin_edge(ax, x, y, z, rise: float, refined: float | None = None) -> str:
    """Dashed line where the loss is ``rise`` above its value at the centre; the width text
    (the ``refined`` width, where given, instead of this grid's)."""
    if np.isfinite(z).sum() < 4:
        return ""
    shape = basin_shape(x, np.where(np.isfinite(z), z, np.inf), y, rise=rise)
    ax.contour(x, y, np.ma.masked_invalid(z.T), levels=[shape.center_value + rise],
               colors="white", linewidths=1.6, linestyles="--", zorder=4)
    if refined is not None:
        return f"basin width {refined:.3g} at +{rise:g} (refined grid)"
    width = f"{shape.width:.3g}" if shape.width is not None else "beyond the grid"
    return f"basin width {width} at +{rise:g} (dashed)"


def _mark_minimum(ax, x, y, z, avoid: np.ndarray | None = None) -> None:
    """A star at the lowest value, its legend in the first corner with no point of
    ``avoid`` (the models a plane passes through, with their labels) near it."""
    if not np.isfinite(z).any():
        return
    i, j = np.unravel_index(np.nanargmin(z), z.shape)
    ax.plot(x[i], y[j], marker="*", markersize=14, color="white", markeredgecolor="black",
            markeredgewidth=1.0, linestyle="none", label=f"minimum {z[i, j]:.3g}", zorder=5)
    ax.legend(loc=_free_corner(ax, avoid), fontsize=8.5, handletextpad=0.3, borderpad=0.3)


def _free_corner(ax, points: np.ndarray | None) -> str:
    """The first of the four corners whose outer 45% x 25% of the axes holds none of
    ``points`` (upper right when every corner does)."""
    corners = ("upper right", "upper left", "lower right", "lower left")
    if points is None or not len(points):
        return corners[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    fx = (np.asarray(points)[:, 0] - x0) / (x1 - x0)
    fy = (np.asarray(points)[:, 1] - y0) / (y1 - y0)
    for corner in corners:
        near_x = fx > 0.55 if "right" in corner else fx < 0.45
        near_y = fy > 0.75 if "upper" in corner else fy < 0.25
        if not np.any(near_x & near_y):
            return corner
    return corners[0]


def _colorbar(fig, mappable, axes, label, extend) -> None:
    cb = fig.colorbar(mappable, ax=axes, shrink=0.92, pad=0.02, aspect=25, extend=extend)
    cb.set_ticks(colorbar_ticks(mappable.norm))
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.minorticks_off()
    cb.set_label(label)


def plot_contours(surfaces: Surface | Sequence[Surface], metric: str = "train_loss",
                  kind: str = "contour", *, levels: int | Sequence[float] = 20,
                  log: bool = False, vmin: float | None = None, vmax: float | None = None,
                  labels: Sequence[str] | None = None,
                  axis_names: Sequence[str] | None = None, title: str | None = None,
                  cmap: str = "viridis", mark_min: bool = True, anchors: bool = True,
                  rise: float | None = None, refined: Sequence[float | None] | None = None,
                  size: tuple[float, float] | None = None,
                  out: str | os.PathLike | None = None, dpi: float | None = None,
                  share_axes: bool = True,
                  saddles: Sequence[np.ndarray | None] | None = None) -> Figure:
    """Contour lines, filled contours or a heatmap of a 2-D surface; several side by side.

    Panels share one colour normalization, one set of levels and one colour bar, so equal
    colours mean equal values across panels. A loss metric's colour range is capped near the
    minima by default (``loss_cap``), so every basin shows.

    Args:
        surfaces: one 2-D surface or several (one panel each, e.g. small | large batch).
        metric: metric to draw.
        kind: "contour", "filled" or "heatmap".
        levels: number of contour levels or the levels themselves.
        log: logarithmic levels and colour scale.
        vmin, vmax: colour limits; ``vmax`` clips huge far losses (they take the top colour).
            Default for a ``*loss`` metric: ``loss_cap`` of the panels; ``inf``: no cap.
        labels: panel titles (default: file names; "" for none).
        axis_names: names of the two directions (default: from the surface).
        title: figure title.
        cmap: matplotlib colour map.
        mark_min: mark the smallest value with a star.
        anchors: mark the models a plane was drawn through (stored with the surface).
        rise: draw each panel's basin edge, ``rise`` above its value at (0, 0), as a dashed
            white line, and give its mean width (``basin_shape``) in the panel title.
        refined: per panel, a width measured on a finer grid than this one (compare's
            refined widths), shown in the title instead of the grid's where not None.
        size: width, height in inches.
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.
        share_axes: one x and y range for all panels; False for planes of different
            extent (a random plane beside the plane through three minima).
        saddles: per panel, the coordinates ``(k, 2)`` of saddles to mark with a red cross
            (e.g. where each basin of ``landscape.persistence`` merges into a deeper one),
            or None.

    Returns:
        The figure (``fig.axes[:n]`` are the panels, the last axes the colour bar).
    """
    if kind not in KINDS_2D:
        raise LandscapeError(f"unknown plot kind {kind!r}; use one of {', '.join(KINDS_2D)}")
    items = surface_list(surfaces)
    check_cmap(cmap)
    values = [metric_values(s, metric, 2, f"a {kind} plot") for s in items]
    if saddles is not None and len(saddles) != len(items):
        raise LandscapeError(f"saddles for {len(saddles)} panels, {len(items)} surfaces given")
    if vmax is None and metric.endswith("loss"):
        vmax = loss_cap(values, rise=rise or 0.1)
    norm, lv = shared_scale(values, levels, log, vmin,
                            vmax if vmax is None or np.isfinite(vmax) else None)
    extend = _extend(values, norm)
    names = panel_labels(labels, items) if len(items) > 1 or labels else [""]
    names = names + [""] * (len(items) - len(names))
    with rc_context(STYLE):
        fig, axes = _grid_panels(len(items), size, share=share_axes)
        mappable = None
        for k, (ax, s, z) in enumerate(zip(axes, items, values)):
            x, y = np.asarray(s.x, float), np.asarray(s.y, float)
            mappable = _draw_panel(ax, x, y, z, kind, norm, lv, cmap, extend)
            if rise:
                edge = _basin_edge(ax, x, y, z, rise, (refined or [None] * len(items))[k])
                names[k] = "\n".join(filter(None, [names[k], edge]))
            if anchors:
                _anchor_points(ax, s)
            if saddles is not None and saddles[k] is not None and len(saddles[k]):
                at = np.asarray(saddles[k], dtype=float).reshape(-1, 2)
                ax.plot(at[:, 0], at[:, 1], "X", ms=8, color="#D55E00", mec="white",
                        mew=0.8, ls="none", zorder=7, label="saddle")
            if mark_min:
                coords = anchors_of(s)[0] if anchors else None
                _mark_minimum(ax, x, y, z, coords if coords is not None
                              and coords.shape[1] == 2 else None)
            _decorate(ax, s, axis_names, names[k], first=k == 0)
        _colorbar(fig, mappable, axes, pretty(metric) + (" (log scale)" if log else ""), extend)
        if title:
            fig.suptitle(title)
    return finish_figure(fig, out, dpi)


def _extend(values: Sequence[np.ndarray], norm: Normalize) -> str:
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    over = finite.size and finite.max() > norm.vmax
    under = finite.size and finite.min() < norm.vmin
    return {(True, True): "both", (True, False): "max", (False, True): "min"}.get(
        (bool(over), bool(under)), "neither")


def _decorate(ax, surface, axis_names, panel_title, first, variance=None) -> None:
    xl, yl = axis_labels(surface, axis_names, variance)
    spans = np.ptp(np.asarray(surface.x, float)), np.ptp(np.asarray(surface.y, float))
    equal = max(spans) <= ASPECT_LIMIT * max(min(spans), 1e-300)
    # A plane far longer than wide (one model far from the others) at equal scales is a
    # sliver that hides every basin: scale each axis to the panel and say so.
    ax.set_xlabel(xl if equal else f"{xl}\n(axes not to scale: x {spans[0]:.3g} wide, "
                  f"y {spans[1]:.3g})")
    if first or not equal:
        ax.set_ylabel(yl)
    ax.set_aspect("equal" if equal else "auto", adjustable="box")
    for axis in (ax.xaxis, ax.yaxis):  # few ticks, so neighbouring panels' labels never touch
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    if panel_title:
        ax.set_title(panel_title)


def plot_trajectory(surface: Surface, path: np.ndarray | None = None,
                    explained_variance: Sequence[float] | None = None, *,
                    metric: str = "train_loss", kind: str = "contour",
                    levels: int | Sequence[float] = 20, log: bool = False,
                    vmin: float | None = None, vmax: float | None = None,
                    title: str | None = None,
                    size: tuple[float, float] | None = None,
                    out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """A training path drawn over the loss contours of its PCA plane.

    The plane keeps equal axis scales (distances are true), so the figure takes the grid's
    shape by default instead of leaving bands empty; the legend goes where the path is not.

    Args:
        surface: 2-D surface over the PCA plane.
        path: (T, 2) coordinates of the checkpoints in that plane; default the one the surface
            carries (see ``trajectory_of``).
        explained_variance: variance explained by the two components (fractions or percent);
            default the surface's; shown on the axis labels.
        metric, kind, levels, log, vmin, vmax: as in ``plot_contours`` (but no cap by
            default: the path runs from high loss to the minimum).
        title: figure title.
        size: width, height in inches (default: from the grid's aspect ratio).
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.

    Returns:
        The figure.
    """
    stored_path, stored_var = trajectory_of(surface)
    if size is None:
        aspect = np.ptp(np.asarray(surface.y, float)) / max(np.ptp(np.asarray(surface.x,
                                                                               float)), 1e-12)
        size = (6.4, float(np.clip(5.0 * aspect, 2.2, 6.0)) + (1.1 if title else 0.8))
    coords = as_path(path) if path is not None else stored_path
    if coords is None:
        raise LandscapeError(f"{surface.path or 'surface'}: no trajectory to draw (pass a (T, 2) "
                             "path or use a surface made from a training trajectory)")
    var = explained_variance if explained_variance is not None else stored_var
    # the path starts high: no cap near the minimum unless asked for
    fig = plot_contours(surface, metric, kind, levels=levels, log=log, vmin=vmin,
                        vmax=float("inf") if vmax is None else vmax, title=title,
                        mark_min=False, size=size)
    ax = fig.axes[0]
    with rc_context(STYLE):
        ax.plot(coords[:, 0], coords[:, 1], "-", color="#D62728", lw=1.8, zorder=6)
        ax.plot(coords[:, 0], coords[:, 1], "o", color="#D62728", ms=3.2, zorder=6)
        ax.plot(*coords[0], "o", ms=9, mfc="white", mec="#D62728", mew=2, ls="none",
                label="start", zorder=7)
        ax.plot(*coords[-1], "s", ms=8, color="#D62728", mec="black", ls="none", label="end",
                zorder=7)
        ax.legend(loc="best", fontsize=8.5)  # "best" avoids the drawn path
        xl, yl = axis_labels(surface, None, var)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    return finish_figure(fig, out, dpi)


def eig_ratio(surface: Surface) -> np.ndarray:
    """|lambda_min / lambda_max| per grid point, from the metrics "eig_min" and "eig_max".

    NaN where either is missing or lambda_max is 0.
    """
    lo = metric_values(surface, "eig_min", 2, "an eigen-ratio map")
    hi = metric_values(surface, "eig_max", 2, "an eigen-ratio map")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(lo / hi)
    ratio[~np.isfinite(ratio)] = np.nan
    return ratio


def plot_eig_ratio(surfaces: Surface | Sequence[Surface], *, vmax: float = 0.5,
                   kind: str = "heatmap", labels: Sequence[str] | None = None,
                   axis_names: Sequence[str] | None = None, title: str | None = None,
                   cmap: str = "magma", size: tuple[float, float] | None = None,
                   out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Map of |lambda_min / lambda_max| (0: convex-looking, large: non-convex), colours 0..vmax.

    Args:
        surfaces: one or several 2-D surfaces with metrics "eig_min" and "eig_max".
        vmax: top of the colour scale (ratios above it take the top colour).
        kind: "heatmap", "filled" or "contour".
        labels, axis_names, title, cmap, size, out, dpi: as in ``plot_contours``.

    Returns:
        The figure.
    """
    items = surface_list(surfaces)
    check_cmap(cmap)
    ratios = [eig_ratio(s) for s in items]
    norm, lv = shared_scale(ratios, 11, False, 0.0, vmax)
    extend = "max" if any(np.nanmax(r) > vmax for r in ratios if np.isfinite(r).any()) \
        else "neither"
    names = panel_labels(labels, items) if len(items) > 1 or labels else [""]
    with rc_context(STYLE):
        fig, axes = _grid_panels(len(items), size)
        mappable = None
        for k, (ax, s, r) in enumerate(zip(axes, items, ratios)):
            mappable = _draw_panel(ax, np.asarray(s.x, float), np.asarray(s.y, float), r, kind,
                                   norm, lv, cmap, extend)
            _decorate(ax, s, axis_names, names[k] if k < len(names) else "", first=k == 0)
        _colorbar(fig, mappable, axes, r"$|\lambda_{\min} / \lambda_{\max}|$", extend)
        if title:
            fig.suptitle(title)
    return finish_figure(fig, out, dpi)
