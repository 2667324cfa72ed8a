"""Figures of loss landscapes and curvature: 2-D figures with matplotlib, 3-D scenes with
PyVista, and the interactive 3-D web page.

Modules, from the bottom up:

- ``outputs``: output formats, what can be written here (MP4, web page), atomic writes
- ``data``: what figures read from a surface (metric values, paths, anchors, axis labels)
- ``scales``: loss caps, shared colour scales, round levels and ticks
- ``style``: fonts, run colours, figure canvas and saving
- ``lines``, ``contours``, ``spectra``, ``training``, ``recipes``, ``matrices``,
  ``persistence``: the 2-D figures
- ``backend``, ``mesh``, ``actors``, ``scene``, ``render``: the 3-D meshes, scenes and
  their images, animations and VTK files
- ``web``: the self-contained interactive page (its CSS and JS in ``assets/``)

Figures draw the arrays they are given; nothing here computes a loss. Every public name is
listed below and loaded on first use, so importing the package loads neither matplotlib
nor PyVista.
"""
from __future__ import annotations

import importlib

#: public name -> the module of this package that defines it
_HOMES = {
    # output files
    "FORMATS": "outputs", "IMAGE_SUFFIXES": "outputs", "MOVIE_SUFFIXES": "outputs",
    "HTML_SUFFIXES": "outputs", "WEB_PACKAGES": "outputs", "figure_format": "outputs",
    "atomic_suffixed": "outputs", "check_figure_path": "outputs", "mp4_writer": "outputs",
    "web_export_missing": "outputs",
    # reading surfaces
    "metric_values": "data", "trajectory_of": "data", "anchors_of": "data",
    "axis_labels": "data", "surface_name": "data", "pretty": "data",
    # scales
    "loss_cap": "scales", "shared_scale": "scales", "is_round": "scales",
    "colorbar_ticks": "scales",
    # style and saving
    "STYLE": "style", "RUN_COLORS": "style", "save_figure": "style", "check_cmap": "style",
    # 2-D figures
    "plot_lines": "lines", "plot_paths": "lines",
    "KINDS_2D": "contours", "plot_contours": "contours", "plot_trajectory": "contours",
    "eig_ratio": "contours", "plot_eig_ratio": "contours",
    "density_arrays": "spectra", "plot_density": "spectra", "plot_eigenvalues": "spectra",
    "plot_batch_spread": "spectra", "plot_layer_curvature": "spectra",
    "plot_barrier_matrix": "matrices", "plot_persistence": "persistence",
    "plot_history": "training", "plot_sweep": "training", "plot_sharpness": "training",
    "plot_curvature_accuracy": "training",
    "plot_measure_grid": "recipes", "plot_tau_bars": "recipes",
    # 3-D meshes, scenes and their outputs
    "has_display": "backend",
    "LOG_OFFSET": "mesh", "heights": "mesh", "surface_mesh": "mesh",
    "trajectory_polydata": "mesh", "export_vtk": "mesh", "export_trajectory_vtk": "mesh",
    "FLOOR_DEPTH": "actors", "EDGE_COLOR": "actors", "basin_edge_level": "actors",
    "build_scene": "scene",
    "render_surface": "render", "orbit_animation": "render", "SceneView": "render",
    # the interactive web page
    "build_web_scene": "web", "scene_html": "web", "export_html": "web", "check_page_size": "web",
    "web_page_bytes": "web", "WEB_PAGE_MB": "web",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    """Load the module that defines ``name`` on first use (PyVista still waits for a
    3-D function to run)."""
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The package's names, the lazily loaded ones included."""
    return sorted(set(globals()) | set(__all__))
