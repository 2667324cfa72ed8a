"""The losses of training, surfaces, Hessians and sharpness: one definition for all."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import LandscapeError

LOSSES = ("cross_entropy", "mse")


def loss_function(loss: str | Callable, num_classes: int | None = None
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean loss of logits against integer targets: ``cross_entropy``, ``mse`` (against one-hot
    targets ``num_classes`` wide; default: as wide as the logits), or a callable, returned as
    it is. The one definition of the losses for training, surfaces, Hessians and sharpness.
    """
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return nn.functional.cross_entropy
    if loss == "mse":
        # written out, not F.mse_loss: torch.func's forward-over-reverse fails inside the
        # fused mse_loss backward (Hessian products)
        def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            width = logits.shape[-1] if num_classes is None else num_classes
            onehot = nn.functional.one_hot(y, width).to(logits.dtype)
            return ((logits - onehot) ** 2).mean()
        return mse
    raise LandscapeError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")
