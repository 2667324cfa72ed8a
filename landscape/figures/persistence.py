"""The persistence of a surface drawn two ways: the diagram (each minimum's birth against its
death, basins apart from noise, the basin rule's line) and the merge tree (each minimum a
branch from its value up to the saddle where it joins an older one).

Draws ``landscape.persistence.PersistenceDiagram.to_dict()`` as given (the JSON of
``landscape shape --diagram``); nothing here computes a pair.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import LandscapeError
from .style import RUN_COLORS, STYLE, finish_figure, new_figure

BASIN, NOISE = RUN_COLORS[0], "#999999"


def plot_persistence(diagram: dict[str, Any], *, max_pairs: int = 60,
                     title: str | None = None, size: tuple[float, float] = (10.0, 4.2),
                     out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Persistence diagram and merge tree of one surface.

    Args:
        diagram: ``{"pairs": [...], "rule": ...}`` as ``PersistenceDiagram.to_dict()`` writes
            it (each pair: ``birth``, ``death`` (None: never dies), ``depth``, ``basin``,
            ``minimum`` and ``merges_into`` with their ``index``).
        max_pairs: draw the deepest this many (an older minimum is never shallower than one
            that merges into it, so each drawn branch keeps its parent).
        title, size, out, dpi: figure title, size in inches, where to save, resolution.

    Returns:
        The figure.
    """
    pairs = _pairs(diagram)[:max(1, max_pairs)]
    with rc_context(STYLE):
        fig = new_figure(size)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5]})
        top = _top(pairs)
        _diagram(left, pairs, top)
        _tree(right, pairs, top)
        shown = len(pairs)
        total = len(diagram["pairs"])
        note = f" (the deepest {shown} of {total})" if shown < total else ""
        right.set_title(f"merge tree{note}", fontsize=10.5)
        left.set_title(f"persistence diagram; basin rule: {diagram.get('rule', '?')}",
                       fontsize=10.5)
        left.legend(handles=[Line2D([], [], color=BASIN, marker="o", lw=0, label="basin"),
                             Line2D([], [], color=NOISE, marker="o", lw=0,
                                    label="below the rule")],
                    loc="lower right", fontsize=9)
        if title:
            fig.suptitle(title)
    return finish_figure(fig, out, dpi)


def _pairs(diagram: Any) -> list[dict[str, Any]]:
    try:
        pairs = list(diagram["pairs"])
        for p in pairs:
            float(p["birth"]), float(p["depth"]), tuple(p["minimum"]["index"])
            bool(p["basin"])
            if p["death"] is not None:
                float(p["death"]), tuple(p["merges_into"]["index"])
    except (KeyError, TypeError, ValueError):
        raise LandscapeError("not a persistence diagram: expected the JSON of "
                             "`landscape shape --diagram` (pairs with birth, death, depth, "
                             "basin, minimum and merges_into)") from None
    if not pairs:
        raise LandscapeError("the persistence diagram has no pairs")
    return sorted(pairs, key=lambda p: (-float(p["depth"]), float(p["birth"])))


def _top(pairs: list[dict[str, Any]]) -> float:
    """The height drawn for "never dies": a little above the highest saddle (the region's
    far corners would squeeze every saddle to the bottom)."""
    births = [float(p["birth"]) for p in pairs]
    hi = max([float(p["death"]) for p in pairs if p["death"] is not None] + births)
    return hi + 0.12 * (hi - min(births) or 1.0)


def _diagram(ax, pairs: list[dict[str, Any]], top: float) -> None:
    """Birth against death; a minimum that never dies sits on a line above the others."""
    births = np.array([p["birth"] for p in pairs], dtype=float)
    lo = float(births.min())
    for p, b in zip(pairs, births):
        d = top if p["death"] is None else float(p["death"])
        ax.scatter([b], [d], s=26, color=BASIN if p["basin"] else NOISE, zorder=3,
                   marker="^" if p["death"] is None else "o")
    ax.plot([lo, top], [lo, top], color="black", lw=0.8)
    ax.axhline(top, color="black", lw=0.6, ls=":")
    ax.text(lo, top, " never dies", va="bottom", fontsize=8.5)
    ax.set_xlabel("birth (value at the minimum)")
    ax.set_ylabel("death (value at the saddle)")
    ax.grid(True, alpha=0.25)


def _tree(ax, pairs: list[dict[str, Any]], top: float) -> None:
    """Each minimum a vertical branch from birth to death, joined at the death's height to
    the minimum it merges into; branches laid out depth-first from each root, the lowest
    joins nearest their parent; a root's branch ends at ``top``."""
    key = {tuple(p["minimum"]["index"]): k for k, p in enumerate(pairs)}
    children: dict[int, list[int]] = {k: [] for k in range(len(pairs))}
    roots = []
    for k, p in enumerate(pairs):
        parent = None if p["death"] is None else key.get(tuple(p["merges_into"]["index"]))
        (roots if parent is None else children[parent]).append(k)
    xs: dict[int, int] = {}

    def place(k: int) -> None:
        xs[k] = len(xs)
        for c in sorted(children[k], key=lambda c: float(pairs[c]["death"])):
            place(c)

    for r in roots:
        place(r)
    for k, p in enumerate(pairs):
        color = BASIN if p["basin"] else NOISE
        end = top if p["death"] is None else float(p["death"])
        ax.plot([xs[k], xs[k]], [float(p["birth"]), end], color=color, lw=2.0)
        ax.scatter([xs[k]], [float(p["birth"])], s=18, color=color, zorder=3)
        parent = next((q for q in range(len(pairs)) if k in children[q]), None)
        if parent is not None:
            ax.plot([xs[k], xs[parent]], [end, end], color=color, lw=1.0)
    ax.set_xticks([])
    ax.set_xlabel("minima (each joins an older one at its saddle)")
    ax.set_ylabel("value")
    ax.text(0, top, " never dies", va="bottom", fontsize=8.5)
    ax.grid(True, axis="y", alpha=0.25)
