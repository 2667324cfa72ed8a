"""Figures of Hessian spectra: spectral densities overlaid, the top eigenvalues as bars by
rank, the spread of the top eigenvalue over mini-batches of several sizes, and the
curvature of each layer's diagonal block.

Inputs are the arrays or dicts that ``landscape hessian`` writes; bad ones fail with a
LandscapeError before anything is drawn. Nothing here computes an eigenvalue.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import LandscapeError
from .style import RUN_COLORS, STYLE, finish_figure, new_figure


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
        fig = new_figure(size)
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
    return finish_figure(fig, out, dpi)


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
        fig = new_figure(size)
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
    return finish_figure(fig, out, dpi)


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
        fig = new_figure(size)
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
    return finish_figure(fig, out, dpi)


def plot_layer_curvature(blocks: Sequence[dict[str, Any]], *, title: str | None = None,
                         size: tuple[float, float] | None = None,
                         out: str | os.PathLike | None = None, dpi: float | None = None
                         ) -> Figure:
    """Per-layer curvature as horizontal bars: each diagonal block's top eigenvalue, and its
    trace with the estimate's standard error and its share of the blocks' summed trace; the
    layers in the parameters' order, top to bottom, with their sizes.

    Args:
        blocks: ``{"name", "n_params", "top", "trace", "trace_stderr"}`` per block (the
            ``blocks`` rows of a ``landscape hessian --by-layer`` spectrum file).
        title, size, out, dpi: figure title, size in inches, where to save, resolution.

    Returns:
        The figure.
    """
    rows = list(blocks)
    keys = ("name", "n_params", "top", "trace", "trace_stderr")
    if not rows or any(not isinstance(b, dict) or any(k not in b for k in keys) for b in rows):
        raise LandscapeError("plot_layer_curvature needs blocks with " + ", ".join(keys))
    top, trace, err = (np.array([b[k] for b in rows], dtype=float)
                       for k in ("top", "trace", "trace_stderr"))
    if not (np.isfinite(top).all() and np.isfinite(trace).all()):
        raise LandscapeError("block eigenvalues and traces must be finite")
    names = [f"{b['name']}  ({int(b['n_params']):,})" for b in rows]
    total = trace.sum()
    y = np.arange(len(rows))
    with rc_context(STYLE):
        fig = new_figure(size or (8.5, 1.4 + 0.42 * len(rows)))
        axes = fig.subplots(1, 2, sharey=True)
        panels = ((axes[0], top, None, "top eigenvalue of the block",
                   [f"{v:.3g}" for v in top]),
                  (axes[1], trace, err, "trace of the block (+- s.e.)",
                   [f"{v:.3g}" + (f" ({100 * v / total:.0f}%)" if total > 0 else "")
                    for v in trace]))
        for k, (ax, values, xerr, label, texts) in enumerate(panels):
            ax.barh(y, values, xerr=xerr, color=RUN_COLORS[k], height=0.65,
                    error_kw={"lw": 1.0, "capsize": 2})
            lo, hi = min(0.0, float(values.min())), max(0.0, float(values.max()))
            span = hi - lo or 1.0
            reach = values + (0.0 if xerr is None else np.abs(xerr))  # past the error bar
            for yy, x, text in zip(y, np.maximum(reach, 0.0), texts):
                ax.text(x + 0.02 * span, yy, text, va="center", fontsize=8.5)
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_xlabel(label)
            ax.grid(True, axis="x", alpha=0.25)
            ax.set_xlim(lo - 0.05 * span, hi + 0.45 * span)
        axes[0].set_yticks(y, names)
        axes[0].set_ylabel("block (parameters)")
        axes[0].invert_yaxis()
        if title:
            fig.suptitle(title)
    return finish_figure(fig, out, dpi)
