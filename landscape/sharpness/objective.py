"""The mean loss of a model over a whole data split, as a function of a flat weight vector.

``Objective`` evaluates the loss (and its gradient) at any point ``w`` of the flat weight
space without touching the model's own weights (``torch.func.functional_call``): in eval
mode, so BatchNorm uses its running statistics; over the whole split, in chunks weighted by
their size, so the value does not depend on the chunking; in full float32 on CUDA. Every
sharpness measure is built on it.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from ..data import DataBundle, split_of
from ..errors import LandscapeError
from ..losses import loss_function
from ..params import flatten, named_tensors, unflatten
from ..util import float32_mode

LossLike = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DataLike = DataBundle | tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then restore its train/eval flag."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class Objective:
    """Mean loss of ``model`` over ``(x, y)`` at any flat weight vector (weights untouched)."""

    def __init__(self, model: nn.Module, data: DataLike, split: str, loss: LossLike,
                 chunk: int = 8192):
        self.model = model
        self.weights = named_tensors(model, "weights")
        if not self.weights:
            raise LandscapeError("the model has no trainable weights")
        self.buffers = dict(model.named_buffers())
        self.x0 = flatten(self.weights).clone()
        self.device, self.dtype = self.x0.device, self.x0.dtype
        x, y = split_of(data, split)
        self.x, self.y = x.to(self.device), y.to(self.device)
        if len(self.y) == 0:
            raise LandscapeError(f"the {split} split is empty")
        self.loss_fn = loss_function(loss)
        self.chunk = max(1, int(chunk))
        self.evaluations = 0

    def _float32(self):
        """Full float32 on CUDA (no TF32 convolutions or matmuls)."""
        return float32_mode("ieee", enabled=self.device.type == "cuda")

    def _forward(self, w: torch.Tensor) -> Iterator[torch.Tensor]:
        """Each chunk's mean loss weighted by its share of the split (they sum to the mean)."""
        params = unflatten(w, self.weights)
        n = len(self.y)
        for i in range(0, n, self.chunk):
            xb, yb = self.x[i:i + self.chunk], self.y[i:i + self.chunk]
            out = torch.func.functional_call(self.model, (params, self.buffers), (xb,))
            yield self.loss_fn(out, yb) * (len(yb) / n)

    def loss(self, w: torch.Tensor | None = None) -> float:
        """Mean loss at ``w`` (default: the model's own weights)."""
        w = self.x0 if w is None else w
        self.evaluations += 1
        with torch.no_grad(), eval_mode(self.model), self._float32():
            return sum(float(part) for part in self._forward(w))

    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient with respect to the flat weights at ``w``."""
        self.evaluations += 1
        w = w.detach().clone().requires_grad_(True)
        total = 0.0
        with torch.enable_grad(), eval_mode(self.model), self._float32():
            for part in self._forward(w):
                part.backward()
                total += float(part.detach())
        return total, w.grad.detach()
