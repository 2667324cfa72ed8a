"""Reparametrization check (Dinh et al., 2017): which measures a function-preserving
rescaling of two layers across a ReLU fools.

``rescale_relu_layers`` multiplies one layer by ``alpha`` and the next by ``1/alpha``; across
a positively homogeneous activation the network computes the same function.
``reparametrization_report`` rescales a copy of the model and compares the loss, the raw top
Hessian eigenvalue, Keskar's epsilon-sharpness, adaptive sharpness and a filter-normalized
1-D loss curve before and after. The model given is never changed.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data import split_of
from ..directions import random_directions
from ..errors import LandscapeError
from ..curvature import HessianOptions, hessian_eigenvalues
from ..params import flatten
from .measures import adaptive_sharpness, epsilon_sharpness
from .objective import DataLike, LossLike, Objective, eval_mode


_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Modules f with f(a x) = a f(x) for a > 0: a rescaling passes through them unchanged.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Flatten, nn.Identity, nn.Dropout, nn.MaxPool1d,
                nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d)


def relu_layer_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Consecutive (layer, next layer) names in a ``nn.Sequential`` (at any depth) joined only
    by positively homogeneous modules (ReLU, pooling, Flatten, ...), with at least one ReLU:
    the pairs ``rescale_relu_layers`` accepts."""
    pairs = []
    for prefix, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential):
            continue
        children = list(mod.named_children())
        for i, (name_a, a) in enumerate(children):
            if not isinstance(a, _LAYERS):
                continue
            between = []
            for name_b, b in children[i + 1:]:
                if isinstance(b, _LAYERS):
                    if any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in between):
                        full = (lambda n: f"{prefix}.{n}" if prefix else n)
                        pairs.append((full(name_a), full(name_b)))
                    break
                if not isinstance(b, _HOMOGENEOUS):
                    break
                between.append(b)
    return pairs


@torch.no_grad()
def rescale_relu_layers(model: nn.Module, layer_a: str, layer_b: str, alpha: float
                        ) -> nn.Module:
    """Multiply ``layer_a``'s weight and bias by ``alpha`` and ``layer_b``'s weight by
    ``1/alpha`` in place. Across a ReLU (positively homogeneous) the network computes the same
    function, yet raw curvature and plain sharpness change (Dinh et al. 2017).

    Args:
        model: the network (changed in place).
        layer_a, layer_b: module names of two consecutive layers (see ``relu_layer_pairs``).
        alpha: positive scale.

    Returns:
        The same model, for chaining.
    """
    if not (alpha > 0 and math.isfinite(alpha)):
        raise LandscapeError(f"alpha must be a positive number (ReLU is only positively "
                             f"homogeneous), got {alpha}")
    if (layer_a, layer_b) not in relu_layer_pairs(model):
        pairs = ", ".join(f"{a}->{b}" for a, b in relu_layer_pairs(model)) or "none"
        raise LandscapeError(f"{layer_a}->{layer_b} is not a pair of consecutive layers joined "
                             f"by a ReLU (pairs in this model: {pairs})")
    modules = dict(model.named_modules())
    a, b = modules[layer_a], modules[layer_b]
    a.weight.mul_(alpha)
    if a.bias is not None:
        a.bias.mul_(alpha)
    b.weight.div_(alpha)
    return model


def loss_along_direction(model: nn.Module, data: DataLike, direction: dict[str, torch.Tensor],
                         coords: Sequence[float], *, split: str = "train",
                         loss: LossLike = "cross_entropy", chunk: int = 8192) -> np.ndarray:
    """Mean loss at ``w + c d`` for each ``c`` in ``coords`` (weights untouched)."""
    obj = Objective(model, data, split, loss, chunk)
    d = flatten({n: direction[n] for n in obj.weights}).to(obj.device, obj.dtype)
    return np.array([obj.loss(obj.x0 + float(c) * d) for c in coords])


@dataclasses.dataclass(frozen=True)
class MeasureChange:
    """One measure before and after a function-preserving rescaling.

    Attributes:
        name: the measure.
        before, after: its values.
        relative_change: ``|after - before| / max(|before|, tiny)``.
        invariant: True for measures that should not change under the rescaling.
        note: how it was computed.
    """

    name: str
    before: float
    after: float
    relative_change: float
    invariant: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ReparametrizationReport:
    """Which measures a function-preserving rescaling changes.

    Attributes:
        alpha: the scale.
        layer_a, layer_b: the rescaled layers.
        output_max_abs_diff: largest change of any model output on the split (the function is
            unchanged, so this is rounding error).
        measures: one MeasureChange per measure.
    """

    alpha: float
    layer_a: str
    layer_b: str
    output_max_abs_diff: float
    measures: tuple[MeasureChange, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        out = dataclasses.asdict(self)
        out["measures"] = [m.to_dict() for m in self.measures]
        return out

    def measure(self, name: str) -> MeasureChange:
        """The entry called ``name``."""
        for m in self.measures:
            if m.name == name:
                return m
        raise LandscapeError(f"no measure {name!r} in this report")


def _change(name: str, before: float, after: float, invariant: bool, note: str = ""
            ) -> MeasureChange:
    rel = abs(after - before) / max(abs(before), 1e-300)
    return MeasureChange(name, float(before), float(after), rel, invariant, note)


def _top_eigenvalue(model: nn.Module, data: DataLike, split: str, loss: LossLike
                    ) -> tuple[float, str]:

    result = hessian_eigenvalues(model, data, k=1, options=HessianOptions(loss=loss, split=split))
    return float(result.values[-1]), "hessian_eigenvalues(k=1), Lanczos"


@torch.no_grad()
def _output_change(one: nn.Module, other: nn.Module, data: DataLike, split: str,
                   chunk: int) -> float:
    """Largest absolute difference of the two models' outputs over the split (eval mode)."""
    x, _ = split_of(data, split)
    dev = next(one.parameters()).device
    worst = 0.0
    with eval_mode(one), eval_mode(other):
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk].to(dev)
            worst = max(worst, float((one(xb) - other(xb)).abs().max()))
    return worst


def reparametrization_report(model: nn.Module, data: DataLike, alpha: float = 10.0, *,
                             layers: tuple[str, str] | None = None, eps: float = 1e-3,
                             rho: float = 0.05, eta: float = 0.01, steps: int = 10,
                             coords: Sequence[float] = tuple(np.linspace(-1, 1, 11)),
                             hessian: bool = True, split: str = "train",
                             loss: LossLike = "cross_entropy", seed: int = 0,
                             maxiter: int = 10, chunk: int = 8192) -> ReparametrizationReport:
    """Rescale two layers across a ReLU by ``alpha`` and ``1/alpha`` (a copy of the model) and
    compare measures before and after.

    Expected to change: the raw top Hessian eigenvalue (with ``hessian=True``) and Keskar's
    epsilon-sharpness. Expected to stay (up to rounding, and
    up to the ``eta`` offset for adaptive sharpness): the loss, the 1-D loss curve along a
    filter-normalized random direction (``directions.random_directions``, same seed), and
    worst-case adaptive sharpness with ``eta`` and with ``eta = 0``.

    Args:
        model: the network (not changed; a deep copy is rescaled).
        data: a DataBundle or an ``(inputs, targets)`` pair.
        alpha: positive scale.
        layers: the pair to rescale (default: the first of ``relu_layer_pairs``).
        eps: Keskar box size.
        rho, eta, steps: adaptive sharpness settings (l2 ball).
        coords: points of the filter-normalized 1-D curve.
        hessian: include the raw top eigenvalue.
        split, loss, seed, maxiter, chunk: as in ``epsilon_sharpness``.

    Returns:
        ReparametrizationReport.
    """
    if layers is None:
        pairs = relu_layer_pairs(model)
        if not pairs:
            raise LandscapeError("the model has no pair of layers joined by a ReLU to rescale")
        layers = pairs[0]
    scaled = rescale_relu_layers(copy.deepcopy(model), layers[0], layers[1], alpha)
    pair = (model, scaled)
    common = dict(split=split, loss=loss, seed=seed, chunk=chunk)
    rows = [_change("loss", *(Objective(m, data, split, loss, chunk).loss() for m in pair),
                    invariant=True)]
    if hessian:
        (top0, note), (top1, _) = (_top_eigenvalue(m, data, split, loss) for m in pair)
        rows.append(_change("top_hessian_eigenvalue", top0, top1, invariant=False, note=note))
    keskar = [epsilon_sharpness(m, data, eps, maxiter=maxiter, **common).value for m in pair]
    rows.append(_change("epsilon_sharpness", *keskar, invariant=False, note=f"eps={eps:g}"))
    for e, name in ((eta, "adaptive_sharpness"), (0.0, "adaptive_sharpness_eta0")):
        vals = [adaptive_sharpness(m, data, rho, eta=e, steps=steps, **common).value
                for m in pair]
        note = f"p=2, rho={rho:g}, eta={e:g}" + (" (eta is not rescaled: approximately)"
                                                 if e else " (exactly, up to rounding)")
        rows.append(_change(name, *vals, invariant=True, note=note))
    curves = [loss_along_direction(m, data, random_directions(m, 1, seed=seed)[0], coords,
                                   split=split, loss=loss, chunk=chunk) for m in pair]
    rows.append(_change("filter_normalized_curve_max", float(curves[0].max()),
                        float(curves[1].max()), invariant=True,
                        note=f"max over {len(coords)} points; largest pointwise difference "
                             f"{float(np.abs(curves[0] - curves[1]).max()):.3g}"))
    diff = _output_change(model, scaled, data, split, chunk)
    return ReparametrizationReport(alpha=float(alpha), layer_a=layers[0], layer_b=layers[1],
                                   output_max_abs_diff=diff, measures=tuple(rows))
