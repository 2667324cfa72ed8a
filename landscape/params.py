"""Parameters as named tensors and flat vectors.

``kind="weights"``: trainable parameters. ``kind="states"``: every floating-point entry of
the state dict (parameters plus BatchNorm running mean/var); integer counters are left out.
``parameter_norms`` gives the total and per-layer norms that scale-dependent measures
(``SCALE_DEPENDENT``) must be read against; ``norm_outliers`` flags models 10x off the others;
``gradient_norms`` gives the full-batch gradient's norms (how far a model is from a stationary point).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Iterable

import torch
from torch import nn

from .errors import LandscapeError

_BN = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def named_tensors(model: nn.Module, kind: str = "weights") -> dict[str, torch.Tensor]:
    """Name -> tensor (live, not copies) for ``kind`` ``weights`` or ``states``."""
    if kind == "weights":
        return {n: p for n, p in model.named_parameters() if p.requires_grad}
    if kind == "states":
        return {n: t for n, t in model.state_dict(keep_vars=True).items()
                if torch.is_floating_point(t)}
    raise LandscapeError(f"unknown kind {kind!r}: use 'weights' or 'states'")


def norm_layer_names(model: nn.Module) -> set[str]:
    """Names of entries that belong to normalization layers (BatchNorm, GroupNorm, LayerNorm)."""
    names = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, _BN):
            prefix = f"{mod_name}." if mod_name else ""
            names.update(prefix + n for n, _ in mod.named_parameters(recurse=False))
            names.update(prefix + n for n, _ in mod.named_buffers(recurse=False))
    return names


def is_bias_or_norm(name: str, tensor: torch.Tensor, norm_names: set[str]) -> bool:
    """True for biases, normalization-layer entries, and any other 1-D (or 0-D) entry."""
    return name in norm_names or tensor.ndim <= 1


def flatten(tensors: dict[str, torch.Tensor] | Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors (dict values in insertion order) into one 1-D tensor."""
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.detach().reshape(-1) for t in values])


def unflatten(vector: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (same names and order)."""
    total = sum(t.numel() for t in like.values())
    if vector.numel() != total:
        raise LandscapeError(f"vector has {vector.numel()} entries, model has {total}")
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start:start + t.numel()].view_as(t)
        start += t.numel()
    return out


def clone_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies."""
    return {n: t.detach().clone() for n, t in tensors.items()}


@torch.no_grad()
def assign(model: nn.Module, values: dict[str, torch.Tensor], kind: str = "weights") -> None:
    """Copy ``values`` into the model's entries in place (names must match)."""
    live = named_tensors(model, kind)
    missing = set(values) - set(live)
    if missing:
        raise LandscapeError(f"model has no entries named {sorted(missing)[:3]}")
    for name, value in values.items():
        live[name].copy_(value)


@torch.no_grad()
def set_offset(model: nn.Module, base: dict[str, torch.Tensor],
               directions: list[dict[str, torch.Tensor]], coords: Iterable[float]) -> None:
    """Set the model's entries to ``base + sum_k coords[k] * directions[k]`` in place.

    ``base`` and directions are keyed by entry name (weights or states); entries a direction
    lacks are treated as zero in that direction.
    """
    live = dict(model.state_dict(keep_vars=True))
    coords = list(coords)
    for name, b in base.items():
        target = live[name]
        target.copy_(b)
        for c, d in zip(coords, directions):
            if c != 0.0 and name in d:
                target.add_(d[name], alpha=float(c))


SCALE_DEPENDENT = ("top Hessian eigenvalue", "Hessian trace", "spectral density",
                   "basin width along unit directions", "eigenvector slices",
                   "adaptive sharpness at a fixed radius")
"""Measures that change under a function-preserving rescaling of ReLU layers (Dinh et al.
2017, "Sharp minima can generalize for deep nets"): compare them across models only when the
models' parameter norms are alike. Filter-normalized random slices are scale-invariant."""


@dataclasses.dataclass(frozen=True)
class ParameterNorms:
    """Euclidean norms of a model's trainable weights.

    Attributes:
        total: the norm of all weights together.
        layers: per layer (module name; its weight and bias together), in the model's order.
        largest: the layer with the largest norm.
    """

    total: float
    layers: dict[str, float]
    largest: str

    def to_dict(self) -> dict:
        """Plain JSON-ready form."""
        return {"total": self.total, "layers": dict(self.layers), "largest": self.largest}


def parameter_norms(model: nn.Module) -> ParameterNorms:
    """The total and per-layer norms of ``model``'s trainable weights (a layer is the module
    owning an entry: ``body.0.weight`` and ``body.0.bias`` make layer ``body.0``)."""
    squares: dict[str, float] = {}
    for name, tensor in named_tensors(model, "weights").items():
        layer = name.rpartition(".")[0] or name
        value = float(tensor.detach().double().pow(2).sum())
        squares[layer] = squares.get(layer, 0.0) + value
    if not squares:
        raise LandscapeError("the model has no trainable parameters")
    layers = {k: math.sqrt(v) for k, v in squares.items()}
    return ParameterNorms(total=math.sqrt(sum(squares.values())), layers=layers,
                          largest=max(layers, key=layers.get))


def norm_outliers(norms: dict[str, float], factor: float = 10.0) -> list[str]:
    """Names whose norm differs from the median of all by more than ``factor`` either way:
    their scale-dependent measures are not comparable with the others'."""
    values = [v for v in norms.values() if math.isfinite(v) and v > 0]
    if len(values) < 2:
        return []
    median = statistics.median(values)
    return [k for k, v in norms.items()
            if not (math.isfinite(v) and median / factor <= v <= median * factor)]



@dataclasses.dataclass(frozen=True)
class GradientNorms:
    """Norms of a full-batch gradient ``g`` at weights ``theta``.

    Attributes:
        total: ``||g||_2``: scale-dependent (a layer scaled by ``a`` has its gradient scaled
            by ``1/a``).
        relative: ``||g * theta||_2`` (elementwise): the loss's first-order change per
            relative change of each weight; unchanged by the rescalings of ReLU networks
            that keep the function (Dinh et al. 2017), so comparable between models of
            different norms.
    """

    total: float
    relative: float


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn,
                   chunk: int = 8192) -> GradientNorms:
    """Norms of the full-batch gradient of the mean loss over ``(x, y)``, in eval mode (as
    the surfaces and curvature see the model), summed over chunks exactly.

    Args:
        model: the network (its weights are not changed; no ``.grad`` is written).
        x, y: the inputs and targets.
        loss_fn: ``loss_fn(outputs, targets)``, a mean over the examples.
        chunk: examples per forward pass.

    Returns:
        GradientNorms.
    """
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    try:
        for i in range(0, len(y), chunk):
            part = y[i:i + chunk]
            loss = loss_fn(model(x[i:i + chunk]), part) * (len(part) / len(y))
            for t, g in zip(total, torch.autograd.grad(loss, params)):
                t += g.double()
    finally:
        model.train(was_training)
    return GradientNorms(
        total=math.sqrt(sum(float((t ** 2).sum()) for t in total)),
        relative=math.sqrt(sum(float(((t * p.detach().double()) ** 2).sum())
                               for t, p in zip(total, params))))
