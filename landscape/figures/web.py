"""The interactive 3-D scene as one self-contained web page: PyVista's vtk.js export of the
scene of ``scene`` (same meshes, scale and pieces), with the colour bar, panel names, title
and height ticks added as HTML, and a policy that lets the page fetch nothing.

The page's style and script are package data (``assets/scene.css``, a template whose
``${bar}`` is the side column's width in pixels, and ``assets/scene.js``). Needs the web
extra (trame-pyvista, trame-vtk, nest_asyncio2); ``outputs.web_export_missing`` says what
is missing.
"""
from __future__ import annotations

import json
import os
import re
import sys
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..util import atomic_path, check_writable
from ..errors import LandscapeError
from ..surface import Surface
from .actors import SceneScale
from .backend import load_pyvista
from .data import pretty
from .outputs import HTML_SUFFIXES, check_figure_path, web_export_missing
from .scales import colorbar_ticks
from .scene import draw_panels, font_scale, place_cameras, scene_data, scene_paths
from .style import RUN_COLORS

if TYPE_CHECKING:  # pragma: no cover
    import pyvista as pv

_BAR_PX = 120  # the colour bar's column in the web page


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
    pv = load_pyvista()
    items, names, zmax, meshes, scale = scene_data(surfaces, metric, labels, log, zmax, cmap,
                                                   z_aspect, contours)
    paths = scene_paths(items, trajectories)
    panels = 1 if overlay or len(items) == 1 else len(items)
    size = (900, 700)
    plotter = pv.Plotter(off_screen=True, shape=(1, panels), border=False,
                         theme=pv.themes.DocumentTheme(), window_size=(size[0] * panels, size[1]))
    draw_panels(plotter, items, meshes, paths, scale, metric, log, zmax, cmap, overlay,
                contours, floor, axis_names, font_scale(size), anchors=anchors, rise=rise)
    place_cameras(plotter, panels, azimuth, elevation)
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


def _bake_colors(plotter, scale: SceneScale, cmap: str) -> None:
    """Give every actor coloured by the shared scale its colours per point (RGB), so vtk.js
    shows exactly the colours of the images (it has no log lookup tables)."""
    from matplotlib import colormaps

    pv = load_pyvista()
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


def _height_ticks(scale: SceneScale) -> list[list]:
    """[scene z, label] of round heights (the height axis shows heights, not scene units)."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = scale.hmin, scale.hmax
    if not hi > lo:
        return [[float(scale.z(lo)), f"{lo:.3g}"]]
    ticks = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    ticks = ticks[(ticks >= lo - 1e-9 * span) & (ticks <= hi + 1e-9 * span)]
    return [[float(scale.z(t)), f"{t:.3g}" if abs(t) > 1e-12 * span else "0"] for t in ticks]


def _colorbar_page(scale: SceneScale, cmap: str) -> dict[str, Any]:
    """The shared colour bar as CSS gradient stops and tick positions (0 bottom, 1 top)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    table = colormaps[cmap]
    stops = [[float(t), to_hex(table(t))] for t in np.linspace(0.0, 1.0, 33)]
    ticks = [[float(scale.norm(t)), f"{t:g}"] for t in colorbar_ticks(scale.norm)]
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


_OFFLINE_POLICY = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                   "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "img-src data: blob:; font-src data:; connect-src data: blob:; "
                   "worker-src blob:\">")
_REMOTE_ICON = re.compile(r"https://kitware\.github\.io/vtk-js/icon/favicon-[^`\"']*\.png")


def _web_page(vtkjs: str, page: dict[str, Any], title: str) -> str:
    """The vtk.js page with the scene's colour bar, names, title and height ticks added."""
    bar = _BAR_PX if page["colorbar"] or page["legend"] else 0
    view = f"calc(100% - {bar}px)"
    css = Template(_asset("scene.css")).substitute(bar=bar)
    parts = [f"<style>\n{css}</style>",
             "<div class='content' id='landscape-view'></div>"]
    top = 36 if page["title"] else 8
    if page["title"]:
        parts.append(f"<div id='landscape-title'>{escape(page['title'])}</div>")
    if not page["overlay"] and len(page["names"]) > 1:
        for k, name in enumerate(page["names"]):
            left = f"calc({view} * {(k + 0.5) / page['panels']:.6f})"
            parts.append(f"<div class='landscape-heading' style='left:{left};top:{top}px'>"
                         f"{escape(name)}</div>")
    if bar:
        parts.append(f"<div id='landscape-side'>{''.join(_side_panel(page))}</div>")
    parts.append(f"<div id='landscape-help'>height: {escape(page['z_title'])} &middot; drag: "
                 "rotate &middot; wheel: zoom &middot; shift-drag: pan &middot; ctrl-drag: "
                 "spin</div>")
    config = json.dumps({k: page[k] for k in ("panels", "meshes", "z_ticks", "fit")})
    parts.append("<script type='application/json' id='landscape-scene'>"
                 + config.replace("</", "<\\/") + "</script>")
    parts.append(f"<script>\n{_asset('scene.js')}</script>")
    head, sep, rest = vtkjs.partition("<body>")
    if not sep:
        raise LandscapeError("PyVista's web export returned an unexpected page (no <body>)")
    # the title goes in as text: a backslash in it is no group reference
    head = re.sub(r"<title>.*?</title>", lambda _: f"<title>{escape(title)}</title>", head,
                  count=1, flags=re.S)
    head = head.replace("<head>", f"<head>\n{_OFFLINE_POLICY}", 1)
    # vtk.js's viewer adds its favicons from the web: point them at nothing instead
    rest = _REMOTE_ICON.sub("data:,", rest)
    return head + sep + "\n" + "\n".join(parts) + "\n" + rest


def _side_panel(page: dict[str, Any]) -> list[str]:
    """The page's right-hand column: the shared colour bar with its ticks, or the legend of
    an overlay."""
    side = []
    if page["colorbar"]:
        cb = page["colorbar"]
        stops = ", ".join(f"{c} {100 * t:.2f}%" for t, c in cb["stops"])
        side.append(f"<div id='landscape-bar-title'>{escape(page['metric'])}</div>"
                    f"<div id='landscape-bar' style='background:linear-gradient(to top, "
                    f"{stops})'></div>")
        side += [f"<div class='landscape-tick' style='bottom:calc(18% + 60% * {t:.6f})'>"
                 f"{escape(text)}</div>" for t, text in cb["ticks"] if -1e-9 <= t <= 1 + 1e-9]
    if page["legend"]:
        rows = "".join(f"<div style='margin:4px 0'><span class='landscape-swatch' "
                       f"style='background:{c}'></span>{escape(n)}</div>"
                       for n, c in page["legend"])
        side.append(f"<div style='position:absolute;left:10px;top:40px'>{rows}</div>")
    return side


def _asset(name: str) -> str:
    """The text of a file shipped in ``landscape/figures/assets`` (the page's CSS and JS)."""
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


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
    path = check_writable(check_figure_path(path, HTML_SUFFIXES, "web page"))
    text = scene_html(surfaces, metric, **scene)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
