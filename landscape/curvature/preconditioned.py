"""Preconditioned sharpness of adaptive optimizers: the top eigenvalue of ``P^-1 H``.

Contract: RMSprop and Adam (AdamW) move along ``P^-1`` times a gradient (momentum) with a
diagonal preconditioner ``P`` they build from squared gradients, so their stability is set by
the eigenvalues of ``P^-1 H``, not of ``H`` (Cohen et al. 2022, "Adaptive gradient methods at
the edge of stability"). ``optimizer_preconditioner`` reads ``P`` from a PyTorch optimizer's own
state, flat in the order of ``params.named_tensors(model, "weights")``;
``PreconditionedOperator`` applies the symmetric ``P^-1/2 H P^-1/2`` (same eigenvalues as
``P^-1 H``) on the shared operator base, so every solver of the package runs on it;
``preconditioned_threshold`` is the value above which the preconditioned iteration diverges on
a quadratic: ``2 (1 + beta) / lr`` for RMSprop with heavy-ball momentum ``beta`` (``2 / lr``
without), ``(2 + 2 beta1) / ((1 - beta1) lr)`` for Adam (38 / lr at ``beta1 = 0.9``).

``H`` is the Hessian of the loss alone: an L2 weight decay's ``wd I`` is not added.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LandscapeError
from ..params import named_tensors
from .base import CurvatureOperator
from .eigen import TopEigenpair, operator_top_eigenpair
from .hessian import HessianOperator
from .options import DEFAULT_CHUNK, LossArg

ADAPTIVE = ("rmsprop", "adam", "adamw")
"""Optimizers (``TrainConfig.optimizer`` names) with a diagonal preconditioner."""


@dataclasses.dataclass(frozen=True)
class Preconditioner:
    """An adaptive optimizer's diagonal preconditioner at one step.

    Attributes:
        diagonal: ``P`` as a flat float64 vector (positive), in the weights' order.
        optimizer: ``rmsprop`` or ``adam`` (AdamW uses Adam's preconditioner).
        lr: the learning rate of the optimizer's (first) parameter group.
        beta: the momentum (RMSprop) or ``beta1`` (Adam).
        threshold: ``preconditioned_threshold(optimizer, lr, beta)``.
        step: the optimizer's step count.
    """

    diagonal: np.ndarray
    optimizer: str
    lr: float
    beta: float
    threshold: float
    step: int


def preconditioned_threshold(optimizer: str, lr: float, beta: float = 0.0) -> float:
    """The top eigenvalue of ``P^-1 H`` above which the optimizer diverges on a quadratic.

    Args:
        optimizer: ``rmsprop``, ``adam`` or ``adamw``.
        lr: learning rate.
        beta: RMSprop's momentum, or Adam's ``beta1``.

    Returns:
        ``2 (1 + beta) / lr`` (RMSprop), ``(2 + 2 beta) / ((1 - beta) lr)`` (Adam, AdamW).
    """
    if optimizer not in ADAPTIVE:
        raise LandscapeError(f"no preconditioned threshold for {optimizer!r}: use one of "
                             f"{', '.join(ADAPTIVE)}")
    if optimizer == "rmsprop":
        return 2 * (1 + beta) / lr
    return (2 + 2 * beta) / ((1 - beta) * lr)


def _kind(optimizer: torch.optim.Optimizer) -> str:
    if isinstance(optimizer, torch.optim.RMSprop):
        return "rmsprop"
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return "adam"
    raise LandscapeError(f"{type(optimizer).__name__} has no diagonal preconditioner "
                         "(RMSprop, Adam and AdamW have)")


def _diagonal(kind: str, state: dict[str, Any], group: dict[str, Any]) -> torch.Tensor:
    """``P`` of one parameter from its optimizer state, as the optimizer's update divides by."""
    step = float(state["step"])
    if kind == "rmsprop":
        avg = state["square_avg"]
        if group.get("centered"):
            avg = avg - state["grad_avg"] ** 2
        return avg.sqrt() + group["eps"]
    beta1, beta2 = group["betas"]
    second = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    denom = (second / (1 - beta2 ** step)).sqrt() + group["eps"]
    return (1 - beta1 ** step) * denom


def optimizer_preconditioner(model: nn.Module, optimizer: torch.optim.Optimizer
                             ) -> Preconditioner:
    """The diagonal preconditioner an RMSprop, Adam or AdamW optimizer applies now.

    Args:
        model: the network the optimizer updates (its trainable weights, in order).
        optimizer: the optimizer, after at least one step.

    Raises:
        LandscapeError: another optimizer, or a weight it has not stepped yet.

    Returns:
        Preconditioner.
    """
    kind = _kind(optimizer)
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts, steps = [], []
    for name, p in named_tensors(model, "weights").items():
        state = optimizer.state.get(p)
        if id(p) not in groups or not state or "step" not in state:
            raise LandscapeError(f"the optimizer holds no state for {name!r}: the "
                                 "preconditioner exists after its first step")
        parts.append(_diagonal(kind, state, groups[id(p)]).detach().double().reshape(-1).cpu())
        steps.append(int(float(state["step"])))
    group = optimizer.param_groups[0]
    beta = group["momentum"] if kind == "rmsprop" else group["betas"][0]
    lr = float(group["lr"])
    return Preconditioner(diagonal=torch.cat(parts).numpy(), optimizer=kind, lr=lr,
                          beta=float(beta), threshold=preconditioned_threshold(kind, lr, beta),
                          step=max(steps))


class PreconditionedOperator(CurvatureOperator):
    """``P^-1/2 A P^-1/2`` for a symmetric operator ``A`` and a positive diagonal ``P``: the
    symmetric form of ``P^-1 A`` (same eigenvalues; an eigenvector ``u`` of this operator
    gives ``P^-1/2 u`` of ``P^-1 A``).

    Args:
        inner: the operator (e.g. a ``HessianOperator``); its products are counted here too.
        diagonal: ``P``, flat, positive, of ``inner``'s dimension.
        record: as for ``CurvatureOperator``.
    """

    def __init__(self, inner: CurvatureOperator, diagonal: np.ndarray, *, record: bool = False):
        diagonal = np.asarray(diagonal, dtype=np.float64).reshape(-1)
        if diagonal.size != inner.n_params:
            raise LandscapeError(f"the preconditioner has {diagonal.size} entries, the "
                                 f"operator {inner.n_params}")
        if not (np.all(np.isfinite(diagonal)) and np.all(diagonal > 0)):
            raise LandscapeError("the preconditioner's diagonal must be finite and positive")
        self.inner = inner
        self.scale = 1.0 / np.sqrt(diagonal)
        self.mode = getattr(inner, "mode", "given operator")
        self.hvp_description = (f"P^-1/2 ({getattr(inner, 'hvp_description', 'operator')}) "
                                "P^-1/2")
        super().__init__(inner.n_params, record=record)

    def _product(self, x: np.ndarray) -> np.ndarray:
        out = self.scale * self.inner.matvec(self.scale * x)
        self._tally()
        return out


def preconditioned_sharpness(model: nn.Module, data: Any, optimizer: torch.optim.Optimizer,
                             start: np.ndarray | None = None, *, tol: float = 1e-3,
                             max_products: int = 100, min_products: int = 1, seed: int = 0,
                             loss: LossArg = "cross_entropy", chunk: int | None = DEFAULT_CHUNK,
                             mode: str = "eval") -> tuple[TopEigenpair, Preconditioner]:
    """The top eigenvalue of ``P^-1 H`` with the optimizer's own preconditioner ``P``.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        optimizer: the RMSprop, Adam or AdamW optimizer training ``model``.
        start: warm start (a previous result's ``vector``), as for ``top_eigenpair``.
        tol, max_products, min_products, seed: as for ``top_eigenpair``.
        loss, chunk, mode: as for ``HessianOperator``.

    Returns:
        ``(pair, preconditioner)``: ``pair.value`` is the preconditioned sharpness (its
        ``vector`` the symmetric form's, for the next warm start); compare it with
        ``preconditioner.threshold``.
    """
    pre = optimizer_preconditioner(model, optimizer)
    hess = HessianOperator(model, data, loss, chunk=chunk, mode=mode)
    op = PreconditionedOperator(hess, pre.diagonal)
    pair = operator_top_eigenpair(op, start, tol=tol, max_products=max_products,
                                  min_products=min_products, seed=seed)
    return pair, pre
