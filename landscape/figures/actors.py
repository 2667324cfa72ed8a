"""What a 3-D scene is made of: the height and colour scale shared by every surface in it,
and the pieces drawn into a panel of a PyVista plotter (the shaded surface with its contour
lines and floor map, the basin edge, a training path, the anchor models, the axes and the
colour bar).

Each ``add_*`` draws into the plotter's current panel; ``scene`` arranges the panels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..shape import center_index
from ..surface import Surface
from .backend import load_pyvista
from .data import anchors_of, metric_values, pretty
from .mesh import heights, trajectory_polydata
from .scales import colorbar_ticks, shared_scale
from .style import RUN_COLORS


class SceneScale:
    """One height-to-scene mapping and one colour range shared by every surface in a scene."""

    def __init__(self, meshes: list, colors: list[np.ndarray], log: bool, z_aspect: float,
                 levels: int | Sequence[float], zmax: float | None):
        h = np.concatenate([m.point_data["height"] for m in meshes])
        self.hmin, self.hmax = float(np.nanmin(h)), float(np.nanmax(h))
        spans = [max(np.ptp(m.points[:, 0]), np.ptp(m.points[:, 1])) for m in meshes]
        rise = self.hmax - self.hmin or 1.0
        self.factor = z_aspect * max(spans) / rise
        self.norm, self.levels = shared_scale(colors, levels, log, None, zmax)
        self.clim = (float(self.norm.vmin), float(self.norm.vmax))
        self.log = log

    def z(self, height: np.ndarray) -> np.ndarray:
        """Scene z of drawn heights: the lowest at 0, scaled like every surface in the scene."""
        return (np.asarray(height, float) - self.hmin) * self.factor


def _shown_mesh(mesh, scale: SceneScale, metric: str, zmax: float | None):
    """The part of ``mesh`` that was computed, scaled for display, with a "color" array."""
    shown = mesh.copy()
    shown.points[:, 2] = scale.z(shown.point_data["height"])
    color = np.asarray(shown.point_data[metric], float)
    shown.point_data["color"] = np.minimum(color, zmax) if zmax is not None else color
    valid = np.isfinite(shown.point_data["height"])
    if not valid.all():  # keep only cells whose corners all have a value
        shown = shown.extract_points(np.flatnonzero(valid), adjacent_cells=False)
    return shown


def _contour_lines(shown, scale: SceneScale, lift: float):
    """Iso-lines of the metric on the surface, at the shared levels, lifted against z-fighting."""
    lines = shown.contour(isosurfaces=list(scale.levels[1:-1]), scalars="color")
    if lines.n_points:
        lines.points[:, 2] += lift
    return lines


FLOOR_DEPTH = 0.18
"""The floor map lies this fraction of the drawn height below the surface's lowest point."""


def add_surface(plotter, mesh, scale: SceneScale, metric, zmax, cmap, overlay, k, contours,
                floor):
    """Draw the surface (its contour lines and floor map too); returns the mesh as shown."""
    shown = _shown_mesh(mesh, scale, metric, zmax)
    rise = (scale.hmax - scale.hmin) * scale.factor or 1.0
    lighting = dict(smooth_shading=True, ambient=0.18, diffuse=0.85, specular=0.35,
                    specular_power=20)
    if overlay:
        plotter.add_mesh(shown, color=RUN_COLORS[k % len(RUN_COLORS)],
                         opacity=0.9 if k == 0 else 0.6, **lighting)
    else:
        plotter.add_mesh(shown, scalars="color", cmap=cmap, clim=scale.clim, log_scale=scale.log,
                         show_scalar_bar=False, **lighting)
    if contours is None:
        return shown
    lines = _contour_lines(shown, scale, 0.004 * rise)
    if lines.n_points:
        plotter.add_mesh(lines, color="black", line_width=1.4, opacity=0.55)
        if floor and (k == 0 or not overlay):  # one floor map per view
            base = lines.copy()
            base.points[:, 2] = -FLOOR_DEPTH * rise
            plotter.add_mesh(base, scalars="color", cmap=cmap, clim=scale.clim,
                             log_scale=scale.log, line_width=1.6, show_scalar_bar=False)
    return shown


def basin_edge_level(surface: Surface, metric: str, rise: float) -> float:
    """``rise`` above the metric at the grid point nearest (0, 0): where the central basin
    ends (``shape.basin_shape``'s width at ``rise``)."""
    axes = (np.asarray(surface.x, float), np.asarray(surface.y, float))
    return float(metric_values(surface, metric, 2)[center_index(axes, 0.0)]) + rise


EDGE_COLOR = "#D62728"
"""Colour of the basin edge: seen on the colour map and on the white floor alike."""


def add_basin_edge(plotter, surface, shown, scale: SceneScale, metric, zmax, rise: float,
                   floor: bool) -> None:
    """The basin's edge (``basin_edge_level``) as a thick line on the shown surface and, with
    ``floor``, on the floor map, where the surface's own walls cannot hide it."""
    level = basin_edge_level(surface, metric, rise)
    if not np.isfinite(level) or (zmax is not None and level >= zmax):
        return
    edge = shown.contour(isosurfaces=[level], scalars="color")
    if not edge.n_points:
        return
    height = (scale.hmax - scale.hmin) * scale.factor or 1.0
    edge.points[:, 2] += 0.01 * height
    plotter.add_mesh(edge, color=EDGE_COLOR, line_width=4.0)
    if floor:
        base = edge.copy()
        base.points[:, 2] = -FLOOR_DEPTH * height
        plotter.add_mesh(base, color=EDGE_COLOR, line_width=4.0)


def add_path(plotter, surface, path, scale: SceneScale, metric, log, zmax) -> None:
    """A training path as a red tube on the surface, white at its start, red at its end."""
    pv = load_pyvista()
    line = trajectory_polydata(surface, path, metric=metric, log=log, zmax=zmax)
    rise = (scale.hmax - scale.hmin) * scale.factor or 1.0
    line.points[:, 2] = scale.z(line.points[:, 2]) + 0.015 * rise
    span = max(np.ptp(line.points[:, 0]), np.ptp(line.points[:, 1]), 1e-9)
    width = 0.006 * max(span, np.ptp(np.asarray(surface.x, float)))
    plotter.add_mesh(line.tube(radius=width), color="#D62728", smooth_shading=True)
    plotter.add_mesh(pv.Sphere(radius=2.6 * width, center=line.points[0]), color="white")
    plotter.add_mesh(pv.Sphere(radius=2.6 * width, center=line.points[-1]), color="#D62728")


def quantity_label(metric: str, log: bool, zmax: float | None, height: bool) -> str:
    """One name for what the height axis and the colour bar show (the metric, its clip, and
    for the height on a log scale how it maps)."""
    clip = ((f" (clipped at {zmax:.3g})" if height else f"\n(max {zmax:.3g})")
            if zmax is not None else "")
    gap = " " if height else "\n"  # the colour bar's column is narrow
    name = pretty(metric) + clip
    if log:
        name += ", height log(value + 0.1)" if height else f"{gap}log colours"
    return name


def add_axes(plotter, scale: SceneScale, shown: list[Surface], xlabel, ylabel, ztitle,
             fs) -> None:
    """Axes with the real coordinates and heights, the same height extent in every panel."""
    x = np.concatenate([np.asarray(s.x, float) for s in shown])
    y = np.concatenate([np.asarray(s.y, float) for s in shown])
    top = scale.z(scale.hmax)
    bounds = [x.min(), x.max(), y.min(), y.max(), 0.0, top]
    plotter.show_bounds(bounds=bounds, axes_ranges=bounds[:4] + [scale.hmin, scale.hmax],
                        xtitle=xlabel, ytitle=ylabel, ztitle=ztitle, font_size=max(11, fs(16)),
                        color="black", location="outer", ticks="outside", bold=False,
                        n_xlabels=3, n_ylabels=3, n_zlabels=3, fmt="%.2g", grid=False)


def add_colorbar(plotter, title: str, log: bool, scale: SceneScale, cmap: str, fs) -> None:
    """The shared colour bar in the current panel, with round tick labels (``colorbar_ticks``)."""
    pv = load_pyvista()
    # a hidden actor carries the shared lookup table, so the bar shows exactly the shared range
    dummy = pv.PolyData(np.zeros((1, 3)))
    dummy.point_data["color"] = [scale.clim[0]]
    actor = plotter.add_mesh(dummy, scalars="color", cmap=cmap, clim=scale.clim,
                             log_scale=log, show_scalar_bar=False, opacity=0.0)
    bar = plotter.add_scalar_bar(title=title, mapper=actor.mapper, vertical=True, color="black",
                                 title_font_size=fs(18), label_font_size=fs(16), n_labels=5,
                                 unconstrained_font_size=True, fmt="%.3g",
                                 position_x=0.08, position_y=0.2, width=0.42, height=0.6)
    ticks = colorbar_ticks(scale.norm)
    if len(ticks) >= 2:  # round numbers instead of evenly spaced odd ones
        import vtk

        arr = vtk.vtkDoubleArray()
        for t in ticks:
            arr.InsertNextValue(float(t))
        bar.SetCustomLabels(arr)
        bar.SetUseCustomLabels(True)
        bar.SetLabelFormat("%g")


def add_anchors(plotter, surface: Surface, scale: SceneScale, metric, log, zmax) -> None:
    """Black points on the surface where the models that define the directions lie."""
    from scipy.interpolate import RegularGridInterpolator

    coords, _ = anchors_of(surface)
    if coords is None or coords.shape[1] != 2:
        return
    pv = load_pyvista()
    x, y = np.asarray(surface.x, float), np.asarray(surface.y, float)
    z = heights(metric_values(surface, metric, 2), log, zmax)
    fill = np.nanmax(z) if np.isfinite(z).any() else 0.0
    xy = np.column_stack([np.clip(coords[:, 0], x.min(), x.max()),
                          np.clip(coords[:, 1], y.min(), y.max())])
    zi = RegularGridInterpolator((x, y), np.where(np.isfinite(z), z, fill))(xy)
    rise = (scale.hmax - scale.hmin) * scale.factor or 1.0
    radius = 0.016 * max(np.ptp(x), np.ptp(y))
    for (cx, cy), h in zip(coords, zi):
        plotter.add_mesh(pv.Sphere(radius=radius, center=(cx, cy, scale.z(h) + 0.015 * rise)),
                         color="black", smooth_shading=True)
