"""3-D loss surfaces with PyVista: shaded meshes with contour lines, side-by-side or overlaid
comparisons on one shared scale, training paths on the surface, orbit animations (GIF, MP4)
and VTK export for ParaView.

Rendering is offscreen by default (a machine without a display renders through EGL or OSMesa);
an interactive window opens only when asked for and a display exists. PyVista is imported on
first use, so importing this module stays cheap. Nothing here computes a loss.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ._util import atomic_path, check_writable
from .errors import LandscapeError
from .plot2d import (RUN_COLORS, atomic_suffixed, axis_labels, check_cmap, loss_cap,
                     metric_values, pretty, shared_scale, trajectory_of)
from .surface import Surface

if TYPE_CHECKING:  # pragma: no cover
    import pyvista as pv

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MOVIE_SUFFIXES = (".gif", ".mp4")
LOG_OFFSET = 0.1  # log height is log(loss + 0.1): finite at zero loss, near log(loss) above 1


# ----------------------------------------------------------------------------- environment

def has_display() -> bool:
    """True when an interactive window can be opened (always assumed off Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _load_compiler_first() -> None:
    """Load torch's compiler stack (and with it triton's LLVM) before the first render.

    torch imports it lazily, e.g. when the first optimizer is built; if that happens after
    OpenGL (Mesa, with its own LLVM) is loaded in the same process, the process crashes.
    """
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # no compiler stack: nothing can clash with it
        pass


def _pv():
    """Import PyVista; without a display, ask VTK for an EGL window first (no X11 warning)."""
    if "vtkmodules" not in sys.modules and not has_display():
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    _load_compiler_first()
    import pyvista as pv

    return pv


def mp4_writer() -> str | None:
    """The imageio plugin that can write MP4 here ("pyav" or "FFMPEG"), or None."""
    from importlib.util import find_spec

    if find_spec("av") is not None:
        return "pyav"
    if find_spec("imageio_ffmpeg") is not None:
        return "FFMPEG"
    return None


def check_output(path: str | os.PathLike, allowed: Sequence[str], what: str) -> Path:
    """``path`` as a Path if its suffix is one of ``allowed``; else a clear LandscapeError.

    MP4 is refused here, before any work, when no MP4 writer is installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise LandscapeError(f"{path}: unknown {what} format {path.suffix or '(none)'!r}; "
                             f"use one of {', '.join(allowed)}")
    if suffix == ".mp4" and mp4_writer() is None:
        raise LandscapeError(f"{path}: MP4 needs the imageio-ffmpeg or av package, and neither "
                             "is installed (pip install imageio-ffmpeg); GIF works without them")
    return path


# ----------------------------------------------------------------------------- meshes

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
    pv = _pv()
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

    pv = _pv()
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
    path = check_output(path, (".vts", ".vtk"), "VTK surface")
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
    out = check_output(out, (".vtp", ".vtk"), "VTK trajectory")
    line = trajectory_polydata(surface, path, metric=metric, log=log, zmax=zmax)
    with atomic_suffixed(out) as tmp:
        line.save(tmp)
    return out


# ----------------------------------------------------------------------------- scenes

class _Scale:
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
        return (np.asarray(height, float) - self.hmin) * self.factor


def _shown_mesh(mesh, scale: _Scale, metric: str, zmax: float | None):
    """The part of ``mesh`` that was computed, scaled for display, with a "color" array."""
    shown = mesh.copy()
    shown.points[:, 2] = scale.z(shown.point_data["height"])
    color = np.asarray(shown.point_data[metric], float)
    shown.point_data["color"] = np.minimum(color, zmax) if zmax is not None else color
    valid = np.isfinite(shown.point_data["height"])
    if not valid.all():  # keep only cells whose corners all have a value
        shown = shown.extract_points(np.flatnonzero(valid), adjacent_cells=False)
    return shown


def _contour_lines(shown, scale: _Scale, lift: float):
    """Iso-lines of the metric on the surface, at the shared levels, lifted against z-fighting."""
    lines = shown.contour(isosurfaces=list(scale.levels[1:-1]), scalars="color")
    if lines.n_points:
        lines.points[:, 2] += lift
    return lines


def _scene_data(surfaces, metric: str, labels, log: bool, zmax: float | None, cmap: str,
                z_aspect: float, contours):
    """The surfaces as a list, their names, the height clip, meshes and the shared scale of a
    scene (the image and the web page alike). A loss is clipped near its minima by default
    (``plot2d.loss_cap``), so the basins show rather than the grid's worst corner; ``inf``
    clips nothing."""
    items = [surfaces] if isinstance(surfaces, Surface) else list(surfaces)
    if not items:
        raise LandscapeError("no surfaces to render")
    names = _labels(labels, items)
    check_cmap(cmap)
    colors = [metric_values(s, metric, 2) for s in items]
    if zmax is None and metric.endswith("loss"):
        zmax = loss_cap(colors)
    elif zmax is not None and not np.isfinite(zmax):
        zmax = None
    meshes = [surface_mesh(s, metric, log=log, zmax=zmax) for s in items]
    scale = _Scale(meshes, colors, log, z_aspect, contours if contours is not None else 12,
                   zmax)
    return items, names, zmax, meshes, scale


def _draw_panels(plotter, items, meshes, paths, scale, metric, log, zmax, cmap, overlay,
                 contours, floor, axis_names, fs, anchors: bool, rise: float | None = None
                 ) -> None:
    """Each surface in its panel (or all in one): mesh, contours, basin edge, path, anchors,
    axes."""
    for k, (surface, mesh) in enumerate(zip(items, meshes)):
        # each panel names its own axes (a random plane beside a plane through minima)
        xl, yl = axis_labels(items[0] if overlay else surface, axis_names)
        plotter.subplot(0, 0 if overlay else k)
        shown = _add_surface(plotter, mesh, scale, metric, zmax, cmap, overlay, k, contours,
                             floor)
        if rise and not overlay:
            _add_basin_edge(plotter, surface, shown, scale, metric, zmax, rise,
                            floor and contours is not None)
        if paths[k] is not None:
            _add_path(plotter, surface, paths[k], scale, metric, log, zmax)
        if anchors:
            _add_anchors(plotter, surface, scale, metric, log, zmax)
        if not overlay or k == len(items) - 1:
            _add_axes(plotter, scale, [surface] if not overlay else items, xl, yl,
                      _quantity(metric, log, zmax, True), fs)


def build_scene(surfaces: Surface | Sequence[Surface], metric: str = "train_loss", *,
                labels: Sequence[str] | None = None, log: bool = False,
                zmax: float | None = None, overlay: bool = False,
                contours: int | Sequence[float] | None = 12, floor: bool = True,
                trajectories: Sequence[np.ndarray | None] | np.ndarray | None = None,
                axis_names: Sequence[str] | None = None, title: str | None = None,
                cmap: str = "viridis", z_aspect: float = 0.55,
                size: tuple[int, int] = (900, 700), off_screen: bool = True,
                azimuth: float = -60.0, elevation: float = 32.0,
                zoom: float = 1.0, fill: float = 0.94, rise: float | None = None
                ) -> "pv.Plotter":
    """A PyVista scene of one or several surfaces on one shared height and colour scale.

    Several surfaces go side by side (linked cameras, one colour bar) or, with ``overlay``, into
    one view (one colour each, with a legend). The caller owns the plotter: ``show()`` it,
    ``screenshot()`` it, and ``close()`` it.

    Args:
        surfaces: one 2-D surface or several (e.g. small batch, large batch).
        metric: metric giving height and colour.
        labels: one label per surface (default: file names).
        log: height log(loss + 0.1) and a log colour scale.
        zmax: clip heights and colours above this value; default for a ``*loss`` metric:
            ``plot2d.loss_cap`` (near the minima, so the basins show; ``inf``: no clip).
        overlay: draw all surfaces in one view instead of side by side.
        contours: number of iso-lines (or their values) drawn on the surface; None for none.
        floor: also draw the iso-lines on a plane below the surface (as a contour map).
        trajectories: a (T, 2) path for the first surface, or one per surface (None to skip);
            default the paths the surfaces carry, if any.
        axis_names: names of the two directions.
        title: text at the top of the picture.
        cmap: colour map.
        z_aspect: height of the tallest surface relative to its width.
        size: window (and screenshot) size in pixels, per panel when side by side.
        off_screen: render without a window.
        azimuth, elevation: camera direction in degrees, as in matplotlib's 3-D axes
            (azimuth from +x towards +y around the vertical, elevation above the plane).
        zoom: camera zoom factor (on top of the automatic framing).
        fill: offscreen, the camera is framed so the picture (labels included) spans this
            fraction of each panel.
        rise: draw each panel's basin edge, ``rise`` above the metric at the grid point
            nearest (0, 0), as a red line on the surface and the floor map (the dashed line
            of ``plot_contours``), so that basins compare by width at a glance.

    Returns:
        The plotter.
    """
    pv = _pv()
    items, names, zmax, meshes, scale = _scene_data(surfaces, metric, labels, log, zmax, cmap,
                                                    z_aspect, contours)
    paths = _scene_paths(items, trajectories)
    panels = 1 if overlay or len(items) == 1 else len(items)
    bar = not overlay  # the shared colour bar gets a narrow column of its own
    bar_px = max(size[0] // 5, 110)
    fs = _font_scale(size)
    plotter = pv.Plotter(off_screen=off_screen, shape=(1, panels + bar), border=False,
                         theme=pv.themes.DocumentTheme(),
                         col_weights=[size[0]] * panels + [bar_px] * bar,
                         window_size=(size[0] * panels + bar_px * bar, size[1]))
    _draw_panels(plotter, items, meshes, paths, scale, metric, log, zmax, cmap, overlay,
                 contours, floor, axis_names, fs, anchors=False, rise=rise)
    _place_cameras(plotter, panels, azimuth, elevation)
    headed = title or len(items) > 1
    if off_screen:  # fit what was drawn (labels included) to the panel, below any heading
        _frame(plotter, panels, size, fill, 2.6 * fs(18) if headed else 0.0)
    if zoom != 1.0:
        plotter.renderers[0].camera.zoom(zoom)
    _add_headings(plotter, names, title, overlay, fs)
    if bar:
        plotter.subplot(0, panels)
        _add_colorbar(plotter, _quantity(metric, log, zmax, False), log, scale, cmap, fs)
    plotter.subplot(0, 0)
    if off_screen:
        plotter.render()  # a later screenshot shows this state, not the framing pass
    return plotter


def _add_headings(plotter, names: list[str], title: str | None, overlay: bool, fs) -> None:
    if overlay and len(names) > 1:
        plotter.subplot(0, 0)
        plotter.add_legend([[n, RUN_COLORS[k % len(RUN_COLORS)]] for k, n in enumerate(names)],
                           bcolor="white", face="rectangle", size=(0.3, 0.09), loc="upper left")
    elif len(names) > 1:
        for k, name in enumerate(names):
            plotter.subplot(0, k)
            plotter.add_text(name, position="upper_edge", font_size=fs(18), color="black")
    if title:
        plotter.subplot(0, 0)
        plotter.add_text(title, position="upper_left" if len(names) > 1 else "upper_edge",
                         font_size=fs(16), color="black")


def _frame(plotter, panels: int, size: tuple[int, int], fill: float, top_px: float) -> None:
    """Zoom and shift the shared camera so the drawn picture fills ``fill`` of each panel.

    An offscreen render shows where the surface, its floor contours and its axis labels
    landed (a 3-D scene's bounding sphere alone leaves wide margins or clips long labels).
    The first look is zoomed out so that nothing is cut off; a second one follows if a
    label still touched the edge.
    """
    camera = plotter.renderers[0].camera
    camera.zoom(0.7)
    for _ in range(2):
        box = _ink_box(np.asarray(plotter.screenshot(return_img=True)), panels, size)
        if box is None:
            return
        (x0, x1, y0, y1), touches = box
        top = fill - 2 * top_px / size[1]
        factor = min(2 * fill / (x1 - x0), (top + fill) / (y1 - y0))
        # the window centre shifts the projection after the zoom: map the centre of what
        # was drawn to the centre of the target area
        cx, cy = camera.GetWindowCenter()
        camera.zoom(factor)
        camera.SetWindowCenter(factor * ((x0 + x1) / 2 + cx),
                               factor * ((y0 + y1) / 2 + cy) - (top - fill) / 2)
        if not touches:
            return
        plotter.render()


def _ink_box(img: np.ndarray, panels: int, size: tuple[int, int]):
    """Bounding box (x0, x1, y0, y1 in [-1, 1], y up) of non-white pixels over all panels, and
    whether it touches a panel edge; None for blank panels."""
    w, h = size
    boxes = []
    for k in range(panels):
        ink = (img[:, k * w:(k + 1) * w] < 245).any(axis=2)
        if ink.any():
            rows, cols = np.nonzero(ink)
            boxes.append((cols.min(), cols.max() + 1, rows.min(), rows.max() + 1))
    if not boxes:
        return None
    b = np.array(boxes, dtype=float)
    c0, c1, r0, r1 = b[:, 0].min(), b[:, 1].max(), b[:, 2].min(), b[:, 3].max()
    touches = c0 <= 1 or c1 >= w - 1 or r0 <= 1 or r1 >= h - 1
    return (2 * c0 / w - 1, 2 * c1 / w - 1, 1 - 2 * r1 / h, 1 - 2 * r0 / h), touches


def _font_scale(size: tuple[int, int]):
    """Font sizes that keep their proportion to the picture (tuned at 700 pixels high)."""
    factor = min(size[0] / 900, size[1] / 700)
    return lambda points: max(8, round(points * factor ** 0.5))


def _labels(labels: Sequence[str] | None, items: list[Surface]) -> list[str]:
    from .plot2d import _panel_labels

    return _panel_labels(labels, items)


def _scene_paths(items: list[Surface], trajectories: Any) -> list[np.ndarray | None]:
    if trajectories is None:
        return [trajectory_of(s)[0] for s in items]
    if isinstance(trajectories, np.ndarray) and trajectories.ndim == 2:
        trajectories = [trajectories]
    paths = list(trajectories) + [None] * len(items)
    return paths[:len(items)]


FLOOR_DEPTH = 0.18
"""The floor map lies this fraction of the drawn height below the surface's lowest point."""


def _add_surface(plotter, mesh, scale: _Scale, metric, zmax, cmap, overlay, k, contours,
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
    from .shape import center_index

    axes = (np.asarray(surface.x, float), np.asarray(surface.y, float))
    return float(metric_values(surface, metric, 2)[center_index(axes, 0.0)]) + rise


EDGE_COLOR = "#D62728"
"""Colour of the basin edge: seen on the colour map and on the white floor alike."""


def _add_basin_edge(plotter, surface, shown, scale: _Scale, metric, zmax, rise: float,
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


def _add_path(plotter, surface, path, scale: _Scale, metric, log, zmax) -> None:
    pv = _pv()
    line = trajectory_polydata(surface, path, metric=metric, log=log, zmax=zmax)
    rise = (scale.hmax - scale.hmin) * scale.factor or 1.0
    line.points[:, 2] = scale.z(line.points[:, 2]) + 0.015 * rise
    span = max(np.ptp(line.points[:, 0]), np.ptp(line.points[:, 1]), 1e-9)
    width = 0.006 * max(span, np.ptp(np.asarray(surface.x, float)))
    plotter.add_mesh(line.tube(radius=width), color="#D62728", smooth_shading=True)
    plotter.add_mesh(pv.Sphere(radius=2.6 * width, center=line.points[0]), color="white")
    plotter.add_mesh(pv.Sphere(radius=2.6 * width, center=line.points[-1]), color="#D62728")


def _quantity(metric: str, log: bool, zmax: float | None, height: bool) -> str:
    """One name for what the height axis and the colour bar show (the metric, its clip, and
    for the height on a log scale how it maps)."""
    clip = ((f" (clipped at {zmax:.3g})" if height else f"\n(max {zmax:.3g})")
            if zmax is not None else "")
    gap = " " if height else "\n"  # the colour bar's column is narrow
    name = pretty(metric) + clip
    if log:
        name += ", height log(value + 0.1)" if height else f"{gap}log colours"
    return name


def _add_axes(plotter, scale: _Scale, shown: list[Surface], xlabel, ylabel, ztitle,
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


def _place_cameras(plotter, panels: int, azimuth: float, elevation: float) -> None:
    """One camera for every panel, framing the union of their contents (so panels compare)."""
    bounds = np.array([plotter.renderers[k].bounds for k in range(panels)], dtype=float)
    union = [bounds[:, 0].min(), bounds[:, 1].max(), bounds[:, 2].min(), bounds[:, 3].max(),
             bounds[:, 4].min(), bounds[:, 5].max()]
    center = np.array([(union[0] + union[1]) / 2, (union[2] + union[3]) / 2,
                       (union[4] + union[5]) / 2])
    az, el = np.radians(azimuth), np.radians(elevation)
    direction = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    plotter.subplot(0, 0)
    camera = plotter.renderer.camera
    camera.focal_point = center
    camera.position = center + direction
    camera.up = (0.0, 0.0, 1.0)
    plotter.renderer.reset_camera(bounds=union)
    for k in range(1, panels):
        plotter.renderers[k].camera = camera


def _add_colorbar(plotter, title: str, log: bool, scale: _Scale, cmap: str, fs) -> None:
    from .plot2d import _colorbar_ticks

    pv = _pv()
    # a hidden actor carries the shared lookup table, so the bar shows exactly the shared range
    dummy = pv.PolyData(np.zeros((1, 3)))
    dummy.point_data["color"] = [scale.clim[0]]
    actor = plotter.add_mesh(dummy, scalars="color", cmap=cmap, clim=scale.clim,
                             log_scale=log, show_scalar_bar=False, opacity=0.0)
    bar = plotter.add_scalar_bar(title=title, mapper=actor.mapper, vertical=True, color="black",
                                 title_font_size=fs(18), label_font_size=fs(16), n_labels=5,
                                 unconstrained_font_size=True, fmt="%.3g",
                                 position_x=0.08, position_y=0.2, width=0.42, height=0.6)
    ticks = _colorbar_ticks(scale.norm)
    if len(ticks) >= 2:  # round numbers instead of evenly spaced odd ones
        import vtk

        arr = vtk.vtkDoubleArray()
        for t in ticks:
            arr.InsertNextValue(float(t))
        bar.SetCustomLabels(arr)
        bar.SetUseCustomLabels(True)
        bar.SetLabelFormat("%g")


# ----------------------------------------------------------------------------- outputs

def _write_image(img: np.ndarray, path: Path) -> None:
    import imageio.v3 as iio

    with atomic_suffixed(path) as tmp:
        iio.imwrite(tmp, img, extension=path.suffix.lower())


def render_surface(surfaces: Surface | Sequence[Surface], out: str | os.PathLike | None = None,
                   metric: str = "train_loss", *, size: tuple[int, int] = (900, 700),
                   show: bool = False, notebook: bool | str = False,
                   **scene: Any) -> "np.ndarray | SceneView":
    """Render surfaces offscreen to an image (and a PNG/JPEG file); optionally show a window.

    Args:
        surfaces: one 2-D surface or several (see ``build_scene``).
        out: save the screenshot here (.png, .jpg), atomically.
        metric: metric giving height and colour.
        size: pixels per panel (width, height).
        show: also open an interactive window (needs a display; LandscapeError otherwise).
        notebook: return a ``SceneView`` that Jupyter shows inline: True for the interactive
            scene (vtk.js, offline) where the web export is installed and the image
            elsewhere, "interactive" to insist on it, "static" for the image only.
        **scene: options of ``build_scene`` (labels, log, zmax, overlay, contours, ...).

    Returns:
        The image as an (H, W, 3) uint8 array; with ``notebook``, a ``SceneView`` holding it
        (``.image``).
    """
    if out is not None:
        out = check_output(out, IMAGE_SUFFIXES, "image")
    if notebook:
        _check_notebook(notebook)
    if show and not has_display():
        raise LandscapeError("no display to open a window on (DISPLAY is not set); "
                             "save a screenshot with out=... instead")
    plotter = build_scene(surfaces, metric, size=size, off_screen=True, **scene)
    try:
        img = np.asarray(plotter.screenshot(return_img=True))
    finally:
        plotter.close()
    if out is not None:
        _write_image(img, out)
    if show:
        window = build_scene(surfaces, metric, size=size, off_screen=False, **scene)
        window.show()
    if notebook:
        return _scene_view(surfaces, metric, size, notebook, img, scene)
    return img


def orbit_animation(surfaces: Surface | Sequence[Surface], out: str | os.PathLike,
                    metric: str = "train_loss", *, frames: int = 36, fps: float = 12.0,
                    degrees: float = 360.0, size: tuple[int, int] = (640, 500),
                    **scene: Any) -> Path:
    """A camera orbit around the surfaces, written as GIF (or MP4 when a writer is installed).

    Args:
        surfaces: one 2-D surface or several (see ``build_scene``).
        out: .gif or .mp4 file (written atomically).
        metric: metric giving height and colour.
        frames: number of frames.
        fps: frames per second.
        degrees: total rotation.
        size: pixels per panel.
        **scene: options of ``build_scene``.

    Returns:
        The path written.

    Raises:
        LandscapeError: unknown suffix, or MP4 without imageio-ffmpeg / av installed.
    """
    out = check_output(out, MOVIE_SUFFIXES, "animation")
    scene.setdefault("fill", 0.8)  # room for the corners as the surface turns
    if frames < 2:
        raise LandscapeError(f"an animation needs at least 2 frames, got {frames}")
    plotter = build_scene(surfaces, metric, size=size, off_screen=True, **scene)
    images = []
    try:
        for _ in range(frames):
            images.append(np.asarray(plotter.screenshot(return_img=True)))
            plotter.camera.Azimuth(degrees / frames)
            plotter.render()  # a screenshot alone shows the last rendered frame
    finally:
        plotter.close()
    _write_movie(images, out, fps)
    return out


def _write_movie(images: list[np.ndarray], out: Path, fps: float) -> None:
    import imageio.v3 as iio

    with atomic_suffixed(out) as tmp:
        if out.suffix.lower() == ".gif":
            iio.imwrite(tmp, np.stack(images), extension=".gif", duration=1000.0 / fps, loop=0)
            return
        stack = np.stack([_even(im) for im in images])  # H.264 wants even sizes
        if mp4_writer() == "pyav":
            iio.imwrite(tmp, stack, plugin="pyav", codec="libx264", fps=fps)
        else:
            import imageio.v2 as iio2
            iio2.mimwrite(tmp, list(stack), format="FFMPEG", fps=fps, codec="libx264",
                          macro_block_size=2, quality=8)


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


# ----------------------------------------------------------------------------- web and notebooks

HTML_SUFFIXES = (".html", ".htm")
#: import name -> pip name of what PyVista's web export (trame, vtk.js) needs
WEB_PACKAGES = {"trame_pyvista": "trame-pyvista", "trame_vtk": "trame-vtk",
                "nest_asyncio2": "nest_asyncio2"}
_BAR_PX = 120  # the colour bar's column in the web page


def web_export_missing() -> str | None:
    """None when the interactive HTML export can run here; else one line saying what to
    install."""
    from importlib.util import find_spec

    missing = [pip for name, pip in WEB_PACKAGES.items() if find_spec(name) is None]
    if not missing:
        return None
    return (f"the interactive HTML scene needs {', '.join(missing)} (pip install "
            "'landscape-minima[web]')")


def build_web_scene(surfaces: Surface | Sequence[Surface], metric: str = "train_loss", *,
                    labels: Sequence[str] | None = None, log: bool = False,
                    zmax: float | None = None, overlay: bool = False,
                    contours: int | Sequence[float] | None = 12, floor: bool = True,
                    trajectories: Sequence[np.ndarray | None] | np.ndarray | None = None,
                    anchors: bool = True, axis_names: Sequence[str] | None = None,
                    title: str | None = None, cmap: str = "viridis", z_aspect: float = 0.55,
                    azimuth: float = -60.0, elevation: float = 32.0,
                    zoom: float = 1.0, rise: float | None = None
                    ) -> tuple["pv.Plotter", dict[str, Any]]:
    """The scene of ``build_scene`` made for vtk.js: the caller exports it and closes it.

    The same meshes, shared height and colour scale, contour lines, floor maps, training
    paths and axes, plus the models a surface was made from ("anchors") as black points.
    What vtk.js does not draw the same way is handed over as page settings instead: colours
    are baked per point (vtk.js has no log colour scale), the colour bar, panel names and
    title become HTML, and the height axis gets its ticks in loss units from the page.

    Args:
        surfaces, metric, labels, log, zmax, overlay, contours, floor, trajectories,
        axis_names, title, cmap, z_aspect, azimuth, elevation, rise: as in ``build_scene``.
        anchors: mark the models that define the directions (planes through checkpoints).
        zoom: move the camera closer by this factor (on top of the automatic framing).

    Returns:
        ``(plotter, page)``: an offscreen plotter with one panel per surface (linked
        cameras) and the page settings (``_web_page`` reads them).
    """
    pv = _pv()
    items, names, zmax, meshes, scale = _scene_data(surfaces, metric, labels, log, zmax, cmap,
                                                    z_aspect, contours)
    paths = _scene_paths(items, trajectories)
    panels = 1 if overlay or len(items) == 1 else len(items)
    size = (900, 700)
    plotter = pv.Plotter(off_screen=True, shape=(1, panels), border=False,
                         theme=pv.themes.DocumentTheme(), window_size=(size[0] * panels, size[1]))
    _draw_panels(plotter, items, meshes, paths, scale, metric, log, zmax, cmap, overlay,
                 contours, floor, axis_names, _font_scale(size), anchors=anchors, rise=rise)
    _place_cameras(plotter, panels, azimuth, elevation)
    bounds = np.array([plotter.renderers[k].ComputeVisiblePropBounds() for k in range(panels)])
    lo, hi = bounds[:, 0::2].min(axis=0), bounds[:, 1::2].max(axis=0)
    _bake_colors(plotter, scale, cmap)
    # vtk.js gets the camera's position, not its zoom; the page moves it to fit its panels
    fit = {"center": ((lo + hi) / 2).tolist(), "radius": float(np.linalg.norm(hi - lo) / 2),
           "zoom": float(zoom)}
    page = {"panels": panels, "meshes": len(items), "names": names, "title": title,
            "fit": fit,
            "overlay": overlay, "metric": pretty(metric), "z_ticks": _height_ticks(scale),
            "z_title": f"log({pretty(metric)} + 0.1)" if log else pretty(metric),
            "colorbar": None if overlay else _colorbar_page(scale, cmap),
            "legend": [[n, RUN_COLORS[k % len(RUN_COLORS)]] for k, n in enumerate(names)]
            if overlay else []}
    return plotter, page


def _add_anchors(plotter, surface: Surface, scale: _Scale, metric, log, zmax) -> None:
    """Black points on the surface where the models that define the directions lie."""
    from scipy.interpolate import RegularGridInterpolator

    from .plot2d import anchors_of

    coords, _ = anchors_of(surface)
    if coords is None or coords.shape[1] != 2:
        return
    pv = _pv()
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


def _bake_colors(plotter, scale: _Scale, cmap: str) -> None:
    """Give every actor coloured by the shared scale its colours per point (RGB), so vtk.js
    shows exactly the colours of the images (it has no log lookup tables)."""
    from matplotlib import colormaps

    pv = _pv()
    table = colormaps[cmap]
    for renderer in plotter.renderers:
        for actor in renderer.actors.values():
            mapper = getattr(actor, "mapper", None)
            if mapper is None or not mapper.GetScalarVisibility():
                continue
            mapper.Update()  # the input may be a filter's output (smooth shading's normals)
            source = mapper.GetInput()
            if source is None or source.GetPointData().GetArray("color") is None:
                continue
            data = pv.wrap(source).copy(deep=True)  # a static copy: nothing recomputes it
            values = np.asarray(data.point_data["color"], dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                t = np.ma.filled(np.ma.masked_invalid(scale.norm(values)), np.nan)
            rgb = table(np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0))[:, :3]
            rgb[~np.isfinite(t)] = 0.75  # nothing to colour by: light grey
            data.point_data["rgb"] = np.round(rgb * 255).astype(np.uint8)
            mapper.SetInputData(data)
            mapper.SetScalarModeToUsePointFieldData()
            mapper.SetArrayAccessMode(1)  # by name
            mapper.SelectColorArray("rgb")
            mapper.SetColorModeToDirectScalars()


def _height_ticks(scale: _Scale) -> list[list]:
    """[scene z, label] of round heights (the height axis shows heights, not scene units)."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = scale.hmin, scale.hmax
    if not hi > lo:
        return [[float(scale.z(lo)), f"{lo:.3g}"]]
    ticks = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    ticks = ticks[(ticks >= lo - 1e-9 * span) & (ticks <= hi + 1e-9 * span)]
    return [[float(scale.z(t)), f"{t:.3g}" if abs(t) > 1e-12 * span else "0"] for t in ticks]


def _colorbar_page(scale: _Scale, cmap: str) -> dict[str, Any]:
    """The shared colour bar as CSS gradient stops and tick positions (0 bottom, 1 top)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    from .plot2d import _colorbar_ticks

    table = colormaps[cmap]
    stops = [[float(t), to_hex(table(t))] for t in np.linspace(0.0, 1.0, 33)]
    ticks = [[float(scale.norm(t)), f"{t:g}"] for t in _colorbar_ticks(scale.norm)]
    return {"stops": stops, "ticks": ticks}


_HIDDEN = "trame.widgets.vtklocal"


def _vtkjs_page(plotter) -> str:
    """The plotter as PyVista's self-contained vtk.js page (trame-vtk's offline viewer).

    The export starts a trame server on 127.0.0.1 the first time. That server would also set
    up trame-vtklocal (a WebAssembly viewer the export does not use), which downloads its
    runtime from the web; it is hidden from the server's start, so nothing leaves the machine.
    """
    import io

    hidden = _HIDDEN not in sys.modules
    if hidden:
        sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # its import fails, quietly
    try:
        component = getattr(plotter, "trame", None)
        buffer = component.export_html(None) if component is not None \
            else plotter.export_html(None)  # PyVista before 0.49
    finally:
        if hidden and sys.modules.get(_HIDDEN, 0) is None:
            del sys.modules[_HIDDEN]
    return buffer.getvalue() if isinstance(buffer, io.StringIO) else str(buffer)


_PAGE_CSS = """
#landscape-view{position:fixed;left:0;top:0;bottom:0;right:%(bar)dpx}
#landscape-side{position:fixed;top:0;bottom:0;right:0;width:%(bar)dpx;background:#fff;
font:13px system-ui,sans-serif;color:#222}
.landscape-heading{position:fixed;transform:translateX(-50%%);font:600 17px system-ui,
sans-serif;color:#111;pointer-events:none;white-space:nowrap}
#landscape-title{position:fixed;top:8px;left:12px;font:15px system-ui,sans-serif;
color:#111;pointer-events:none}
#landscape-help{position:fixed;bottom:6px;left:10px;font:12px system-ui,sans-serif;
color:#666;pointer-events:none}
#landscape-bar{position:absolute;left:18px;top:18%%;height:60%%;width:22px;
border:1px solid #888}
.landscape-tick{position:absolute;left:44px;transform:translateY(50%%);white-space:nowrap}
.landscape-tick:before{content:"";position:absolute;left:-9px;top:50%%;width:6px;
border-top:1px solid #444}
#landscape-bar-title{position:absolute;left:8px;top:calc(18%% - 26px);font-weight:600}
.landscape-swatch{display:inline-block;width:12px;height:12px;margin-right:6px;
vertical-align:-1px}
"""

_PAGE_JS = """
(function () {
  var cfg = JSON.parse(document.getElementById('landscape-scene').textContent);
  var state = window.landscapeScene = {ready: false, renderers: 0, linkedCameras: false,
                                       meshes: 0, axes: 0};
  var start = Date.now();
  function fit(rw, renderers) {
    // the camera distance at which the scene fills the narrower side of a panel
    var cam = renderers[0].getActiveCamera(), c = cfg.fit.center;
    var pos = cam.getPosition(), dir = [pos[0] - c[0], pos[1] - c[1], pos[2] - c[2]];
    var len = Math.hypot(dir[0], dir[1], dir[2]) || 1;
    var size = rw.getViews()[0].getSize(), vp = renderers[0].getViewport();
    var aspect = (size[0] * (vp[2] - vp[0])) / Math.max(1, size[1] * (vp[3] - vp[1]));
    var v = cam.getViewAngle() * Math.PI / 180;
    var angle = Math.min(v, 2 * Math.atan(Math.tan(v / 2) * aspect));
    // 1.12: room for the axis titles and tick labels, which lie outside the bounds
    var d = 1.12 * cfg.fit.radius / Math.sin(angle / 2) / cfg.fit.zoom;
    cam.setFocalPoint(c[0], c[1], c[2]);
    cam.setPosition(c[0] + dir[0] / len * d, c[1] + dir[1] / len * d, c[2] + dir[2] / len * d);
    renderers.forEach(function (r) { r.resetCameraClippingRange(); });
  }
  function step() {
    var rw = window.global && window.global.renderWindow;
    if (rw) {
      var renderers = rw.getRenderers(), axes = [], meshes = 0;
      renderers.forEach(function (r) {
        r.getActors().forEach(function (a) {
          if (a.getClassName() === 'vtkCubeAxesActor') { axes.push(a); return; }
          var m = a.getMapper && a.getMapper(), d = m && m.getInputData();
          if (d && d.getNumberOfPoints() > 0) { meshes += 1; }
        });
      });
      if (axes.length >= cfg.panels && meshes >= cfg.meshes) {
        var zt = cfg.z_ticks.map(function (t) { return t[0]; });
        var zs = cfg.z_ticks.map(function (t) { return t[1]; });
        axes.forEach(function (a) {
          var base = a.getGenerateTicks();
          a.setGenerateTicks(function (b) {
            var t = base(b);
            t.ticks[2] = zt; t.tickStrings[2] = zs;
            return t;
          });
          // the height's name sits at a panel's edge, where vtk.js cuts it: the page has it
          var names = a.getAxisLabels();
          a.setAxisLabels([names[0], names[1], '']);
          var b = a.getDataBounds().slice();
          b[5] += 1e-9 * (Math.abs(b[5]) + 1);  // new bounds: the axes redraw their ticks
          a.setDataBounds(b);
        });
        fit(rw, renderers.filter(function (r) { return r.getActors().length > 0; }));
        rw.render();
        var drawn = renderers.filter(function (r) { return r.getActors().length > 0; });
        var cam = drawn[0].getActiveCamera();
        state.renderers = drawn.length;
        state.linkedCameras = drawn.every(function (r) { return r.getActiveCamera() === cam; });
        state.meshes = meshes; state.axes = axes.length; state.ready = true;
        return;
      }
    }
    if (Date.now() - start > 60000) {
      console.error('landscape: the 3-D scene did not load within 60 s');
      return;
    }
    setTimeout(step, 50);
  }
  window.addEventListener('load', function () { setTimeout(step, 0); });
})();
"""


# the page may run its own inline code and use data it carries, and fetch nothing
_OFFLINE_POLICY = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                   "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "img-src data: blob:; font-src data:; connect-src data: blob:; "
                   "worker-src blob:\">")
_REMOTE_ICON = re.compile(r"https://kitware\.github\.io/vtk-js/icon/favicon-[^`\"']*\.png")


def _web_page(vtkjs: str, page: dict[str, Any], title: str) -> str:
    """The vtk.js page with the scene's colour bar, names, title and height ticks added."""
    import html as _html

    esc = _html.escape
    bar = _BAR_PX if page["colorbar"] or page["legend"] else 0
    view = f"calc(100% - {bar}px)"
    parts = [f"<style>{_PAGE_CSS % {'bar': bar}}</style>",
             "<div class='content' id='landscape-view'></div>"]
    top = 36 if page["title"] else 8
    if page["title"]:
        parts.append(f"<div id='landscape-title'>{esc(page['title'])}</div>")
    if not page["overlay"] and len(page["names"]) > 1:
        for k, name in enumerate(page["names"]):
            left = f"calc({view} * {(k + 0.5) / page['panels']:.6f})"
            parts.append(f"<div class='landscape-heading' style='left:{left};top:{top}px'>"
                         f"{esc(name)}</div>")
    side = []
    if page["colorbar"]:
        cb = page["colorbar"]
        stops = ", ".join(f"{c} {100 * t:.2f}%" for t, c in cb["stops"])
        side.append(f"<div id='landscape-bar-title'>{esc(page['metric'])}</div>"
                    f"<div id='landscape-bar' style='background:linear-gradient(to top, "
                    f"{stops})'></div>")
        side += [f"<div class='landscape-tick' style='bottom:calc(18% + 60% * {t:.6f})'>"
                 f"{esc(text)}</div>" for t, text in cb["ticks"] if -1e-9 <= t <= 1 + 1e-9]
    if page["legend"]:
        rows = "".join(f"<div style='margin:4px 0'><span class='landscape-swatch' "
                       f"style='background:{c}'></span>{esc(n)}</div>"
                       for n, c in page["legend"])
        side.append(f"<div style='position:absolute;left:10px;top:40px'>{rows}</div>")
    if bar:
        parts.append(f"<div id='landscape-side'>{''.join(side)}</div>")
    parts.append(f"<div id='landscape-help'>height: {esc(page['z_title'])} &middot; drag: "
                 "rotate &middot; wheel: zoom &middot; shift-drag: pan &middot; ctrl-drag: "
                 "spin</div>")
    config = json.dumps({k: page[k] for k in ("panels", "meshes", "z_ticks", "fit")})
    parts.append("<script type='application/json' id='landscape-scene'>"
                 + config.replace("</", "<\\/") + "</script>")
    parts.append(f"<script>{_PAGE_JS}</script>")
    head, sep, rest = vtkjs.partition("<body>")
    if not sep:
        raise LandscapeError("PyVista's web export returned an unexpected page (no <body>)")
    head = re.sub(r"<title>.*?</title>", f"<title>{esc(title)}</title>", head, count=1,
                  flags=re.S)
    head = head.replace("<head>", f"<head>\n{_OFFLINE_POLICY}", 1)
    # vtk.js's viewer adds its favicons from the web: point them at nothing instead
    rest = _REMOTE_ICON.sub("data:,", rest)
    return head + sep + "\n" + "\n".join(parts) + "\n" + rest


def scene_html(surfaces: Surface | Sequence[Surface], metric: str = "train_loss", *,
               page_title: str | None = None, **scene: Any) -> str:
    """The interactive 3-D scene as one self-contained HTML page (vtk.js; no network).

    Args:
        surfaces: one 2-D surface or several (side by side, linked cameras).
        metric: metric giving height and colour.
        page_title: the browser tab's title (default: the scene title or the panel names).
        **scene: options of ``build_web_scene`` (labels, log, zmax, overlay, contours, ...).

    Returns:
        The page's text.
    """
    missing = web_export_missing()
    if missing:
        raise LandscapeError(missing)
    plotter, page = build_web_scene(surfaces, metric, **scene)
    try:
        vtkjs = _vtkjs_page(plotter)
    finally:
        plotter.close()
    title = page_title or page["title"] or " vs ".join(page["names"])
    return _web_page(vtkjs, page, f"{title}: {page['metric']} (3-D)")


def export_html(surfaces: Surface | Sequence[Surface], path: str | os.PathLike,
                metric: str = "train_loss", **scene: Any) -> Path:
    """Write an interactive 3-D scene to one self-contained HTML file that opens offline.

    Rotate with the mouse, zoom with the wheel; several surfaces sit side by side on one
    height and colour scale with linked cameras, as in ``render_surface``. The page embeds
    vtk.js and the meshes (about 1.1 MB plus the data); nothing is fetched when it opens.
    Needs trame-pyvista, trame-vtk and nest_asyncio2 (``pip install
    'landscape-minima[web]'``).

    Args:
        surfaces: one 2-D surface or several.
        path: output .html file (written atomically; nothing is written on an error).
        metric: metric giving height and colour.
        **scene: options of ``build_web_scene`` (labels, log, zmax, overlay, contours,
            trajectories, anchors, axis_names, title, cmap, azimuth, elevation, ...).

    Returns:
        The path written.
    """
    path = check_writable(check_output(path, HTML_SUFFIXES, "web page"))
    text = scene_html(surfaces, metric, **scene)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


class SceneView:
    """A 3-D scene for Jupyter: interactive (vtk.js, offline) in front ends that show HTML,
    the rendered image elsewhere (nbconvert to PDF, GitHub, a terminal).

    Attributes:
        image: the rendered picture, an (H, W, 3) uint8 array.
        html: the interactive page (None for a static view).
        note: why the view is static, if it is.
    """

    def __init__(self, image: np.ndarray, html: str | None = None, note: str | None = None,
                 height: int = 560):
        self.image = image
        self.html = html
        self.note = note
        self.height = height

    def _png(self) -> bytes:
        import io

        import imageio.v3 as iio

        buffer = io.BytesIO()
        iio.imwrite(buffer, self.image, extension=".png")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self._png()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        import base64
        import html as _html

        h, w = self.image.shape[:2]
        text = f"<3-D scene, {w}x{h} image" + (", interactive" if self.html else "") + ">"
        if self.note:
            text += f" ({self.note})"
        bundle: dict[str, Any] = {"text/plain": text,
                                  "image/png": base64.b64encode(self._png()).decode("ascii")}
        if self.html:
            bundle["text/html"] = (
                f"<iframe srcdoc=\"{_html.escape(self.html, quote=True)}\" "
                f"style=\"width:100%;height:{self.height}px;border:1px solid #ddd\" "
                "title=\"3-D scene\"></iframe>")
        return bundle


def _check_notebook(notebook: bool | str) -> None:
    if notebook not in (True, "interactive", "static"):
        raise LandscapeError(f"notebook={notebook!r}: use True (interactive where possible), "
                             "'interactive' or 'static'")
    if notebook == "interactive" and web_export_missing():
        raise LandscapeError(web_export_missing())


def _scene_view(surfaces, metric: str, size: tuple[int, int], notebook: bool | str,
                img: np.ndarray, scene: dict[str, Any]) -> SceneView:
    if notebook == "static":
        return SceneView(img)
    missing = web_export_missing()
    if missing:
        return SceneView(img, note=missing)
    web = {k: v for k, v in scene.items() if k not in ("fill",)}
    return SceneView(img, scene_html(surfaces, metric, **web), height=min(size[1], 720))
