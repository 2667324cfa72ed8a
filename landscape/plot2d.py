"""Deprecated location, kept for one release: use landscape.figures.

The 2-D figures now live in ``landscape.figures`` (``lines``, ``contours``, ``spectra``,
``training``, with ``data``, ``scales``, ``style`` and ``outputs`` beneath them). This module
re-exports every name that was imported from here, so existing code keeps working unchanged;
the private ``_is_round``, ``_panel_labels`` and ``_colorbar_ticks`` are ``is_round``,
``panel_labels`` and ``colorbar_ticks`` there.
"""
from __future__ import annotations

from .figures.contours import (KINDS_2D, eig_ratio, plot_contours, plot_eig_ratio,
                               plot_trajectory)
from .figures.data import (anchors_of, axis_labels, metric_values, pretty, surface_name,
                           trajectory_of)
from .figures.data import panel_labels as _panel_labels  # noqa: F401
from .figures.lines import plot_lines, plot_paths
from .figures.outputs import FORMATS, atomic_suffixed, figure_format
from .figures.scales import colorbar_ticks as _colorbar_ticks  # noqa: F401
from .figures.scales import is_round as _is_round  # noqa: F401
from .figures.scales import loss_cap, shared_scale
from .figures.spectra import density_arrays, plot_batch_spread, plot_density, plot_eigenvalues
from .figures.style import RUN_COLORS, STYLE, check_cmap, save_figure
from .figures.training import plot_history, plot_sharpness, plot_sweep

__all__ = [
    "FORMATS", "KINDS_2D", "STYLE", "RUN_COLORS", "figure_format", "atomic_suffixed",
    "save_figure", "surface_name", "metric_values", "trajectory_of", "anchors_of",
    "axis_labels", "pretty", "check_cmap", "plot_lines", "plot_paths", "loss_cap",
    "shared_scale", "plot_contours", "plot_trajectory", "eig_ratio", "plot_eig_ratio",
    "density_arrays", "plot_density", "plot_eigenvalues", "plot_history", "plot_sweep",
    "plot_sharpness", "plot_batch_spread",
]
