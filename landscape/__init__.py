"""landscape: loss landscapes, Hessian spectra and sharpness of neural-network minima."""
from __future__ import annotations

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint
from .data import DataBundle, load_dataset
from .errors import LandscapeError
from .models import build_model, count_parameters
from .train import TrainConfig, TrainResult, train

__all__ = [
    "__version__",
    # data and models
    "DataBundle", "load_dataset", "build_model", "count_parameters",
    # training and checkpoints
    "TrainConfig", "TrainResult", "train", "save_checkpoint", "load_checkpoint",
    # errors
    "LandscapeError",
]
