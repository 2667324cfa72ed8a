"""How Hessian-vector products are made: the operator's defaults and ``HessianOptions``.

Contract: plain settings only (constants, the ``LossArg`` type, the one frozen options object
every solver takes, and the check of a named choice); nothing here computes a product.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import torch


if TYPE_CHECKING:
    from .hessian import HessianOperator

DEFAULT_CHUNK = 1024
"""Examples per forward pass in a product (bounds memory; the result does not depend on it)."""

GRAPH_CACHE_BYTES = 1 << 30
"""Keep the gradient's autograd graphs between double-backward products while keeping them adds
at most this many bytes over recomputing them (every chunk's graph but one, estimated from the
tensors they save); each product is then one backward pass."""

HVP_METHODS = ("double", "forward")
CURVATURES = ("hessian", "ggn", "fisher", "empirical-fisher")
MODES = ("eval", "train")

LossArg = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class HessianOptions:
    """How the solvers make their Hessian-vector products from a model (the operator's
    settings, one object for every solver; unused when a solver is given an operator).

    Attributes:
        loss, chunk, mode, device, hvp, dtype, split: as for ``HessianOperator``.
        check: run the two-pass determinism check first (two gradient passes).
        progress: show a progress bar of products.
        factory: makes the operator in place of ``HessianOperator`` (same arguments), e.g.
            ``DistributedHessian`` under torchrun.
        curvature: which matrix: ``hessian`` (default), ``ggn``, ``fisher`` or
            ``empirical-fisher`` (``curvature.ggn.OutputCurvatureOperator``).
        fisher_samples: ``fisher`` only: labels drawn per example (0: the exact Fisher).
        fisher_seed: seed of those labels.
    """

    loss: LossArg = "cross_entropy"
    chunk: int | None = DEFAULT_CHUNK
    mode: str = "eval"
    device: Any = None
    hvp: str = "double"
    dtype: torch.dtype | None = None
    split: str = "train"
    check: bool = True
    progress: bool = False
    factory: Callable[..., HessianOperator] | None = None
    curvature: str = "hessian"
    fisher_samples: int = 0
    fisher_seed: int = 0
