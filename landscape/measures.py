"""Every flatness measure of one trained model, as one flat dict: ``measure_model``.

Contract: ``measure_model(model, bundle, options)`` returns ``measure name -> float`` (NaN
where a measure could not be computed, never a missing key), in the order of ``MEASURES``,
plus the model's train/test loss and error. Curvature (top eigenvalue, trace) comes from
``landscape.curvature``; Keskar, adaptive and average sharpness from ``landscape.sharpness``;
PAC-Bayes flatness from ``landscape.generalization``; basin widths from
``landscape.shape.basin_shape`` over loss lines and planes evaluated in memory (a random
filter-normalized direction, a plane of two, and the unit top eigenvector). The model's
weights are never changed. Larger is sharper for every measure except the basin widths.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import DataBundle
from .directions import random_directions
from .generalization import pacbayes_flatness
from .curvature import HessianOptions, hessian_eigenvalues, hessian_trace
from .losses import loss_function
from .params import flatten, named_tensors
from .shape import basin_shape
from .sharpness import adaptive_sharpness, average_sharpness, epsilon_sharpness
from .sharpness.objective import Objective
from .train import evaluate_split

MEASURES = ("top_eigenvalue", "trace", "keskar_sharpness", "adaptive_sharpness",
            "average_sharpness", "basin_width_1d", "basin_width_2d",
            "basin_width_top_eigenvector", "weight_norm", "pacbayes_flatness",
            "pacbayes_mag_flatness")
"""The measures, in report order (widths: larger is flatter; the rest: larger is sharper)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeasureOptions:
    """How each measure is computed (cheap defaults, sized for many runs on a CPU).

    Attributes:
        eps: Keskar box size.
        rho: adaptive (worst-case, l2) and average sharpness radius.
        trace_products: Hessian-vector products of the Hutch++ trace.
        rise: loss increase that bounds a basin (its width).
        line_points, plane_points: grid points of the 1-D lines and the 2-D plane on [-1, 1].
        pacbayes_bound: the loss increase allowed by the PAC-Bayes flatness.
        pacbayes_samples, pacbayes_iterations: its antithetic pairs and bisection steps.
        loss: the training loss name.
        seed: seed of every random draw.
        device: torch device for the Hessian products.
    """

    eps: float = 1e-3
    rho: float = 0.05
    trace_products: int = 30
    rise: float = 0.1
    line_points: int = 41
    plane_points: int = 15
    pacbayes_bound: float = 0.1
    pacbayes_samples: int = 2
    pacbayes_iterations: int = 12
    loss: str = "cross_entropy"
    seed: int = 0
    device: str | None = None


def measure_model(model: nn.Module, bundle: DataBundle,
                  options: MeasureOptions = MeasureOptions()) -> dict[str, Any]:
    """Every measure of ``model`` on ``bundle``'s training split, and its errors.

    Returns:
        ``{"measures": {name: float}, "train_loss", "test_loss", "train_error",
        "test_error"}``.
    """
    o = options
    loss_fn = loss_function(o.loss, bundle.num_classes)
    (xtr, ytr), (xte, yte) = bundle.train, bundle.test
    train_loss, train_acc = evaluate_split(model, xtr, ytr, loss_fn)
    test_loss, test_acc = evaluate_split(model, xte, yte, loss_fn)
    hopts = HessianOptions(loss=o.loss, device=o.device)
    eig = hessian_eigenvalues(model, bundle.train, k=1, tol=1e-3, seed=o.seed,
                              return_vectors=True, options=hopts)
    obj = Objective(model, bundle, "train", o.loss)
    m = {"top_eigenvalue": float(np.max(eig.values)),
         "trace": hessian_trace(model, bundle.train, n_products=o.trace_products, seed=o.seed,
                                options=hopts).estimate,
         "keskar_sharpness": epsilon_sharpness(model, bundle, eps=o.eps, loss=o.loss,
                                               seed=o.seed).value,
         "adaptive_sharpness": adaptive_sharpness(model, bundle, rho=o.rho, loss=o.loss,
                                                  seed=o.seed).value,
         "average_sharpness": average_sharpness(model, bundle, rho=o.rho, loss=o.loss,
                                                seed=o.seed).mean,
         **_widths(model, obj, eig.vectors[:, -1], o),
         "weight_norm": float(torch.linalg.vector_norm(obj.x0)),
         **{name: pacbayes_flatness(model, bundle, bound=o.pacbayes_bound,
                                    magnitude_aware=mag, samples=o.pacbayes_samples,
                                    iterations=o.pacbayes_iterations, loss=o.loss,
                                    seed=o.seed).flatness
            for name, mag in (("pacbayes_flatness", False), ("pacbayes_mag_flatness", True))}}
    return {"measures": {k: _number(m[k]) for k in MEASURES}, "train_loss": train_loss,
            "test_loss": test_loss, "train_error": 1.0 - train_acc, "test_error": 1.0 - test_acc}


def _widths(model: nn.Module, obj: Objective, top_vector: np.ndarray,
            o: MeasureOptions) -> dict[str, float]:
    """Basin widths at ``o.rise`` along a random filter-normalized direction, in a plane of
    two, and along the unit top eigenvector (coordinates in [-1, 1])."""
    names = list(named_tensors(model, "weights"))
    d1, d2 = (flatten({k: d[k] for k in names}).to(obj.device, obj.dtype)
              for d in random_directions(model, 2, seed=o.seed))
    top = torch.as_tensor(top_vector, device=obj.device, dtype=obj.dtype)
    line, plane = np.linspace(-1, 1, o.line_points), np.linspace(-1, 1, o.plane_points)
    along = np.array([obj.loss(obj.x0 + a * d1) for a in line])
    sheet = np.array([[obj.loss(obj.x0 + a * d1 + b * d2) for b in plane] for a in plane])
    eigen = np.array([obj.loss(obj.x0 + a * top) for a in line])
    return {"basin_width_1d": basin_shape(line, along, rise=o.rise).width,
            "basin_width_2d": basin_shape(plane, sheet, plane, rise=o.rise).width,
            "basin_width_top_eigenvector": basin_shape(line, eigen, rise=o.rise).width}


def _number(value: Any) -> float:
    """A float (NaN for None or a non-number)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out if math.isfinite(out) or math.isnan(out) else float("nan")
