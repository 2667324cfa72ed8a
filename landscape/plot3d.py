"""Deprecated location, kept for one release: use landscape.figures.

The 3-D scenes now live in ``landscape.figures`` (``mesh``, ``actors``, ``scene``,
``render``, ``web``, with ``backend`` and ``outputs`` beneath them); ``check_output`` is
``landscape.figures.check_figure_path`` there. This module re-exports every name that was
imported from here (what it imported included), so existing code keeps working unchanged;
the private ``_quantity`` is ``landscape.figures.actors.quantity_label``.
"""
from __future__ import annotations

import sys  # noqa: F401  (tests patch plot3d.sys.platform)

from ._util import check_writable  # noqa: F401
from .figures.actors import EDGE_COLOR, FLOOR_DEPTH, basin_edge_level
from .figures.actors import quantity_label as _quantity  # noqa: F401
from .figures.backend import has_display
from .figures.data import axis_labels, metric_values, pretty, trajectory_of  # noqa: F401
from .figures.mesh import (LOG_OFFSET, export_trajectory_vtk, export_vtk, heights,
                           surface_mesh, trajectory_polydata)
from .figures.outputs import (HTML_SUFFIXES, IMAGE_SUFFIXES, MOVIE_SUFFIXES, WEB_PACKAGES,
                              atomic_suffixed, mp4_writer, web_export_missing)  # noqa: F401
from .figures.outputs import check_figure_path as check_output
from .figures.render import SceneView, orbit_animation, render_surface
from .figures.scales import loss_cap, shared_scale  # noqa: F401
from .figures.scene import build_scene
from .figures.style import RUN_COLORS, check_cmap  # noqa: F401
from .figures.web import build_web_scene, export_html, scene_html

__all__ = [
    "IMAGE_SUFFIXES", "MOVIE_SUFFIXES", "HTML_SUFFIXES", "LOG_OFFSET", "WEB_PACKAGES",
    "FLOOR_DEPTH", "EDGE_COLOR", "has_display", "mp4_writer", "check_output", "heights",
    "surface_mesh", "trajectory_polydata", "export_vtk", "export_trajectory_vtk",
    "build_scene", "basin_edge_level", "render_surface", "orbit_animation",
    "web_export_missing", "build_web_scene", "scene_html", "export_html", "SceneView",
]
