"""Models whose losses are known in closed form, shared by the evaluation and surface tests."""
from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """Outputs 0.5 theta^T A theta for every example (theta a 3 x 4 matrix, flattened)."""

    def __init__(self, a: torch.Tensor, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())
        self.register_buffer("a", a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.theta.reshape(-1)
        return (0.5 * t @ self.a @ t).expand(x.shape[0], 1)


class LogOfFirst(nn.Module):
    """Outputs log(w[0, 0]) everywhere: NaN for negative w, -inf at zero."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, 2, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.w[0, 0]).expand(x.shape[0], 1)


def mean_output(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 'loss' of the closed-form models: the mean of the outputs."""
    return out.mean()
