"""3-D scenes with PyVista: one or several surfaces side by side (linked cameras, one
colour bar) or overlaid, on one shared height and colour scale, framed so that the picture
fills each panel.

``scene_data`` and ``draw_panels`` are shared with the web page (``web``), so the picture
and the interactive page show the same meshes, scale and pieces. Rendering is offscreen by
default; PyVista is loaded on first use. Nothing here computes a loss.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import LandscapeError
from ..surface import Surface
from .actors import (SceneScale, add_anchors, add_axes, add_basin_edge, add_colorbar,
                     add_path, add_surface, quantity_label)
from .backend import load_pyvista
from .data import axis_labels, metric_values, panel_labels, trajectory_of
from .mesh import surface_mesh
from .scales import loss_cap
from .style import RUN_COLORS, check_cmap

if TYPE_CHECKING:  # pragma: no cover
    import pyvista as pv


def scene_data(surfaces, metric: str, labels, log: bool, zmax: float | None, cmap: str,
               z_aspect: float, contours):
    """The surfaces as a list, their names, the height clip, meshes and the shared scale of a
    scene (the image and the web page alike). A loss is clipped near its minima by default
    (``scales.loss_cap``), so the basins show rather than the grid's worst corner; ``inf``
    clips nothing."""
    items = [surfaces] if isinstance(surfaces, Surface) else list(surfaces)
    if not items:
        raise LandscapeError("no surfaces to render")
    names = panel_labels(labels, items)
    check_cmap(cmap)
    colors = [metric_values(s, metric, 2) for s in items]
    if zmax is None and metric.endswith("loss"):
        zmax = loss_cap(colors)
    elif zmax is not None and not np.isfinite(zmax):
        zmax = None
    meshes = [surface_mesh(s, metric, log=log, zmax=zmax) for s in items]
    scale = SceneScale(meshes, colors, log, z_aspect, contours if contours is not None else 12,
                       zmax)
    return items, names, zmax, meshes, scale


def draw_panels(plotter, items, meshes, paths, scale, metric, log, zmax, cmap, overlay,
                contours, floor, axis_names, fs, anchors: bool, rise: float | None = None
                ) -> None:
    """Each surface in its panel (or all in one): mesh, contours, basin edge, path, anchors,
    axes."""
    for k, (surface, mesh) in enumerate(zip(items, meshes)):
        # each panel names its own axes (a random plane beside a plane through minima)
        xl, yl = axis_labels(items[0] if overlay else surface, axis_names)
        plotter.subplot(0, 0 if overlay else k)
        shown = add_surface(plotter, mesh, scale, metric, zmax, cmap, overlay, k, contours,
                            floor)
        if rise and not overlay:
            add_basin_edge(plotter, surface, shown, scale, metric, zmax, rise,
                           floor and contours is not None)
        if paths[k] is not None:
            add_path(plotter, surface, paths[k], scale, metric, log, zmax)
        if anchors:
            add_anchors(plotter, surface, scale, metric, log, zmax)
        if not overlay or k == len(items) - 1:
            add_axes(plotter, scale, [surface] if not overlay else items, xl, yl,
                     quantity_label(metric, log, zmax, True), fs)


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
            ``scales.loss_cap`` (near the minima, so the basins show; ``inf``: no clip).
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
    pv = load_pyvista()
    items, names, zmax, meshes, scale = scene_data(surfaces, metric, labels, log, zmax, cmap,
                                                   z_aspect, contours)
    paths = scene_paths(items, trajectories)
    panels = 1 if overlay or len(items) == 1 else len(items)
    bar = not overlay  # the shared colour bar gets a narrow column of its own
    bar_px = max(size[0] // 5, 110)
    fs = font_scale(size)
    plotter = pv.Plotter(off_screen=off_screen, shape=(1, panels + bar), border=False,
                         theme=pv.themes.DocumentTheme(),
                         col_weights=[size[0]] * panels + [bar_px] * bar,
                         window_size=(size[0] * panels + bar_px * bar, size[1]))
    draw_panels(plotter, items, meshes, paths, scale, metric, log, zmax, cmap, overlay,
                contours, floor, axis_names, fs, anchors=False, rise=rise)
    place_cameras(plotter, panels, azimuth, elevation)
    headed = title or len(items) > 1
    if off_screen:  # fit what was drawn (labels included) to the panel, below any heading
        _frame(plotter, panels, size, fill, 2.6 * fs(18) if headed else 0.0)
    if zoom != 1.0:
        plotter.renderers[0].camera.zoom(zoom)
    _add_headings(plotter, names, title, overlay, fs)
    if bar:
        plotter.subplot(0, panels)
        add_colorbar(plotter, quantity_label(metric, log, zmax, False), log, scale, cmap, fs)
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


def font_scale(size: tuple[int, int]):
    """Font sizes that keep their proportion to the picture (tuned at 700 pixels high)."""
    factor = min(size[0] / 900, size[1] / 700)
    return lambda points: max(8, round(points * factor ** 0.5))


def scene_paths(items: list[Surface], trajectories: Any) -> list[np.ndarray | None]:
    """One training path (or None) per surface: the given ones, else those they carry."""
    if trajectories is None:
        return [trajectory_of(s)[0] for s in items]
    if isinstance(trajectories, np.ndarray) and trajectories.ndim == 2:
        trajectories = [trajectories]
    paths = list(trajectories) + [None] * len(items)
    return paths[:len(items)]


def place_cameras(plotter, panels: int, azimuth: float, elevation: float) -> None:
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
