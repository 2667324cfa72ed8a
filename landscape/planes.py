"""The loss on the plane through three models, on a grid that passes through all three.

``plane_through(models, data, ...)`` spans the plane by ``b - a`` and the part of ``c - a``
orthogonal to it, rescaled to the length of ``b - a`` (so that distances on a figure with
square axes are parameter-space distances; ``directions.plane_directions``), lays a grid over
the three models plus a margin, with the nearest grid coordinate moved exactly onto each
model's (``grid.axis_through``), and evaluates it with ``compute_surface``. The models'
coordinates and labels are stored with the surface as its anchors, so contour figures mark
them, and the losses at the anchors are the models' own losses, not neighbours' on the grid.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from torch import nn

from .errors import LandscapeError
from .directions import plane_directions
from .grid import Surface, axis_through
from .surface import SurfaceOptions, compute_surface

__all__ = ["plane_through", "plane_axes", "EDGE_FRACTION"]

EDGE_FRACTION = 0.05
"""Least margin of a plane's grid beyond its models, as a fraction of their span on the axis."""


def plane_axes(coords: np.ndarray, points: int, margin: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The two grid axes of a plane through models at ``coords`` (k, 2): ``points``
    coordinates from ``margin`` below the smallest to ``margin`` above the largest model
    coordinate on each axis (at least ``EDGE_FRACTION`` of the axis's span, so that a model
    far along one axis is not drawn on the figure's edge), each model's coordinate on the
    grid."""
    if points < 3 or margin < 0:
        raise LandscapeError(f"a plane needs at least 3 points a side and a margin >= 0, got "
                             f"{points} and {margin:g}")
    span = coords.max(axis=0) - coords.min(axis=0)
    pad = np.maximum(margin, EDGE_FRACTION * span)
    lo, hi = coords.min(axis=0) - pad, coords.max(axis=0) + pad
    return tuple(axis_through(lo[i], hi[i], points, coords[:, i]) for i in range(2))


def plane_through(models: Sequence[nn.Module], data: Any, *, labels: Sequence[str],
                  points: int = 17, margin: float = 0.35,
                  options: SurfaceOptions | None = None,
                  out: str | os.PathLike | None = None,
                  provenance: dict[str, Any] | None = None) -> Surface:
    """The surface on the plane through three models (origin the first).

    Args:
        models: three models of one architecture ``a, b, c``.
        data: a DataBundle (or an ``(x, y)`` training pair), as for ``compute_surface``.
        labels: the three models' names, stored as the surface's anchor labels.
        points: grid coordinates a side (before the models' own are added).
        margin: grid extent beyond the models, in units of ``|b - a|``.
        options: evaluation settings.
        out: HDF5 file to write (replaced if present).
        provenance: extra fields to record (axis labels default to the models' names).

    Returns:
        The Surface; its anchors hold the three models' coordinates, which lie on its grid.
    """
    if len(models) != 3 or len(labels) != 3:
        raise LandscapeError(f"a plane goes through three models with three labels, got "
                             f"{len(models)} and {len(labels)}")
    dirs, coords = plane_directions(*models, orthogonal=True)
    x, y = plane_axes(coords, points, margin)
    names = [str(v) for v in labels]
    record = {"type": "plane", "axis_labels": [f"{names[1]} - {names[0]}",
                                               f"{names[2]} - {names[0]} (orthogonal part)"]}
    record.update(provenance or {})
    return compute_surface(models[0], data, dirs, x=x, y=y, out=out, force=True,
                           options=options,
                           anchors={"coords": coords, "labels": np.array(names)},
                           provenance=record)
