"""landscape: loss landscapes, Hessian spectra and sharpness of neural-network minima.

Importing the package touches no disk, screen or network; heavy optional parts (h5py,
matplotlib, pyvista) are imported only by the functions that need them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint
from .connect import ConnectOptions, ConnectResult, connect
from .data import DataBundle, load_dataset
from .directions import (TrajectoryPCA, direction_cosine, interpolation_direction,
                         load_directions, plane_directions, random_directions, save_directions,
                         trajectory_pca)
from .errors import LandscapeError
from .evaluate import Evaluator
from .curvature import (HessianOptions, dense_hessian, extreme_eigenvalues, hessian_density,
                      hessian_eigenvalues, hessian_trace)
from .models import build_model, count_parameters
from .shape import BasinShape, basin_shape, path_barrier, surface_shape
from .sharpness import (adaptive_sharpness, average_sharpness, epsilon_sharpness,
                        measure_sharpness, reparametrization_report, rescale_relu_layers)
from .store import load_surface, save_surface
from .surface import Surface, SurfaceOptions, compute_surface
from .train import TrainConfig, TrainResult, train

_FIGURES = ("plot_lines", "plot_contours", "plot_trajectory", "plot_eig_ratio", "plot_density",
            "plot_eigenvalues", "plot_history", "plot_sweep", "plot_paths", "render_surface",
            "orbit_animation", "export_vtk", "export_html", "scene_html")


def __getattr__(name: str):
    """Figures are imported on first use, so ``import landscape`` stays free of matplotlib."""
    if name in _FIGURES:
        from . import figures

        return getattr(figures, name)
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")


__all__ = [
    "__version__",
    # data and models
    "DataBundle", "load_dataset", "build_model", "count_parameters",
    # training and checkpoints
    "TrainConfig", "TrainResult", "train", "save_checkpoint", "load_checkpoint",
    # directions
    "random_directions", "direction_cosine", "interpolation_direction", "plane_directions",
    "trajectory_pca", "TrajectoryPCA", "save_directions", "load_directions",
    # surfaces
    "Surface", "SurfaceOptions", "compute_surface", "Evaluator", "load_surface", "save_surface",
    # curvature
    "hessian_eigenvalues", "extreme_eigenvalues", "hessian_trace", "hessian_density",
    "dense_hessian", "HessianOptions",
    # sharpness and basin shape
    "epsilon_sharpness", "adaptive_sharpness", "average_sharpness", "measure_sharpness",
    "reparametrization_report", "rescale_relu_layers", "basin_shape", "surface_shape",
    "BasinShape", "path_barrier",
    # many minima
    "connect", "ConnectOptions", "ConnectResult",
    # figures (matplotlib and pyvista load on first use)
    "plot_lines", "plot_contours", "plot_trajectory", "plot_eig_ratio", "plot_density",
    "plot_eigenvalues", "plot_history", "plot_sweep", "plot_paths", "render_surface",
    "orbit_animation", "export_vtk", "export_html", "scene_html",
    # errors
    "LandscapeError",
]
