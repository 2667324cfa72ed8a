"""Sharpness of a minimum, and its reparametrization check.

Two families of measures live here (basin shape is in ``landscape.shape``):

* Keskar et al.'s epsilon-sharpness: the largest loss increase inside the box
  ``|z_i| <= eps (|x_i| + 1)`` around the weights ``x`` (or inside the same box taken on the
  coordinates ``A^+ x`` of a random subspace), found approximately with scipy's L-BFGS-B and
  reported as ``100 (max f - f(x)) / (1 + f(x))``.
* Adaptive (scale-invariant) sharpness: the worst loss increase over perturbations
  ``delta = t * u`` with ``t = |w| + eta`` and ``||u||_p <= rho`` (projected gradient ascent,
  p = 2 or infinity), and its average-case sibling over random ``u``.

``rescale_relu_layers`` and ``reparametrization_report`` let a user check which measures are
fooled by a function-preserving rescaling of two layers across a ReLU (Dinh et al., 2017).

Every loss here is the mean loss over a whole split (full batch, evaluated in chunks and
weighted by chunk size) in eval mode, so BatchNorm uses its running statistics; the model's
weights are never modified (the loss is evaluated with ``torch.func.functional_call``).

Modules: ``objective`` (the loss at any flat weight vector), ``measures`` (the measures),
``summary`` (all of them at once), ``reparam`` (the rescaling check).
"""
from __future__ import annotations

from .measures import (AdaptiveSharpness, AverageSharpness, EpsilonSharpness,
                       adaptive_sharpness, average_sharpness, check_subspace_dim,
                       epsilon_sharpness, keskar_value, random_subspace)
from .objective import DataLike, LossLike
from .reparam import (MeasureChange, ReparametrizationReport, loss_along_direction,
                      relu_layer_pairs, reparametrization_report, rescale_relu_layers)
from .summary import DEFAULT_EPS, SharpnessSummary, measure_sharpness

__all__ = [
    # Keskar et al. epsilon-sharpness
    "epsilon_sharpness", "EpsilonSharpness", "random_subspace", "check_subspace_dim",
    "keskar_value",
    # adaptive sharpness
    "adaptive_sharpness", "AdaptiveSharpness", "average_sharpness", "AverageSharpness",
    # all measures at once
    "measure_sharpness", "SharpnessSummary", "DEFAULT_EPS",
    # reparametrization (Dinh et al. 2017)
    "reparametrization_report", "ReparametrizationReport", "MeasureChange",
    "rescale_relu_layers", "relu_layer_pairs", "loss_along_direction",
    # input types
    "DataLike", "LossLike",
]
