"""The full Hessian as a dense matrix: the exact reference for tiny models and tests.

Contract: ``dense_hessian`` returns the symmetric ``n_params x n_params`` Hessian of the same
mean loss ``HessianOperator`` applies (same parameters, order, chunking and mode), by
torch.func, or by one double-backward product per column where BatchNorm uses batch statistics.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .hessian import HessianOperator
from .options import DEFAULT_CHUNK, LossArg


def dense_hessian(model: nn.Module, data: Any, loss: LossArg = "cross_entropy",
                  chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                  device: str | torch.device | None = None, split: str = "train",
                  columns: int | None = None) -> torch.Tensor:
    """The full Hessian (n_params x n_params) by torch.func, for tiny models and references.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its ``split``).
        loss, chunk, mode, device, split: as for ``HessianOperator``.
        columns: Hessian columns per vectorized pass (bounds memory; default all at once).

    Returns:
        The symmetric Hessian as a tensor in the products' dtype on the products' device
        (by double backward, column by column, where BatchNorm uses batch statistics).
    """
    op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device, split=split)
    if op.batch_statistics:  # torch.func is unreliable there: n double backwards
        eye = torch.eye(op.n_params, device=op.device, dtype=op.torch_dtype)
        total = torch.stack([op.hvp(e) for e in eye], dim=1)
        return 0.5 * (total + total.T)
    names = list(op.params)
    shapes = [op.params[n].shape for n in names]
    sizes = [op.params[n].numel() for n in names]
    flat0 = torch.cat([op.params[n].reshape(-1) for n in names])

    def unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}

    eye = torch.eye(op.n_params, device=op.device, dtype=op.torch_dtype)
    total = torch.zeros_like(eye)
    for chunk_loss in op.chunk_losses():
        grad = torch.func.grad(lambda flat: chunk_loss(unflat(flat)))
        # jacfwd(jacrev(f)) as in torch.func.hessian, with the columns vectorized in chunks
        column = lambda t: torch.func.jvp(grad, (flat0,), (t,))[1]  # noqa: E731
        try:
            total += torch.func.vmap(column, chunk_size=columns)(eye)
        except RuntimeError:  # a layer or loss without forward-mode support: reverse twice
            total += torch.func.jacrev(grad, chunk_size=columns)(flat0)
    return 0.5 * (total + total.T)
