"""3-D geometry of a surface for PyVista and ParaView: heights drawn for metric values
(clipped, optionally logged), the grid as a structured mesh carrying every metric, a
training path as a polyline lying on it, and their VTK files.

PyVista is loaded by the functions that build meshes, never at import. Nothing here renders.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LandscapeError
from ..surface import Surface
from .backend import load_pyvista
from .data import metric_values, trajectory_of
from .outputs import atomic_suffixed, check_figure_path

if TYPE_CHECKING:  # pragma: no cover
    import pyvista as pv

LOG_OFFSET = 0.1  # log height is log(loss + 0.1): finite at zero loss, near log(loss) above 1


def heights(values: np.ndarray, log: bool = False, zmax: float | None = None) -> np.ndarray:
    """Heights drawn for metric values: clipped at ``zmax``, then ``log(v + 0.1)`` if ``log``.

    NaN stays NaN (and so does a value at or below -0.1 on a log scale).
    """
    z = np.array(values, dtype=float)
    if zmax is not None:
        z = np.minimum(z, zmax)
    if log:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.log(z + LOG_OFFSET)
        z[~np.isfinite(z)] = np.nan
    return z


def _ravel(a: np.ndarray) -> np.ndarray:
    # a StructuredGrid built from meshgrid(indexing="ij") numbers its points with x fastest
    return np.asarray(a).ravel(order="F")


def surface_mesh(surface: Surface, metric: str = "train_loss", *, log: bool = False,
                 zmax: float | None = None) -> "pv.StructuredGrid":
    """The grid as a PyVista StructuredGrid with height = the (clipped, logged) metric.

    Point data: every metric of the grid's shape (raw values, NaN where not computed), "height"
    (what z shows, NaN where there is nothing to show) and "done" (1 where computed). Points
    without a finite height sit at the top height, so the geometry stays finite; threshold on
    "done" to hide them. Field data "provenance" holds the surface's provenance as JSON.

    Args:
        surface: a 2-D surface.
        metric: metric giving the height.
        log: height log(value + 0.1).
        zmax: clip heights above this value (before the log).

    Returns:
        The mesh (unscaled coordinates: x, y directions and z the height).
    """
    pv = load_pyvista()
    values = metric_values(surface, metric, 2, "a 3-D surface")
    z = heights(values, log, zmax)
    if not np.isfinite(z).any():
        raise LandscapeError(f"{surface.path or 'surface'}: no computed points of {metric!r} "
                             "to draw")
    X, Y = np.meshgrid(np.asarray(surface.x, float), np.asarray(surface.y, float), indexing="ij")
    grid = pv.StructuredGrid(X, Y, np.where(np.isfinite(z), z, np.nanmax(z)))
    for name in surface.metrics:
        if np.shape(surface.metrics[name]) == tuple(surface.shape):
            grid.point_data[name] = _ravel(metric_values(surface, name))
    grid.point_data["height"] = _ravel(z)
    done = np.broadcast_to(np.asarray(surface.done, dtype=bool), z.shape)
    grid.point_data["done"] = _ravel(done).astype(np.uint8)
    grid.field_data["provenance"] = [json.dumps(surface.provenance, default=str)]
    return grid


def trajectory_polydata(surface: Surface, path: np.ndarray | None = None, *,
                        metric: str = "train_loss", log: bool = False,
                        zmax: float | None = None) -> "pv.PolyData":
    """A training path as a polyline lying on the surface.

    Heights are interpolated bilinearly from the grid (points outside the grid take the height
    at the nearest edge). Point data: "step" (0, 1, ...) and ``metric`` (interpolated).

    Args:
        surface: the 2-D surface the path was projected onto.
        path: (T, 2) coordinates; default the path the surface carries.
        metric, log, zmax: as in ``surface_mesh``.

    Returns:
        PolyData with one polyline.
    """
    from scipy.interpolate import RegularGridInterpolator

    pv = load_pyvista()
    coords = _path_coords(surface, path)
    values = metric_values(surface, metric, 2, "a 3-D surface")
    z = heights(values, log, zmax)
    x, y = np.asarray(surface.x, float), np.asarray(surface.y, float)
    fill = np.nanmax(z) if np.isfinite(z).any() else 0.0
    xy = np.column_stack([np.clip(coords[:, 0], x.min(), x.max()),
                          np.clip(coords[:, 1], y.min(), y.max())])
    zi = RegularGridInterpolator((x, y), np.where(np.isfinite(z), z, fill))(xy)
    vi = RegularGridInterpolator((x, y), np.where(np.isfinite(values), values, np.nan))(xy)
    n = len(coords)  # one polyline (not n - 1 segments): one cell for ParaView to colour
    line = pv.PolyData(np.column_stack([coords, zi]), lines=np.r_[n, np.arange(n)])
    line.point_data["step"] = np.arange(len(coords))
    line.point_data[metric] = vi
    return line


def _path_coords(surface: Surface, path: np.ndarray | None) -> np.ndarray:
    if path is not None:
        coords = np.asarray(path, dtype=float)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) < 2:
            raise LandscapeError(f"a trajectory is a (T, 2) array with T >= 2; got shape "
                                 f"{coords.shape}")
        return coords
    coords = trajectory_of(surface)[0]
    if coords is None or len(coords) < 2:
        raise LandscapeError(f"{surface.path or 'surface'}: carries no training path "
                             "(pass one as a (T, 2) array)")
    return coords


# ----------------------------------------------------------------------------- VTK export

def export_vtk(surface: Surface, path: str | os.PathLike, metric: str = "train_loss", *,
               log: bool = False, zmax: float | None = None) -> Path:
    """Write the surface as a VTK structured grid (.vts, or legacy .vtk) that ParaView opens.

    Args:
        surface: a 2-D surface.
        path: output .vts or .vtk file (written atomically).
        metric, log, zmax: the height, as in ``surface_mesh``; every metric is point data.

    Returns:
        The path written.
    """
    path = check_figure_path(path, (".vts", ".vtk"), "VTK surface")
    grid = surface_mesh(surface, metric, log=log, zmax=zmax)
    with atomic_suffixed(path) as tmp:
        grid.save(tmp)
    return path


def export_trajectory_vtk(surface: Surface, out: str | os.PathLike,
                          path: np.ndarray | None = None, *, metric: str = "train_loss",
                          log: bool = False, zmax: float | None = None) -> Path:
    """Write a training path lying on the surface as VTK polydata (.vtp, or legacy .vtk).

    Args:
        surface: the 2-D surface the path was projected onto.
        out: output .vtp or .vtk file (written atomically).
        path: (T, 2) coordinates; default the path the surface carries.
        metric, log, zmax: as in ``surface_mesh`` (use the same values as the surface export so
            the path lies on it).

    Returns:
        The path written.
    """
    out = check_figure_path(out, (".vtp", ".vtk"), "VTK trajectory")
    line = trajectory_polydata(surface, path, metric=metric, log=log, zmax=zmax)
    with atomic_suffixed(out) as tmp:
        line.save(tmp)
    return out
