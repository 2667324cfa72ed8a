"""The barrier matrix of N minima as heat maps: the straight-line barrier of every pair in
training loss and in test error, minima ordered by basin with each basin outlined.

Draws the numbers it is given (``landscape.barriers.BarrierMatrix.to_dict()`` or arrays);
nothing here evaluates a model.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import LandscapeError
from .style import STYLE, finish_figure, new_figure


def plot_barrier_matrix(matrix: dict[str, Any], *, title: str | None = None,
                        size: tuple[float, float] | None = None,
                        out: str | os.PathLike | None = None, dpi: float | None = None
                        ) -> Figure:
    """Heat maps of the pairwise barriers (training loss; test error in points), one colour
    scale from zero per panel, each cell labelled with its value; the minima ordered by
    basin, each basin a box on the diagonal (and the trained-curve barriers in a third and
    fourth panel when the matrix has them).

    Args:
        matrix: a dict with ``labels``, ``train_barrier``, ``test_error_barrier`` (N x N,
            None for a missing value), optional ``groups`` (``[{"members": [labels]}]``)
            and ``curve_train_barrier`` / ``curve_test_error_barrier``.
        title: figure title.
        size: width, height in inches (default: from N and the panels).
        out: save to this .png/.pdf/.svg file.
        dpi: resolution for PNG.

    Returns:
        The figure.
    """
    labels = list(matrix.get("labels") or [])
    n = len(labels)
    if n < 2:
        raise LandscapeError("a barrier matrix needs at least two labels")
    panels = [("train_barrier", "training-loss barrier", 1.0),
              ("test_error_barrier", "test-error barrier (points)", 100.0)]
    panels += [(k, t, s) for k, t, s in (
        ("curve_train_barrier", "trained curve: training-loss barrier", 1.0),
        ("curve_test_error_barrier", "trained curve: test-error barrier (points)", 100.0))
        if matrix.get(k) is not None]
    order, boxes = _order(labels, matrix.get("groups"))
    cell = 0.55 if n <= 8 else 0.35
    with rc_context(STYLE):
        fig = new_figure(size or (len(panels) * (n * cell + 1.9) + 0.3, n * cell + 1.6))
        for k, (key, name, scale) in enumerate(panels):
            values = _grid(matrix.get(key), n, key) * scale
            _panel(fig.add_subplot(1, len(panels), k + 1), values[np.ix_(order, order)],
                   [labels[i] for i in order], boxes, name, fig)
        if title:
            fig.suptitle(title)
    return finish_figure(fig, out, dpi)


def _grid(values: Any, n: int, key: str) -> np.ndarray:
    try:
        arr = np.array([[np.nan if v is None else v for v in row] for row in values],
                       dtype=float)
    except (TypeError, ValueError):
        raise LandscapeError(f"{key} must be an {n} x {n} matrix of numbers") from None
    if arr.shape != (n, n):
        raise LandscapeError(f"{key} has shape {arr.shape}, the labels give ({n}, {n})")
    return arr


def _order(labels: Sequence[str], groups: Any) -> tuple[list[int], list[tuple[int, int]]]:
    """The minima ordered basin by basin, and each basin's (start, size) in that order."""
    if not groups:
        return list(range(len(labels))), []
    index = {name: i for i, name in enumerate(labels)}
    order, boxes = [], []
    for g in groups:
        members = [index[m] for m in (g["members"] if isinstance(g, dict) else g)]
        boxes.append((len(order), len(members)))
        order += members
    if sorted(order) != list(range(len(labels))):
        raise LandscapeError("the groups must hold every label once")
    return order, boxes


def _panel(ax, values: np.ndarray, labels: list[str], boxes, name: str, fig: Figure) -> None:
    n = len(labels)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    image = ax.imshow(np.ma.masked_invalid(values), cmap="magma_r", vmin=0.0,
                      vmax=top if top > 0 else 1.0)
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            dark = np.isfinite(v) and top > 0 and v > 0.55 * top
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.3g}", ha="center",
                    va="center", fontsize=8 if n <= 6 else 6,
                    color="white" if dark else "black")
    for start, size in boxes:
        ax.add_patch(Rectangle((start - 0.5, start - 0.5), size, size, fill=False,
                               edgecolor="#56B4E9", linewidth=2.6))
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_title(name, fontsize=10.5)
    fig.colorbar(image, ax=ax, shrink=0.8)
