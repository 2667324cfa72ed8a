"""Sharpness during training: the top eigenvalue of the Hessian (or of the GGN, the exact
Fisher or the empirical Fisher) and, for RMSprop, Adam and AdamW, the preconditioned sharpness
of the Hessian, measured every N epochs with a warm-started Lanczos run; and the thresholds
each optimizer's stability is judged against (``stability_threshold`` for SGD,
``adaptive_threshold`` for the adaptive ones; Cohen et al. 2021 and 2022), which bound the
top eigenvalue of the Hessian and of the GGN only (``threshold_applies``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .curvature import (ADAPTIVE, preconditioned_sharpness, preconditioned_threshold,
                        top_eigenpair)


def stability_threshold(optimizer: str, lr: float, momentum: float = 0.0,
                        nesterov: bool = False) -> float | None:
    """The top Hessian eigenvalue above which gradient descent on a quadratic diverges.

    ``2 / lr`` for plain gradient descent, ``2 (1 + beta) / lr`` with heavy-ball momentum
    ``beta`` (PyTorch's SGD), ``(2 + 2 beta) / ((1 + 2 beta) lr)`` with Nesterov momentum
    (Cohen et al. 2021). None for adaptive optimizers, whose threshold bounds the
    preconditioned sharpness instead (``adaptive_threshold``).
    """
    if optimizer != "sgd":
        return None
    if nesterov and momentum > 0:
        return (2 + 2 * momentum) / ((1 + 2 * momentum) * lr)
    return 2 * (1 + momentum) / lr


def adaptive_threshold(optimizer: str, lr: float, momentum: float = 0.0) -> float | None:
    """The threshold of the preconditioned sharpness of an adaptive optimizer at PyTorch's
    default betas (Cohen et al. 2022): ``2 (1 + momentum) / lr`` for RMSprop, ``38 / lr`` for
    Adam and AdamW (``beta1 = 0.9``); None for other optimizers."""
    if optimizer not in ADAPTIVE:
        return None
    return preconditioned_threshold(optimizer, lr, momentum if optimizer == "rmsprop" else 0.9)


MATRIX_NAMES = {"hessian": "Hessian", "ggn": "GGN", "fisher": "Fisher",
                "empirical-fisher": "empirical Fisher"}
"""How each trackable matrix is named in histories, messages and figures."""


THRESHOLD_CURVATURES = ("hessian", "ggn")
"""Tracked matrices a stability threshold is drawn against: the Hessian, whose top eigenvalue
the threshold bounds, and the GGN, the Hessian without the term that weighs the network's
second derivatives by the loss gradient (near a minimum nearly all of it: the top five agree
within 0.3% on the demo's small-batch minimum). The Fisher and the empirical Fisher are
statistics of the labels and are drawn without one."""


def threshold_applies(curvature: str | None) -> bool:
    """Whether a stability threshold bounds the top eigenvalue of the tracked ``curvature``
    (None: a history from before the choice existed, the Hessian)."""
    return (curvature or "hessian") in THRESHOLD_CURVATURES


def tracked_record(curvature: str) -> dict[str, str]:
    """What ``history.json`` records of the tracked matrix (``tracked``): its key and name."""
    return {"curvature": curvature, "matrix": MATRIX_NAMES[curvature]}


def run_threshold(config: dict[str, Any], entry: dict[str, Any],
                  metric: str = "lambda_max") -> tuple[float | None, str]:
    """The stability threshold a tracked ``metric`` of a run is compared with, and its name.

    Args:
        config: the run's ``config.json`` (optimizer, momentum, nesterov).
        entry: a history entry (its ``lr``, and ``preconditioned_threshold`` if recorded).
        metric: ``lambda_max`` (plain GD threshold: SGD only) or
            ``lambda_max_preconditioned`` (adaptive optimizers' threshold).

    Returns:
        ``(value, name)``; value None where no threshold applies.
    """
    optimizer, momentum = config.get("optimizer", "sgd"), config.get("momentum") or 0.0
    if metric == "lambda_max_preconditioned":
        name = "38/lr" if optimizer in ("adam", "adamw") else \
            ("2(1+β)/lr" if momentum else "2/lr")
        return entry.get("preconditioned_threshold"), name
    limit = stability_threshold(optimizer, entry["lr"], momentum, config.get("nesterov", False))
    if momentum and config.get("nesterov"):
        return limit, "(2+2β)/((1+2β)lr)"
    return limit, "2(1+β)/lr" if momentum else "2/lr"


class SharpnessTracker:
    """The top eigenvalue of the Hessian (or of ``curvature``) of the mean training loss,
    recorded as ``lambda_max`` every ``every`` epochs of a run;
    given an RMSprop, Adam or AdamW optimizer, also the preconditioned sharpness (top
    eigenvalue of ``P^-1 H`` with the optimizer's preconditioner as it is at the measurement)
    and the threshold it is compared with.

    Each measurement is a Lanczos run warm-started from the previous top eigenvector
    (``landscape.hessian.top_eigenpair``), of at least ``min_products`` steps (so that an
    eigenvalue overtaking the previous top one is seen) and stopped at a residual of ``tol``
    times the value: while training changes the model slowly, a handful of products.
    Eval-mode layers.

    Args:
        every: epochs between measurements (the last epoch is always measured).
        data: ``(inputs, targets)`` of the whole training set, on the training device.
        loss: the training loss name.
        tol: Lanczos residual relative to the value.
        max_products: most products per measurement.
        min_products: fewest products per measurement.
        optimizer: an RMSprop, Adam or AdamW optimizer (None: the plain eigenvalue only).
        curvature: the matrix of ``lambda_max``: ``hessian``, ``ggn``, ``fisher`` (exact)
            or ``empirical-fisher``; the preconditioned sharpness is always the Hessian's.
    """

    FIELDS = ("lambda_max", "lambda_max_residual", "lambda_max_products",
              "lambda_max_seconds")
    PRECONDITIONED = ("lambda_max_preconditioned", "lambda_max_preconditioned_residual",
                      "preconditioned_threshold")

    def __init__(self, every: int, data: tuple[torch.Tensor, torch.Tensor],
                 loss: str = "cross_entropy", tol: float = 1e-3, max_products: int = 40,
                 min_products: int = 4, optimizer: torch.optim.Optimizer | None = None,
                 curvature: str = "hessian"):
        self.every, self.data, self.loss, self.curvature = every, data, loss, curvature
        self.tol, self.max_products, self.min_products = tol, max_products, min_products
        self.optimizer = optimizer
        self.vector = None
        self.pre_vector = None

    def due(self, epoch: int, last: bool) -> bool:
        """Whether ``epoch`` is measured."""
        return epoch % self.every == 0 or last

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The history fields for the model as it is now."""
        pair = top_eigenpair(model, self.data, self.vector, tol=self.tol,
                             max_products=self.max_products, min_products=self.min_products,
                             loss=self.loss, curvature=self.curvature)
        self.vector = pair.vector
        fields = dict(zip(self.FIELDS, (pair.value, pair.residual, pair.n_products,
                                        pair.seconds)))
        if self.optimizer is not None:
            pre, precond = preconditioned_sharpness(
                model, self.data, self.optimizer, self.pre_vector, tol=self.tol,
                max_products=self.max_products, min_products=self.min_products,
                loss=self.loss)
            self.pre_vector = pre.vector
            fields.update(zip(self.PRECONDITIONED, (pre.value, pre.residual,
                                                    precond.threshold)))
        return fields

    def blank(self) -> dict[str, float]:
        """The fields of an epoch without a measurement."""
        names = self.FIELDS + (self.PRECONDITIONED if self.optimizer is not None else ())
        return dict.fromkeys(names, float("nan"))
