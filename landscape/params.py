"""Parameters as named tensors and flat vectors.

``kind="weights"``: trainable parameters. ``kind="states"``: every floating-point entry of
the state dict (parameters plus BatchNorm running mean/var); integer counters are left out.
"""
from __future__ import annotations

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
