"""Grids that fit a basin: re-measure a 1-D width the grid does not resolve.

A basin narrower than about three grid steps has a width set by the grid, not by the loss.
``refine_width`` evaluates the loss on grids refined around the minimum, each spanning a few
times the last width found, until the ``+rise`` crossing on both sides lies several grid
steps from the centre. It takes the loss as a function of the coordinate, so that it serves a
model (``compute_surface`` on the new axis) and a closed form alike.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .errors import LandscapeError
from .shape import basin_shape

__all__ = ["RefinedWidth", "refine_width", "STEPS_PER_WIDTH"]

STEPS_PER_WIDTH = 3.0
"""A width counts as resolved when it spans at least this many grid steps."""


@dataclasses.dataclass(frozen=True)
class RefinedWidth:
    """The width of a 1-D basin on the last grid ``refine_width`` measured.

    Attributes:
        width: the basin's width at ``+rise`` (None if never bounded on the grids tried).
        x: the last grid's coordinates; values: the loss there.
        rounds: how many refined grids were evaluated (0: the first grid resolved it).
        resolved: whether the width spans at least ``STEPS_PER_WIDTH`` grid steps.
    """

    width: float | None
    x: np.ndarray
    values: np.ndarray
    rounds: int
    resolved: bool


def _measure(x: np.ndarray, values: np.ndarray, rise: float) -> tuple[float | None, bool]:
    shape = basin_shape(x, values, rise=rise, center=0.0)
    step = max(shape.grid_steps)
    ok = shape.width is not None and shape.width >= STEPS_PER_WIDTH * step
    return shape.width, ok


def refine_width(loss: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                 values: np.ndarray | None = None, *, rise: float = 0.1, points: int = 21,
                 max_rounds: int = 8) -> RefinedWidth:
    """The width of the basin at coordinate 0 where the loss rises ``rise`` above it, on
    grids refined around 0 until it spans ``STEPS_PER_WIDTH`` grid steps.

    Args:
        loss: the loss at an array of coordinates (one value each).
        x: the first grid (increasing, containing or near 0); values: the loss there
            (evaluated when None).
        rise: the loss increase that bounds the basin.
        points: grid points of each refined grid (odd, so that 0 is one of them).
        max_rounds: the most refined grids to evaluate.

    Returns:
        RefinedWidth.
    """
    if points < 5 or points % 2 == 0:
        raise LandscapeError(f"points must be odd and at least 5, got {points}")
    x = np.asarray(x, dtype=float)
    values = np.asarray(loss(x) if values is None else values, dtype=float)
    width, ok = _measure(x, values, rise)
    rounds = 0
    while not ok and rounds < max_rounds:
        # Span three of the widths found (a coarse grid overestimates a narrow one); a
        # basin never bounded on this grid needs a wider one.
        reach = float(max(abs(x[0]), abs(x[-1])))
        half = 1.5 * width if width is not None and width > 0 else 4.0 * reach
        x = np.linspace(-half, half, points)
        x[points // 2] = 0.0  # the model itself, not a rounding error away
        values = np.asarray(loss(x), dtype=float)
        width, ok = _measure(x, values, rise)
        rounds += 1
    return RefinedWidth(width=width, x=x, values=values, rounds=rounds, resolved=ok)
