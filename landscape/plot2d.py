"""Publication-ready 2-D figures: 1-D loss curves, contour maps, trajectories, eigen-ratio maps,
spectral densities, and side-by-side panels that share one colour scale.

Every function draws arrays it is given (it never computes a loss), returns a matplotlib
``Figure`` and, when ``out`` is given, saves it atomically (PNG, PDF or SVG by the suffix).
Figures are made with the object-oriented API on an Agg canvas: no pyplot state, no display.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

from ._util import atomic_path
from .errors import LandscapeError
from .shape import basin_shape
from .surface import Surface

FORMATS = ("png", "pdf", "svg")
KINDS_2D = ("contour", "filled", "heatmap")

#: Readable fonts and line widths for a paper column or a slide; applied while drawing.
STYLE: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9.5,
    "legend.framealpha": 0.85,
    "lines.linewidth": 1.8,
    "axes.linewidth": 0.9,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # embed TrueType so journals' checks and editors accept the text
    "ps.fonttype": 42,
    "image.cmap": "viridis",
}

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
RUN_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


# ----------------------------------------------------------------------------- saving

def figure_format(path: str | os.PathLike) -> str:
    """The image format named by ``path``'s suffix.

    Args:
        path: output file name ending in .png, .pdf or .svg.

    Returns:
        "png", "pdf" or "svg".

    Raises:
        LandscapeError: for any other suffix.
    """
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise LandscapeError(f"{path}: unknown figure format {Path(path).suffix or '(none)'!r}; "
                             f"use one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


@contextlib.contextmanager
def atomic_suffixed(path: str | os.PathLike) -> Iterator[Path]:
    """Like ``atomic_path`` but the temporary file keeps ``path``'s suffix.

    Writers that pick the format from the file name (VTK, imageio) then write the right one;
    the file appears under ``path`` only when the block succeeds.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        real = tmp.with_name(tmp.name + path.suffix)
        try:
            yield real
            os.replace(real, tmp)
        finally:
            if real.exists():
                real.unlink()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Save ``fig`` atomically; the format comes from the suffix.

    Args:
        fig: the figure.
        path: .png, .pdf or .svg file.
        dpi: pixels per inch for PNG (and rasterized parts of PDF/SVG); default 200.

    Returns:
        The path written.
    """
    fmt = figure_format(path)
    with rc_context(STYLE), atomic_suffixed(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi or STYLE["savefig.dpi"])
    return Path(path)


def _finish(fig: Figure, out: str | os.PathLike | None, dpi: float | None) -> Figure:
    if out is not None:
        save_figure(fig, out, dpi)
    return fig


def _new_figure(size: tuple[float, float], layout: str = "constrained") -> Figure:
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


# ----------------------------------------------------------------------------- reading surfaces

def surface_name(surface: Surface, index: int = 0) -> str:
    """A short name for messages and legends: the file stem, else ``surface <index + 1>``."""
    return Path(surface.path).stem if surface.path else f"surface {index + 1}"


def metric_values(surface: Surface, metric: str, ndim: int | None = None,
                  what: str = "this plot") -> np.ndarray:
    """The values of ``metric`` as floats, NaN where a point is not computed or not finite.

    Args:
        surface: the surface.
        metric: metric name, e.g. "train_loss".
        ndim: required grid dimension (1 or 2), or None for either.
        what: name of the plot, for the error message.

    Raises:
        LandscapeError: wrong dimension or unknown metric (the message lists the available ones).
    """
    name = surface.path or "surface"
    if ndim is not None and surface.ndim != ndim:
        raise LandscapeError(f"{name}: is a {surface.ndim}-D surface; {what} needs a {ndim}-D one")
    if metric not in surface.metrics:
        avail = ", ".join(sorted(surface.metrics)) or "none"
        raise LandscapeError(f"{name}: no metric {metric!r}; available: {avail}")
    values = np.array(surface.metrics[metric], dtype=float)
    if values.shape != tuple(surface.shape):
        raise LandscapeError(f"{name}: metric {metric!r} has shape {values.shape}, "
                             f"grid is {tuple(surface.shape)}")
    done = np.asarray(surface.done, dtype=bool) if surface.done is not None else True
    values[~np.broadcast_to(done, values.shape) | ~np.isfinite(values)] = np.nan
    return values


def _prov_lookup(surface: Surface, keys: Sequence[str]) -> Any:
    """First of ``keys`` found as a surface attribute, in provenance, or one level below it."""
    for key in keys:
        value = getattr(surface, key, None)
        if value is not None and not isinstance(value, str):
            return value
    prov = surface.provenance if isinstance(surface.provenance, dict) else {}
    for scope in [prov] + [v for v in prov.values() if isinstance(v, dict)]:
        for key in keys:
            if scope.get(key) is not None:
                return scope[key]
    return None


def trajectory_of(surface: Surface) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The projected training path and explained variance a trajectory surface carries, if any.

    Reads ``surface.trajectory`` (``coords`` (T, 2), ``explained_variance_ratio``), else a
    "trajectory" / "projected_path" entry and "explained_variance(_ratio)" in the provenance.

    Returns:
        ``(path (T, 2) or None, explained variance (k,) or None)``.
    """
    table = getattr(surface, "trajectory", None)
    if isinstance(table, dict):
        raw = next((table[k] for k in ("coords", "path", "points") if k in table), None)
        var = next((table[k] for k in ("explained_variance_ratio", "explained_variance")
                    if k in table), None)
    else:
        raw = table if table is not None else _prov_lookup(surface, ("trajectory",
                                                                    "projected_path"))
        if isinstance(raw, dict):
            raw = next((raw[k] for k in ("coords", "path", "points") if k in raw), None)
        var = None
    if var is None:
        var = _prov_lookup(surface, ("explained_variance_ratio", "explained_variance"))
    try:
        var = None if var is None else np.asarray(var, dtype=float).ravel()
    except (TypeError, ValueError):
        var = None
    return _as_path(raw), var


def anchors_of(surface: Surface) -> tuple[np.ndarray | None, list[str]]:
    """Coordinates (m, ndim) and names of the models that define the directions, if stored.

    Interpolations and planes through checkpoints carry them (``surface.anchors``).
    """
    table = getattr(surface, "anchors", None)
    if not isinstance(table, dict) or "coords" not in table:
        return None, []
    try:
        coords = np.asarray(table["coords"], dtype=float).reshape(-1, surface.ndim)
    except (TypeError, ValueError):
        return None, []
    names = [str(n) for n in np.asarray(table.get("labels", []), dtype=object).ravel()]
    names += [""] * (len(coords) - len(names))
    return coords, names[:len(coords)]


def _as_path(raw: Any) -> np.ndarray | None:
    if raw is None:
        return None
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.ndim == 2 and arr.shape[0] >= 1 and arr.shape[1] == 2:
        return arr
    if arr.ndim == 2 and arr.shape[0] == 2 and arr.shape[1] > 2:
        return arr.T
    return None


def axis_labels(surface: Surface, labels: Sequence[str] | None = None,
                explained_variance: Sequence[float] | None = None) -> tuple[str, str]:
    """Axis labels for a surface's directions.

    Explicit ``labels`` win; then explained variance ("PC1 (71.2% var.)"); then names stored in
    the provenance ("axis_labels"); then what the recipe says (an interpolation between two
    checkpoints, a plane, filter-normalized random directions); else "direction 1/2".
    """
    if labels:
        labels = list(labels) + ["direction 2"]
        return str(labels[0]), str(labels[1])
    var = explained_variance
    if var is None:
        var = trajectory_of(surface)[1]
    if var is not None and len(var) >= 2:
        var = np.asarray(var, dtype=float)
        pct = var * 100 if var.sum() <= 1.0 + 1e-6 else var
        return f"PC1 ({pct[0]:.1f}% var.)", f"PC2 ({pct[1]:.1f}% var.)"
    names = _prov_lookup(surface, ("axis_labels", "direction_names"))
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        names = list(names) + ["direction 2"]
        return names[0], names[1]
    prov = surface.provenance if isinstance(surface.provenance, dict) else {}
    if prov.get("type") == "interpolation" and surface.ndim == 1:
        _, ends = anchors_of(surface)
        if len(ends) == 2 and all(ends):
            return rf"$\alpha$  (0: {_short(ends[0])}, 1: {_short(ends[1])})", "direction 2"
        return r"interpolation $\alpha$", "direction 2"
    if prov.get("type") == "hessian":
        return _eigen_axis(prov, 0), _eigen_axis(prov, 1)
    norm = prov.get("norm")
    if prov.get("type") == "random" and isinstance(norm, str) and norm not in ("none", ""):
        return f"direction 1 ({norm}-normalized)", f"direction 2 ({norm}-normalized)"
    return "direction 1", "direction 2"


def _eigen_axis(prov: dict[str, Any], k: int) -> str:
    """'top Hessian eigenvector (λ = 20.1; unit norm)' for direction ``k`` of a recipe."""
    values = prov.get("eigenvalues") or []
    unit = "unit norm" if prov.get("norm") == "none" else f"{prov.get('norm')}-normalized"
    which = ("top" if k == 0 else f"#{k + 1}") + " Hessian eigenvector"
    value = f"λ = {values[k]:.3g}; " if k < len(values) else ""
    return f"{which} ({value}{unit})"


def _short(name: str, width: int = 18) -> str:
    stem = Path(name).stem if name.endswith((".pt", ".pth")) else name
    if stem == "model" and Path(name).parent.name:
        # `landscape train` names every run's weights model.pt: the run folder tells them apart
        stem = Path(name).parent.name
    return stem if len(stem) <= width else stem[:width - 1] + "…"


def pretty(metric: str) -> str:
    """'train_loss' -> 'train loss'."""
    return metric.replace("_", " ")


def check_cmap(name: str) -> str:
    """``name`` if matplotlib knows the colour map; else a LandscapeError naming a few."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise LandscapeError(f"unknown colour map {name!r}; e.g. viridis, magma, cividis, "
                             "plasma, coolwarm (any matplotlib colour map)")
    return name


def _as_list(surfaces: Surface | Sequence[Surface]) -> list[Surface]:
    items = [surfaces] if isinstance(surfaces, Surface) else list(surfaces)
    if not items:
        raise LandscapeError("no surfaces to plot")
    return items


def _panel_labels(labels: Sequence[str] | None, surfaces: list[Surface]) -> list[str]:
    if labels is None:
        return [surface_name(s, i) for i, s in enumerate(surfaces)]
    labels = list(labels)
    if len(labels) != len(surfaces):
        raise LandscapeError(f"{len(labels)} labels for {len(surfaces)} surfaces")
    return labels


# ----------------------------------------------------------------------------- 1-D curves

def plot_lines(surfaces: Surface | Sequence[Surface], metrics: Sequence[str] | None = None,
               accuracy: Sequence[str] | bool = True, *, labels: Sequence[str] | None = None,
               log: bool = False, vmin: float | None = None, vmax: float | None = None,
               xlabel: str | None = None, title: str | None = None, anchors: bool = True,
               rise: float | None = None,
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
        note: a small caption under the axes (what the axis unit means, a caveat).
        size: width, height in inches.
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.

    Returns:
        The figure.
    """
    runs = _as_list(surfaces)
    names = _panel_labels(labels, runs)
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
        fig = _new_figure(size)
        ax = fig.add_subplot()
        ax2 = ax.twinx() if right and left else None
        for k, (surface, name) in enumerate(zip(runs, names)):
            color = RUN_COLORS[k % len(RUN_COLORS)]
            x = np.asarray(surface.x, dtype=float)
            for m in left:
                _curve(ax, x, metric_values(surface, m, 1, "a line plot"), m, color, 2.0,
                       log=log)
            if rise and left:
                names[k] += _width_bar(ax, x, metric_values(surface, left[0], 1), rise, color)
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
    return _finish(fig, out, dpi)


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
    names = [str(_prov_lookup(s, ("path_label",)) or surface_name(s, k))
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
            ax.annotate(_short(name), (c, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top", fontsize=8.5,
                        color="0.25", rotation=90)


def _anchor_points(ax, surface: Surface) -> None:
    coords, names = anchors_of(surface)
    if coords is None or coords.shape[1] != 2:
        return
    ax.plot(coords[:, 0], coords[:, 1], "o", ms=6, color="black", mfc="white", mew=1.5,
            ls="none", zorder=6)
    for (cx, cy), name in zip(coords, names):
        if name:
            ax.annotate(_short(name), (cx, cy), xytext=(5, 5), textcoords="offset points",
                        fontsize=8.5, zorder=7,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))


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


def loss_cap(arrays: Sequence[np.ndarray], rise: float = 0.1) -> float:
    """A top for a loss axis or colour scale that shows every basin: near the minima, not at
    the grid's worst corner.

    The lowest of the arrays' lower quartiles (so the flattest panel's basin fills the range
    and a sharp one's shows as a smaller one), raised to at least the lowest value plus
    ``2 rise``
    (so every basin's edge at ``+rise`` is inside), rounded up to 1, 2 or 5 times a power of
    ten, and never above the largest value.

    Args:
        arrays: the values of each curve or panel (NaN ignored).
        rise: the loss rise that bounds a basin.

    Returns:
        The cap.
    """
    parts = [np.asarray(a, float).ravel() for a in arrays]
    parts = [p[np.isfinite(p)] for p in parts]
    parts = [p for p in parts if p.size]
    if not parts:
        raise LandscapeError("no computed points to plot")
    lowest = min(float(p.min()) for p in parts)
    highest = max(float(p.max()) for p in parts)
    cap = _round_up(max(min(float(np.quantile(p, 0.25)) for p in parts), lowest + 2 * rise))
    return cap if cap < highest else highest


def _round_up(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value`` (> 0)."""
    if not value > 0:
        return value
    decade = 10.0 ** np.floor(np.log10(value))
    return float(next(m * decade for m in (1, 2, 5, 10) if m * decade >= value * (1 - 1e-12)))


def _is_round(value: float) -> bool:
    """Two significant digits at most (0.5, 1.5, 20, 0.02; not 0.538119)."""
    return value != 0 and np.isclose(value, float(f"{value:.2g}"), rtol=1e-9, atol=0)


def _width_bar(ax, x: np.ndarray, y: np.ndarray, rise: float, color: str) -> str:
    """Draw the basin's extent at ``rise`` above the value at 0; return the legend text."""
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


# ----------------------------------------------------------------------------- 2-D panels

def shared_scale(arrays: Sequence[np.ndarray], levels: int | Sequence[float] = 20,
                 log: bool = False, vmin: float | None = None,
                 vmax: float | None = None) -> tuple[Normalize, np.ndarray]:
    """One colour normalization and one set of contour levels for several panels.

    Args:
        arrays: the values of every panel (NaN ignored).
        levels: number of levels, or the levels themselves.
        log: logarithmic levels and colours (non-positive values are left out).
        vmin, vmax: colour limits; default the smallest and largest computed value. A ``vmax``
            below the largest value clips: higher values take the top colour.

    Returns:
        ``(norm, levels)``.
    """
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    if log:
        vals = vals[vals > 0]
    if vals.size == 0:
        raise LandscapeError("no computed points to plot" + (" (none positive for a log scale)"
                                                             if log else ""))
    lo = float(vals.min()) if vmin is None else float(vmin)
    hi = float(vals.max()) if vmax is None else float(vmax)
    if log and lo <= 0:
        lo = float(vals.min())
    if not lo < hi:
        if vmin is not None and vmax is not None:
            raise LandscapeError(f"vmin ({vmin}) must be smaller than vmax ({vmax})")
        if vmax is not None:
            raise LandscapeError(f"vmax ({vmax}) must be above the smallest value ({lo:.4g})")
        lo, hi = (lo, lo * 10) if log else (lo, lo + max(abs(lo), 1.0) * 1e-3)
    if np.ndim(levels) == 0:
        n = int(levels)
        if n < 2:
            raise LandscapeError(f"levels must be at least 2, got {n}")
        level_arr = _nice_log_levels(lo, hi, n) if log else _nice_levels(lo, hi, n)
    else:
        level_arr = np.unique(np.asarray(levels, dtype=float))
        if level_arr.size < 2:
            raise LandscapeError("give at least two contour levels")
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    return norm, level_arr


def _nice_levels(lo: float, hi: float, n: int) -> np.ndarray:
    """About ``n`` round-numbered levels from ``lo`` to ``hi`` (both ends kept, so filled
    contours cover every value in range)."""
    inner = MaxNLocator(nbins=max(n - 1, 1), steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    inner = inner[(inner > lo + 1e-9 * span) & (inner < hi - 1e-9 * span)]
    return np.concatenate([[lo], inner, [hi]])


_LOG_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
                  (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0))


def _nice_log_levels(lo: float, hi: float, n: int) -> np.ndarray:
    """About ``n`` round levels (1, 2, 5 x 10^k and finer) spaced about evenly on a log
    scale from ``lo`` to ``hi`` (both ends kept, as in ``_nice_levels``)."""
    decades = np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    inner = np.array([])
    for mantissas in _LOG_MANTISSAS:
        values = np.array([m * 10.0 ** d for d in decades for m in mantissas])
        inner = values[(values > lo * (1 + 1e-9)) & (values < hi * (1 - 1e-9))]
        if len(inner) >= n - 2:
            break
    return np.concatenate([[lo], inner, [hi]])


def _colorbar_ticks(norm: Normalize) -> np.ndarray:
    lo, hi = norm.vmin, norm.vmax
    if isinstance(norm, LogNorm):
        ticks = LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
        if np.sum((ticks >= lo) & (ticks <= hi)) > 8:
            ticks = LogLocator(subs=(1.0,)).tick_values(lo, hi)
    else:
        ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    return ticks[(ticks >= lo - 1e-9 * span) & (ticks <= hi + 1e-9 * span)]


def _grid_panels(n: int, size: tuple[float, float] | None, colorbar: bool = True,
                 share: bool = True):
    size = size or (4.3 * n + (1.1 if colorbar else 0.3), 4.3)
    # "compressed" lays out equal-aspect panels and their colour bar without wasted space
    fig = _new_figure(size, "compressed")
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
            ticks = _colorbar_ticks(norm)
            marked = [v for v in cs.levels if np.isclose(v, ticks, rtol=1e-6).any()]
            if not marked:  # never a label like 0.538119: round levels only
                marked = [v for v in cs.levels if _is_round(v)][::max(1, len(cs.levels) // 5)]
            if marked:
                ax.clabel(cs, marked, inline=True, fontsize=8,
                          fmt=FuncFormatter(lambda v, _: f"{v:g}"))
        return cs
    raise LandscapeError(f"unknown plot kind {kind!r}; use one of {', '.join(KINDS_2D)}")


def _basin_edge(ax, x, y, z, rise: float) -> str:
    """Dashed line where the loss is ``rise`` above its value at the centre; the width text."""
    if np.isfinite(z).sum() < 4:
        return ""
    shape = basin_shape(x, np.where(np.isfinite(z), z, np.inf), y, rise=rise)
    ax.contour(x, y, np.ma.masked_invalid(z.T), levels=[shape.center_value + rise],
               colors="white", linewidths=1.6, linestyles="--", zorder=4)
    width = f"{shape.width:.3g}" if shape.width is not None else "beyond the grid"
    return f"basin width {width} at +{rise:g} (dashed)"


def _mark_minimum(ax, x, y, z) -> None:
    if not np.isfinite(z).any():
        return
    i, j = np.unravel_index(np.nanargmin(z), z.shape)
    ax.plot(x[i], y[j], marker="*", markersize=14, color="white", markeredgecolor="black",
            markeredgewidth=1.0, linestyle="none", label=f"minimum {z[i, j]:.3g}", zorder=5)
    ax.legend(loc="upper right", fontsize=8.5, handletextpad=0.3, borderpad=0.3)


def _colorbar(fig, mappable, axes, label, extend) -> None:
    cb = fig.colorbar(mappable, ax=axes, shrink=0.92, pad=0.02, aspect=25, extend=extend)
    cb.set_ticks(_colorbar_ticks(mappable.norm))
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.minorticks_off()
    cb.set_label(label)


def plot_contours(surfaces: Surface | Sequence[Surface], metric: str = "train_loss",
                  kind: str = "contour", *, levels: int | Sequence[float] = 20,
                  log: bool = False, vmin: float | None = None, vmax: float | None = None,
                  labels: Sequence[str] | None = None,
                  axis_names: Sequence[str] | None = None, title: str | None = None,
                  cmap: str = "viridis", mark_min: bool = True, anchors: bool = True,
                  rise: float | None = None, size: tuple[float, float] | None = None,
                  out: str | os.PathLike | None = None, dpi: float | None = None,
                  share_axes: bool = True) -> Figure:
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
        size: width, height in inches.
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.
        share_axes: one x and y range for all panels; False for planes of different
            extent (a random plane beside the plane through three minima).

    Returns:
        The figure (``fig.axes[:n]`` are the panels, the last axes the colour bar).
    """
    if kind not in KINDS_2D:
        raise LandscapeError(f"unknown plot kind {kind!r}; use one of {', '.join(KINDS_2D)}")
    items = _as_list(surfaces)
    check_cmap(cmap)
    values = [metric_values(s, metric, 2, f"a {kind} plot") for s in items]
    if vmax is None and metric.endswith("loss"):
        vmax = loss_cap(values, rise=rise or 0.1)
    norm, lv = shared_scale(values, levels, log, vmin,
                            vmax if vmax is None or np.isfinite(vmax) else None)
    extend = _extend(values, norm)
    names = _panel_labels(labels, items) if len(items) > 1 or labels else [""]
    names = names + [""] * (len(items) - len(names))
    with rc_context(STYLE):
        fig, axes = _grid_panels(len(items), size, share=share_axes)
        mappable = None
        for k, (ax, s, z) in enumerate(zip(axes, items, values)):
            x, y = np.asarray(s.x, float), np.asarray(s.y, float)
            mappable = _draw_panel(ax, x, y, z, kind, norm, lv, cmap, extend)
            if rise:
                names[k] = "\n".join(filter(None, [names[k], _basin_edge(ax, x, y, z, rise)]))
            if anchors:
                _anchor_points(ax, s)
            if mark_min:
                _mark_minimum(ax, x, y, z)
            _decorate(ax, s, axis_names, names[k], first=k == 0)
        _colorbar(fig, mappable, axes, pretty(metric) + (" (log scale)" if log else ""), extend)
        if title:
            fig.suptitle(title)
    return _finish(fig, out, dpi)


def _extend(values: Sequence[np.ndarray], norm: Normalize) -> str:
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    over = finite.size and finite.max() > norm.vmax
    under = finite.size and finite.min() < norm.vmin
    return {(True, True): "both", (True, False): "max", (False, True): "min"}.get(
        (bool(over), bool(under)), "neither")


def _decorate(ax, surface, axis_names, panel_title, first, variance=None) -> None:
    xl, yl = axis_labels(surface, axis_names, variance)
    ax.set_xlabel(xl)
    if first:
        ax.set_ylabel(yl)
    ax.set_aspect("equal", adjustable="box")
    for axis in (ax.xaxis, ax.yaxis):  # few ticks, so neighbouring panels' labels never touch
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    if panel_title:
        ax.set_title(panel_title)


# ----------------------------------------------------------------------------- trajectories

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
    coords = _as_path(path) if path is not None else stored_path
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
    return _finish(fig, out, dpi)


# ----------------------------------------------------------------------------- curvature

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
    items = _as_list(surfaces)
    check_cmap(cmap)
    ratios = [eig_ratio(s) for s in items]
    norm, lv = shared_scale(ratios, 11, False, 0.0, vmax)
    extend = "max" if any(np.nanmax(r) > vmax for r in ratios if np.isfinite(r).any()) \
        else "neither"
    names = _panel_labels(labels, items) if len(items) > 1 or labels else [""]
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
    return _finish(fig, out, dpi)


def density_arrays(spectrum: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(grid, density)`` from a pair of arrays or a dict.

    Accepts ``(grid, density)``, ``{"grid": [...], "density": [...]}`` or
    ``{"density": {"grid": [...], "density": [...]}}`` (the layout ``landscape hessian
    --density`` writes).

    Raises:
        LandscapeError: anything else, or arrays of unequal length / non-finite values.
    """
    if isinstance(spectrum, dict):
        inner = spectrum.get("density")
        src = inner if isinstance(inner, dict) else spectrum
        if not ("grid" in src and "density" in src):
            raise LandscapeError('not a spectral density: expected {"density": {"grid": [...], '
                                 '"density": [...]}}')
        grid, dens = src["grid"], src["density"]
    elif isinstance(spectrum, (tuple, list)) and len(spectrum) == 2:
        grid, dens = spectrum
    else:
        raise LandscapeError("a spectral density is a (grid, density) pair or a dict with "
                             "'grid' and 'density'")
    try:
        grid = np.asarray(grid, dtype=float)
        dens = np.asarray(dens, dtype=float)
    except (TypeError, ValueError):
        raise LandscapeError("spectral density: grid and density must be lists of numbers") \
            from None
    if grid.ndim != 1 or grid.shape != dens.shape or grid.size < 2:
        raise LandscapeError(f"spectral density: grid {grid.shape} and density {dens.shape} "
                             "must be 1-D, of equal length >= 2")
    if not (np.isfinite(grid).all() and np.isfinite(dens).all()):
        raise LandscapeError("spectral density: grid and density must be finite")
    return grid, dens


def _is_single_spectrum(spectra: Any) -> bool:
    if isinstance(spectra, dict):
        return True
    if isinstance(spectra, (tuple, list)) and len(spectra) == 2:
        return all(np.ndim(a) == 1 and not isinstance(a, dict) and
                   np.asarray(a).dtype.kind in "fiu" for a in spectra)
    return False


def plot_density(spectra: Any, *, labels: Sequence[str] | None = None, log: bool = True,
                 floor: float = 1e-6, xlabel: str = r"eigenvalue $\lambda$",
                 title: str | None = None, size: tuple[float, float] = (6.0, 4.0),
                 out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Hessian spectral density (one or several overlaid, e.g. small vs large batch).

    Args:
        spectra: one spectrum or a list of them; each as accepted by ``density_arrays``.
        labels: one legend label per spectrum.
        log: logarithmic density axis (shows the small outlier bumps).
        floor: bottom of the log axis relative to the highest peak.
        xlabel: x-axis label.
        title: figure title.
        size: width, height in inches.
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.

    Returns:
        The figure.
    """
    items = [spectra] if _is_single_spectrum(spectra) else list(spectra)
    if not items:
        raise LandscapeError("no spectra to plot")
    pairs = [density_arrays(s) for s in items]
    if labels is not None and len(labels) != len(pairs):
        raise LandscapeError(f"{len(labels)} labels for {len(pairs)} spectra")
    with rc_context(STYLE):
        fig = _new_figure(size)
        ax = fig.add_subplot()
        peak = max(float(d.max()) for _, d in pairs)
        for k, (grid, dens) in enumerate(pairs):
            color = RUN_COLORS[k % len(RUN_COLORS)]
            label = labels[k] if labels is not None else None
            # below the floor the curve leaves the axes rather than running along it
            shown = np.where(dens > peak * floor * 1e-3, dens, peak * floor * 1e-3) if log \
                else dens
            ax.plot(grid, shown, color=color, lw=1.8, label=label)
            ax.fill_between(grid, peak * floor * 1e-3 if log else 0.0, shown, color=color,
                            alpha=0.12, linewidth=0)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(peak * floor, peak * 3)
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density" + (" (log scale)" if log else ""))
        ax.grid(True, alpha=0.25)
        if labels is not None:
            ax.legend(loc="upper right")
        if title:
            ax.set_title(title)
    return _finish(fig, out, dpi)


def plot_eigenvalues(spectra: Sequence[Sequence[float]] | Sequence[float], *,
                     labels: Sequence[str] | None = None, title: str | None = None,
                     size: tuple[float, float] = (6.0, 4.0),
                     out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Hessian eigenvalues as bars, largest first (rank 1 is the top eigenvalue); several
    spectra (e.g. small vs large batch) side by side at each rank, on one axis.

    Args:
        spectra: one list of eigenvalues or a list of them (any order; a spectrum file's
            ``["eigenvalues"]["values"]``); negative values are drawn below zero.
        labels: one legend label per spectrum.
        title, size, out, dpi: figure title, size in inches, where to save, resolution.

    Returns:
        The figure.
    """
    single = len(spectra) > 0 and np.ndim(spectra[0]) == 0
    items = [np.asarray(spectra, dtype=float)] if single else \
        [np.asarray(s, dtype=float) for s in spectra]
    if not items or any(v.ndim != 1 or v.size == 0 for v in items):
        raise LandscapeError("plot_eigenvalues needs one or more non-empty lists of eigenvalues")
    if not all(np.isfinite(v).all() for v in items):
        raise LandscapeError("eigenvalues must be finite")
    if labels is not None and len(labels) != len(items):
        raise LandscapeError(f"{len(labels)} labels for {len(items)} spectra")
    width = 0.8 / len(items)
    with rc_context(STYLE):
        fig = _new_figure(size)
        ax = fig.add_subplot()
        for k, values in enumerate(items):
            ranks = np.arange(1, values.size + 1)
            ax.bar(ranks + (k - (len(items) - 1) / 2) * width, np.sort(values)[::-1], width,
                   color=RUN_COLORS[k % len(RUN_COLORS)],
                   label=labels[k] if labels is not None else None)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(np.arange(1, max(v.size for v in items) + 1))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
        ax.set_xlabel("rank (1 = largest)")
        ax.set_ylabel(r"eigenvalue $\lambda$")
        ax.grid(True, axis="y", alpha=0.25)
        if labels is not None:
            ax.legend(loc="upper right")
        if title:
            ax.set_title(title)
    return _finish(fig, out, dpi)


# ----------------------------------------------------------------------------- runs and sweeps

def plot_history(histories: Sequence[Sequence[dict[str, Any]]], *,
                 labels: Sequence[str] | None = None,
                 metrics: Sequence[str] = ("loss", "accuracy"), log: bool = True,
                 size: tuple[float, float] | None = None, title: str | None = None,
                 out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Training curves of several runs against epoch (log axis): one panel per entry of
    ``metrics`` (``loss``, ``accuracy``), train solid and test dashed, one colour per run.

    Args:
        histories: per run, the per-epoch entries ``landscape.train`` records (``epoch`` and
            any of ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``).
        labels: one legend label per run.
        metrics: panels to draw.
        log: logarithmic loss axis.
        size, title, out, dpi: figure size, title, where to save, resolution.

    Returns:
        The figure.
    """
    runs = [list(h) for h in histories]
    if not runs or any(not h for h in runs):
        raise LandscapeError("plot_history needs at least one non-empty history")
    names = list(labels) if labels else [f"run {i + 1}" for i in range(len(runs))]
    keys = {"loss": ("loss", 1.0, "loss"), "accuracy": ("acc", 100.0, "accuracy (%)")}
    unknown = [m for m in metrics if m not in keys]
    if unknown:
        raise LandscapeError(f"unknown history metric {unknown[0]!r}: use loss or accuracy")
    fig = _new_figure(size or (5.0 * len(metrics), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        suffix, scale, ylabel = keys[metric]
        for k, (hist, name) in enumerate(zip(runs, names)):
            epochs = np.array([e["epoch"] for e in hist], dtype=float)
            for split, style in (("train", "-"), ("test", "--")):
                if f"{split}_{suffix}" not in hist[0]:
                    continue
                values = np.array([e[f"{split}_{suffix}"] for e in hist], dtype=float) * scale
                ax.plot(epochs, values, style, color=f"C{k}", label=f"{name}, {split}")
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log and metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _finish(fig, out, dpi)


def plot_sweep(rows: Sequence[dict[str, Any]], x: str, ys: Sequence[str], *,
               ylabel: str | None = None, log: bool = False, title: str | None = None,
               size: tuple[float, float] = (6.0, 4.0), out: str | os.PathLike | None = None,
               dpi: float | None = None) -> Figure:
    """Quantities against a swept setting (e.g. batch size, log2 axis), one line per key.

    Args:
        rows: one dict per run; rows missing a key (or holding None) are skipped for it.
        x: the key on the horizontal axis.
        ys: the keys to draw.
        ylabel, log, title, size, out, dpi: labels, log value axis, figure options.

    Returns:
        The figure.
    """
    fig = _new_figure(size)
    ax = fig.subplots()
    drawn = 0
    for k, key in enumerate(ys):
        pts = sorted((float(r[x]), float(r[key])) for r in rows
                     if r.get(key) is not None and r.get(x) is not None)
        if not pts:
            continue
        px, py = np.array(pts).T
        ax.plot(px, py, "o-", color=f"C{k}", label=pretty(key))
        drawn += 1
    if not drawn:
        raise LandscapeError(f"no values to plot for {', '.join(ys)}")
    ax.set_xscale("log", base=2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(pretty(x))
    ax.set_ylabel(ylabel or pretty(ys[0]))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return _finish(fig, out, dpi)


# ----------------------------------------------------------------------------- sharpness views

def plot_sharpness(histories: Sequence[Sequence[dict[str, Any]]], *,
                   labels: Sequence[str] | None = None,
                   thresholds: Sequence[float | None] | None = None,
                   threshold_names: Sequence[str] | None = None, log: bool = True,
                   title: str | None = None, size: tuple[float, float] = (6.0, 4.0),
                   out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """The top Hessian eigenvalue against optimizer steps, one colour per run, with each run's
    stability threshold (e.g. ``2/lr``, ``2(1+beta)/lr``) as a dashed line of its colour.

    Args:
        histories: per run, history entries with ``step`` and ``lambda_max`` (entries whose
            ``lambda_max`` is missing or NaN are skipped), as ``train(track_eigenvalues=N)``
            records them.
        labels: one legend label per run.
        thresholds: one threshold per run (None: none drawn for it).
        threshold_names: how each threshold is written in the legend (e.g. ``2(1+β)/lr``).
        log: logarithmic eigenvalue axis (runs and thresholds often differ 10x or more).
        title, size, out, dpi: figure options.

    Returns:
        The figure.
    """
    runs = [list(h) for h in histories]
    names = list(labels) if labels else [f"run {i + 1}" for i in range(len(runs))]
    limits = list(thresholds) if thresholds is not None else [None] * len(runs)
    texts = list(threshold_names) if threshold_names else ["threshold"] * len(runs)
    if not runs or len(names) != len(runs) or len(limits) != len(runs):
        raise LandscapeError("plot_sharpness needs one label and one threshold per run")
    with rc_context(STYLE):
        fig = _new_figure(size)
        ax = fig.add_subplot()
        drawn = 0
        for k, (hist, name, limit) in enumerate(zip(runs, names, limits)):
            color = RUN_COLORS[k % len(RUN_COLORS)]
            pts = np.array([(e["step"], e["lambda_max"]) for e in hist
                            if e.get("lambda_max") is not None
                            and np.isfinite(e["lambda_max"])], dtype=float).reshape(-1, 2)
            if len(pts):
                ax.plot(pts[:, 0], pts[:, 1], "o-", ms=3, color=color,
                        label=rf"{name}: $\lambda_{{max}}$")
                drawn += 1
            if limit is not None:
                ax.axhline(limit, color=color, ls="--", lw=1.3,
                           label=f"{name}: {texts[k]} = {limit:.3g}")
        if not drawn:
            raise LandscapeError("no lambda_max in these histories (train with "
                                 "--track-eigenvalues)")
        if log:
            ax.set_yscale("log")
        ends = [max(e["step"] for e in h) for h in runs if h]
        if min(ends) > 0 and max(ends) > 4 * min(ends):  # runs of very different lengths
            ax.set_xscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(r"top Hessian eigenvalue $\lambda_{max}$")
        ax.grid(True, alpha=0.25, which="both")
        ax.figure.legend(loc="outside upper center", ncol=2, fontsize=8.5)
        if title:
            ax.set_title(title)
    return _finish(fig, out, dpi)


def plot_batch_spread(spreads: Sequence[dict[str, Any]], *, title: str | None = None,
                      size: tuple[float, float] = (6.0, 4.0),
                      out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Histograms of the top eigenvalue over mini-batches, one per batch size, on shared bins,
    with the full-data value as a vertical line.

    Args:
        spreads: per batch size, ``{"batch_size", "values", "full"}`` (as
            ``BatchSpread.to_dict()`` gives).
        title, size, out, dpi: figure options.

    Returns:
        The figure.
    """
    if not spreads:
        raise LandscapeError("no per-batch eigenvalues to plot")
    every = np.concatenate([np.asarray(s["values"], float) for s in spreads])
    full = next((s["full"] for s in spreads if s.get("full") is not None), None)
    span = every if full is None else np.append(every, full)
    log = bool(span.min() > 0 and span.max() / span.min() > 10)
    bins = (np.geomspace(span.min(), span.max(), 25) if log
            else np.linspace(span.min(), span.max(), 25))
    with rc_context(STYLE):
        fig = _new_figure(size)
        ax = fig.add_subplot()
        for k, s in enumerate(spreads):
            vals = np.asarray(s["values"], float)
            spread = f" ± {vals.std(ddof=1):.3g}" if len(vals) > 1 else ""
            ax.hist(vals, bins=bins, histtype="stepfilled", alpha=0.35,
                    color=RUN_COLORS[k % len(RUN_COLORS)], edgecolor="none")
            ax.hist(vals, bins=bins, histtype="step", lw=1.6,
                    color=RUN_COLORS[k % len(RUN_COLORS)],
                    label=f"batch {s['batch_size']}: {vals.mean():.3g}{spread} "
                          f"({len(vals)} batches)")
        if full is not None:
            ax.axvline(full, color="black", ls="--", lw=1.4, label=f"full data: {full:.3g}")
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.04)
        ax.set_xlabel(r"top Hessian eigenvalue $\lambda_{max}$ of a mini-batch's loss")
        ax.set_ylabel("batches")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.25)
        ax.figure.legend(loc="outside upper center", ncol=1, fontsize=8.5)
        if title:
            ax.set_title(title)
    return _finish(fig, out, dpi)
