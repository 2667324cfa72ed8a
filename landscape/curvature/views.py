"""Views of curvature beside the full-data spectrum: per-batch top eigenvalues and the second
difference of the loss along a direction.

Contract: ``per_batch_top_eigenvalue`` measures how the top eigenvalue varies over mini-batches
(a ``BatchSpread``); ``directional_curvature`` is what a 1-D slice of the loss shows at its
origin, measured without the Hessian. Neither modifies the model.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import split_of
from ..errors import LandscapeError
from .eigen import top_eigenpair
from .hessian import HessianOperator
from .options import DEFAULT_CHUNK, LossArg


@dataclasses.dataclass(frozen=True)
class BatchSpread:
    """The top Hessian eigenvalue of the mean loss over several mini-batches.

    Attributes:
        batch_size: examples per batch.
        values: the top eigenvalue of each batch.
        mean, std: their mean and standard deviation (ddof 1; NaN for one batch).
        full: the full-data top eigenvalue (None if not asked for).
        disjoint: True if the batches share no example.
        n_products: Hessian-vector products used, all batches (and the full data) together.
        seconds: wall time.
    """

    batch_size: int
    values: np.ndarray
    mean: float
    std: float
    full: float | None
    disjoint: bool
    n_products: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"batch_size": self.batch_size, "values": self.values.tolist(),
                "mean": self.mean, "std": None if math.isnan(self.std) else self.std,
                "min": float(self.values.min()), "max": float(self.values.max()),
                "full": self.full, "disjoint": self.disjoint, "n_products": self.n_products,
                "seconds": self.seconds}


def per_batch_top_eigenvalue(model: nn.Module, data: Any, n_batches: int, batch_size: int, *,
                             seed: int = 0, tol: float = 1e-3, full: bool = True,
                             max_products: int = 200, loss: LossArg = "cross_entropy",
                             chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                             device: str | torch.device | None = None) -> BatchSpread:
    """How much the top eigenvalue varies from one mini-batch to the next.

    Batches are drawn from a permutation seeded by ``seed``: disjoint slices of it when
    ``n_batches * batch_size`` examples exist, else each batch its own draw without
    replacement. Each batch's top eigenvalue is a fresh Lanczos run (``top_eigenpair``).

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        n_batches: how many batches (at least 1).
        batch_size: examples per batch (at most the data's size).
        seed: seed of the batches and start vectors.
        tol: Lanczos residual relative to the value.
        full: also the top eigenvalue of the whole data.
        max_products: most products per eigenvalue.
        loss, chunk, mode, device: as for ``HessianOperator``.

    Returns:
        BatchSpread.
    """
    x, y = split_of(data)
    n = len(y)
    if n_batches < 1:
        raise LandscapeError(f"n_batches must be at least 1, got {n_batches}")
    if not 1 <= batch_size <= n:
        raise LandscapeError(f"batch size must be between 1 and the {n} examples, "
                             f"got {batch_size}")
    begin = time.perf_counter()
    rng = np.random.default_rng(seed)
    disjoint = n_batches * batch_size <= n
    order = rng.permutation(n)
    common = dict(tol=tol, max_products=max_products, loss=loss, chunk=chunk,
                  mode=mode, device=device)
    values, products = [], 0
    for b in range(n_batches):
        idx = (order[b * batch_size:(b + 1) * batch_size] if disjoint
               else rng.choice(n, size=batch_size, replace=False))
        idx = torch.from_numpy(np.sort(idx))
        pair = top_eigenpair(model, (x[idx], y[idx]), seed=seed + b, **common)
        values.append(pair.value)
        products += pair.n_products
    whole = None
    if full:
        pair = top_eigenpair(model, (x, y), seed=seed, **common)
        whole, products = pair.value, products + pair.n_products
    arr = np.array(values)
    return BatchSpread(batch_size=batch_size, values=arr, mean=float(arr.mean()),
                       std=float(arr.std(ddof=1)) if len(arr) > 1 else float("nan"),
                       full=whole, disjoint=disjoint, n_products=products,
                       seconds=time.perf_counter() - begin)


def directional_curvature(model: nn.Module, data: Any, direction: torch.Tensor, *,
                          step: float = 1e-6, loss: LossArg = "cross_entropy",
                          chunk: int | None = DEFAULT_CHUNK,
                          dtype: torch.dtype | None = torch.float64,
                          device: str | torch.device | None = None) -> float:
    """Second difference of the mean loss along a flat direction, at the model:
    ``(f(theta + h d) - 2 f(theta) + f(theta - h d)) / h^2`` (eval mode).

    For a unit eigenvector it tends to the eigenvalue as ``h`` shrinks (error of order
    ``h^2``); it is what a 1-D slice of the loss shows at its origin, measured without the
    Hessian. Runs in ``dtype`` (float64 by default, so rounding stays far below the
    ``h^2`` term). Keep ``h`` small: the loss of a ReLU network is only piecewise smooth, and
    a step that moves pre-activations across zero adds their slope changes, which the
    Hessian leaves out. On the demo's two CNNs (4,000 examples) the second difference along
    the top eigenvector was 1.6% and 4.0% above the eigenvalue at h = 1e-4, 0.03% and 0.00%
    off at 1e-5, 0.00% at 1e-6; on a tiny MLP h = 1e-3 put one slice 2.3x off.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        direction: flat tensor, one entry per trainable parameter (not normalized here).
        step: the step ``h``.
        loss, chunk, device: as for ``HessianOperator``.
        dtype: dtype of the loss evaluations (None: the model's).

    Returns:
        The second difference.
    """
    if not step > 0:
        raise LandscapeError(f"step must be positive, got {step}")
    op = HessianOperator(model, data, loss, chunk=chunk, device=device, dtype=dtype)
    d = op.unflatten(direction.to(op.device, op.torch_dtype).reshape(-1))

    def at(h: float) -> float:
        return op.loss_at({n: t + h * d[n] for n, t in op.params.items()})

    return (at(step) - 2.0 * at(0.0) + at(-step)) / step ** 2
