"""Shared look and saving of the 2-D figures: fonts and line widths, the run colours, a
figure on its own Agg canvas (no pyplot state, no display), colour-map checks, and saving
atomically in the format the suffix names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import LandscapeError
from .outputs import atomic_suffixed, figure_format

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


def finish_figure(fig: Figure, out: str | os.PathLike | None, dpi: float | None) -> Figure:
    """Save ``fig`` to ``out`` when given (see ``save_figure``); return it either way."""
    if out is not None:
        save_figure(fig, out, dpi)
    return fig


def new_figure(size: tuple[float, float], layout: str = "constrained") -> Figure:
    """An empty figure of ``size`` inches on its own Agg canvas, laid out by ``layout``."""
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def check_cmap(name: str) -> str:
    """``name`` if matplotlib knows the colour map; else a LandscapeError naming a few."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise LandscapeError(f"unknown colour map {name!r}; e.g. viridis, magma, cividis, "
                             "plasma, coolwarm (any matplotlib colour map)")
    return name
