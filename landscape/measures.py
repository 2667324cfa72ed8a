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
        eig_tol: Lanczos tolerance of the top eigenvalue.
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
    eig_tol: float = 1e-3
    loss: str = "cross_entropy"
    seed: int = 0
    device: str | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> "MeasureOptions":
        """Coarser measures, about half the default cost: lines of 21 points, a 9 x 9 plane,
        8 PAC-Bayes bisection steps, eigenvalue tolerance 1e-2 (``coarse_notes`` says what
        each costs in resolution). The trace keeps its 30 products: with 12, quick-grid
        traces were up to 37% off the 30-product ones."""
        return cls(**{"line_points": 21, "plane_points": 9, "pacbayes_iterations": 8,
                      "eig_tol": 1e-2, **overrides})


PACBAYES_BRACKET = (1e-5, 10.0)
"""The bracket of the PAC-Bayes noise level searched (``pacbayes_flatness``'s default)."""


def coarse_notes(options: MeasureOptions) -> dict[str, str]:
    """Measure name -> how ``options`` computes it more coarsely than the defaults (a measure
    computed at the default resolution or finer is left out).

    Returns:
        e.g. ``{"trace": "Hutch++ with 12 products (default 30)"}``.
    """
    o, d = options, MeasureOptions()
    notes = {}
    if o.eig_tol > d.eig_tol:
        notes["top_eigenvalue"] = f"Lanczos tolerance {o.eig_tol:g} (default {d.eig_tol:g})"
    if o.trace_products < d.trace_products:
        notes["trace"] = f"Hutch++ with {o.trace_products} products (default {d.trace_products})"
    if o.line_points < d.line_points:
        line = (f"{o.line_points}-point line, grid step {2 / (o.line_points - 1):.2g} "
                f"(default {d.line_points} points)")
        notes["basin_width_1d"] = notes["basin_width_top_eigenvector"] = line
    if o.plane_points < d.plane_points:
        notes["basin_width_2d"] = (f"{o.plane_points} x {o.plane_points} plane, grid step "
                                   f"{2 / (o.plane_points - 1):.2g} (default "
                                   f"{d.plane_points} x {d.plane_points})")
    if o.pacbayes_iterations < d.pacbayes_iterations or o.pacbayes_samples < d.pacbayes_samples:
        lo, hi = PACBAYES_BRACKET
        factor = (hi / lo) ** (0.5 ** o.pacbayes_iterations)
        text = (f"{o.pacbayes_iterations} bisection steps, {o.pacbayes_samples} antithetic "
                f"pairs: sigma within a factor {factor:.3g}, 1/sigma^2 within "
                f"{factor ** 2:.3g} (default {d.pacbayes_iterations} steps, "
                f"{d.pacbayes_samples} pairs)")
        notes["pacbayes_flatness"] = notes["pacbayes_mag_flatness"] = text
    return notes


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
    eig = hessian_eigenvalues(model, bundle.train, k=1, tol=o.eig_tol, seed=o.seed,
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
                                    magnitude_aware=mag, lo=PACBAYES_BRACKET[0],
                                    hi=PACBAYES_BRACKET[1], samples=o.pacbayes_samples,
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
