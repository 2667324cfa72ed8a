"""Flat-minimum optimizers: sharpness-aware minimization (SAM, ASAM) and weight averaging (SWA).

Contract:

* ``SAM`` wraps any ``torch.optim.Optimizer`` (the *base*). Its ``step(closure)`` expects the
  gradients at the weights ``theta`` already in ``.grad``; it moves to the ascent point
  ``theta + e``, calls ``closure`` there (which must recompute the loss and call
  ``backward``), puts the weights back to ``theta`` and lets the base step with the gradient
  taken at ``theta + e``. SAM (Foret et al. 2021): ``e = rho g / ||g||``. ASAM (Kwon et al.
  2021): ``e = rho T^2 g / ||T g||`` with ``T = |theta| + eta`` elementwise, on every
  parameter. Its ``param_groups``, ``state_dict`` and ``load_state_dict`` are the base's, so
  learning-rate schedules and resume states work as for the base alone.
* ``take_step`` is the one step of the training loop for either kind: SAM-type optimizers
  get the closure, with BatchNorm running statistics frozen during the second pass (they
  are updated once per step, at ``theta``, as without SAM); others step on ``.grad``.
* ``WeightAverage`` (SWA, Izmailov et al. 2018) averages the weights at the end of every
  epoch from ``start`` on through ``torch.optim.swa_utils.AveragedModel`` (equal weights),
  and at the end loads the average into the model and recomputes BatchNorm statistics on
  the training data (``update_bn``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from .errors import LandscapeError

SAM_KINDS = ("sam", "asam")
DEFAULT_RHO = {"sam": 0.05, "asam": 0.5}
"""The usual radii: 0.05 for SAM (CIFAR), 0.5 for ASAM on an SGD base (Kwon et al.)."""


class SAM:
    """Sharpness-aware minimization around a base optimizer.

    Args:
        base: the optimizer that takes the step (built over the model's parameters).
        rho: radius of the ascent (> 0).
        adaptive: ASAM's scaled ascent ``e = rho T^2 g / ||T g||``, ``T = |theta| + eta``.
        eta: the constant added to ``|theta|`` (ASAM only).
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float, *, adaptive: bool = False,
                 eta: float = 0.01):
        if not rho > 0:
            raise LandscapeError(f"the SAM radius rho must be > 0, got {rho}")
        self.base, self.rho, self.adaptive, self.eta = base, float(rho), adaptive, float(eta)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The base optimizer's parameter groups (learning rates are set there)."""
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients (the base's ``zero_grad``)."""
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (SAM itself keeps none between steps)."""
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the base optimizer's state."""
        self.base.load_state_dict(state)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def ascent(self) -> list[torch.Tensor]:
        """Move every parameter to ``theta + e`` (gradients at ``theta`` in ``.grad``);
        returns the offsets ``e`` in the order of ``_params``."""
        params = self._params()
        scales = [p.abs() + self.eta if self.adaptive else None for p in params]
        scaled = [p.grad if t is None else t * p.grad for p, t in zip(params, scales)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s)
                                                     for s in scaled]))
        factor = self.rho / (norm + 1e-12)
        offsets = [(s if t is None else t * s) * factor for s, t in zip(scaled, scales)]
        for p, e in zip(params, offsets):
            p.add_(e)
        return offsets

    def step(self, closure: Callable[[], Any]) -> None:
        """One SAM step: ascend, ``closure()`` (loss and backward at the ascent point), come
        back to ``theta``, base step with that gradient."""
        params = self._params()
        offsets = self.ascent()
        self.base.zero_grad(set_to_none=True)
        with torch.enable_grad():
            closure()
        with torch.no_grad():
            for p, e in zip(params, offsets):
                p.sub_(e)
        self.base.step()


@contextlib.contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep their running statistics inside the block (momentum 0)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()
              if m.num_batches_tracked is not None else None) for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(layers, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def take_step(optimizer, closure: Callable[[], Any], model: nn.Module) -> None:
    """The optimizer step of a training loop whose gradients at the weights are in ``.grad``.

    Args:
        optimizer: a ``torch.optim.Optimizer`` or a ``SAM``.
        closure: recomputes the training loss of the same batch and calls ``backward`` (SAM
            only: evaluated at the ascent point, BatchNorm statistics frozen).
        model: the network (its BatchNorm layers are frozen during the closure).
    """
    if isinstance(optimizer, SAM):
        with frozen_batchnorm(model):
            optimizer.step(closure)
    else:
        optimizer.step()


class WeightAverage:
    """Stochastic weight averaging of the iterates at the ends of epochs ``start, start+1, ...``.

    Args:
        model: the network being trained.
        start: the first epoch whose final weights enter the average (>= 1).
    """

    def __init__(self, model: nn.Module, start: int):
        self.start = int(start)
        self.averaged = AveragedModel(model, use_buffers=False)

    def due(self, epoch: int) -> bool:
        """Whether the weights at the end of ``epoch`` enter the average."""
        return epoch >= self.start

    def update(self, model: nn.Module) -> None:
        """Add the model's current weights to the average."""
        self.averaged.update_parameters(model)

    @property
    def count(self) -> int:
        """How many iterates the average holds."""
        return int(self.averaged.n_averaged)

    def state_dict(self) -> dict[str, Any]:
        """The average and its count (for a resume state)."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the average from ``state_dict``."""
        self.averaged.load_state_dict(state)

    @torch.no_grad()
    def finish(self, model: nn.Module, inputs: torch.Tensor, batch: int) -> None:
        """Load the average into ``model`` and recompute its BatchNorm statistics over
        ``inputs`` in batches of ``batch`` (nothing to do when no iterate was averaged)."""
        if self.count == 0:
            raise LandscapeError(f"weight averaging started at epoch {self.start}, after the "
                                 "last epoch: nothing was averaged")
        for mine, avg in zip(model.parameters(), self.averaged.module.parameters()):
            mine.copy_(avg)
        update_bn((inputs[i:i + batch] for i in range(0, len(inputs), batch)), model)
