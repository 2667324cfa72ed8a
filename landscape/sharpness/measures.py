"""Sharpness measures of one minimum: Keskar's epsilon-sharpness, adaptive sharpness.

* Keskar et al.'s epsilon-sharpness: the largest loss increase inside the box
  ``|z_i| <= eps (|x_i| + 1)`` around the weights ``x`` (or inside the same box taken on the
  coordinates ``A^+ x`` of a random subspace), found approximately with scipy's L-BFGS-B and
  reported as ``100 (max f - f(x)) / (1 + f(x))``.
* Adaptive (scale-invariant) sharpness: the worst loss increase over perturbations
  ``delta = t * u`` with ``t = |w| + eta`` and ``||u||_p <= rho`` (projected gradient ascent,
  p = 2 or infinity), and its average-case sibling over random ``u``.

Each measure reads the model's weights and never changes them; every random choice comes
from a CPU generator seeded with ``seed``, so a seed gives one answer. Results are frozen
dataclasses with ``to_dict()`` for JSON.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LandscapeError
from ..params import named_tensors
from .objective import DataLike, LossLike, Objective


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _WorstCase:
    """What every worst-case measure reports (see the subclasses for the meaning)."""

    value: float
    max_loss: float
    base_loss: float
    evaluations: int
    seconds: float
    split: str = "train"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Keskar et al. epsilon-sharpness
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class EpsilonSharpness(_WorstCase):
    """Keskar et al.'s sharpness ``100 (max_{z in C_eps} f(x+z) - f(x)) / (1 + f(x))``.

    Attributes:
        eps: box size: ``|z_i| <= eps (|x_i| + 1)`` (on ``A^+ x`` in a subspace).
        value: the sharpness (percent of ``1 + f(x)``).
        max_loss: largest loss found inside the box (a lower bound on the true maximum).
        base_loss: ``f(x)``, the mean loss at the weights.
        subspace_dim: 0 for the full space, else the number of random directions ``p``.
        iterations: L-BFGS-B iterations taken.
        evaluations: loss-and-gradient evaluations (each a full pass over the split).
        seconds: wall time.
        split: the data split the loss was taken over.
        seed: seed of the subspace matrix and of a random start.
    """

    eps: float
    subspace_dim: int
    iterations: int


def random_subspace(n: int, p: int, seed: int | torch.Generator = 0) -> torch.Tensor:
    """The ``n x p`` float64 matrix ``A`` of Keskar's subspace sharpness: standard normal
    entries drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (or the generator
    given), so the same seed always gives the same subspace."""
    gen = seed if isinstance(seed, torch.Generator) else _generator(seed)
    return torch.randn(int(n), int(p), generator=gen, dtype=torch.float64)


def check_subspace_dim(model: nn.Module, subspace_dim: int) -> None:
    """Refuse a random subspace larger than the model's weight space (its ``n x p`` matrix and
    pseudo-inverse would only cost time and memory); cheap, so callers can check first.

    Raises:
        LandscapeError: ``subspace_dim`` is negative or above the number of trainable weights.
    """
    if subspace_dim < 0:
        raise LandscapeError(f"subspace dimension must be >= 0, got {subspace_dim}")
    n = sum(p.numel() for p in named_tensors(model, "weights").values())
    if subspace_dim > n:
        raise LandscapeError(f"subspace dimension must be at most the number of parameters "
                             f"({n}), got {subspace_dim}")


def keskar_value(max_loss: float, base_loss: float) -> float:
    """``100 (max_loss - base_loss) / (1 + base_loss)``."""
    return 100.0 * (max_loss - base_loss) / (1.0 + base_loss)


def epsilon_sharpness(model: nn.Module, data: DataLike, eps: float = 1e-3, *,
                      split: str = "train", loss: LossLike = "cross_entropy",
                      subspace_dim: int = 0, maxiter: int = 10, maxfun: int | None = None,
                      random_start: bool = False, seed: int = 0, chunk: int = 8192
                      ) -> EpsilonSharpness:
    """Keskar et al.'s epsilon-sharpness (Metric 2.1), maximized with scipy's L-BFGS-B.

    The maximization is over the offset ``z`` (full space) or the subspace coordinates ``y``
    with ``z = A y``, ``A = random_subspace(n, p, seed)`` (standard normal entries) and the
    box ``|y_i| <= eps (|(A^+ x)_i| + 1)``. It starts at ``x`` (``z = 0``), as in the paper.
    Gradients come from torch; the search runs in float64 and stops after ``maxiter``
    iterations (its tolerances are zero so a tiny gradient at a trained minimum does not end
    it at once). The largest loss seen at any evaluated point (all lie inside the box) is
    reported.

    Args:
        model: the network; its weights are read, never changed.
        data: a DataBundle (``split`` picks the split) or an ``(inputs, targets)`` pair.
        eps: box size.
        split: ``train`` or ``test`` (for a DataBundle).
        loss: ``cross_entropy``, ``mse`` or a callable ``(outputs, targets) -> mean loss``.
        subspace_dim: 0 for the full space, ``p > 0`` for a random ``p``-dimensional subspace.
        maxiter: L-BFGS-B iterations.
        maxfun: cap on evaluations (default ``4 * maxiter + 10``).
        random_start: start at a uniform random point of the box (seeded) instead of ``x``;
            needed where the gradient at ``x`` is exactly zero.
        seed: seed of ``A`` and of the random start.
        chunk: examples per forward pass (the loss is exact for any chunking).

    Returns:
        EpsilonSharpness.
    """
    from scipy.optimize import Bounds, minimize

    if not (eps > 0 and math.isfinite(eps)):
        raise LandscapeError(f"eps must be a positive number, got {eps}")
    if maxiter < 1:
        raise LandscapeError(f"maxiter must be at least 1, got {maxiter}")
    check_subspace_dim(model, subspace_dim)
    start = time.perf_counter()
    obj = Objective(model, data, split, loss, chunk)
    base = obj.loss()
    x0 = obj.x0
    gen = _generator(seed)
    if subspace_dim:
        a = random_subspace(x0.numel(), subspace_dim, gen)
        coords = torch.linalg.pinv(a) @ x0.detach().cpu().double()
        radius = (eps * (coords.abs() + 1.0)).numpy()
        a_dev = a.to(obj.device, obj.dtype)
        to_offset = lambda v: a_dev @ v  # noqa: E731
        pull_back = lambda g: a_dev.T @ g  # noqa: E731
    else:
        radius = (eps * (x0.detach().cpu().double().abs() + 1.0)).numpy()
        to_offset = pull_back = lambda v: v  # noqa: E731
    best = [base]

    def negated(v: np.ndarray) -> tuple[float, np.ndarray]:
        offset = to_offset(torch.from_numpy(v).to(obj.device, obj.dtype))
        value, grad = obj.loss_and_grad(x0 + offset)
        if not math.isfinite(value):
            raise LandscapeError("the loss became non-finite inside the sharpness box")
        best[0] = max(best[0], value)
        return -value, -pull_back(grad).detach().cpu().double().numpy()

    v0 = np.zeros_like(radius)
    if random_start:
        v0 = (torch.rand(len(radius), generator=gen, dtype=torch.float64).numpy() * 2 - 1
              ) * radius
    result = minimize(negated, v0, jac=True, method="L-BFGS-B", bounds=Bounds(-radius, radius),
                      options={"maxiter": int(maxiter), "maxfun": int(maxfun or 4 * maxiter + 10),
                               "ftol": 0.0, "gtol": 0.0})
    return EpsilonSharpness(eps=float(eps), value=keskar_value(best[0], base),
                            max_loss=best[0], base_loss=base, subspace_dim=int(subspace_dim),
                            iterations=int(result.nit), evaluations=obj.evaluations,
                            seconds=time.perf_counter() - start, split=split, seed=int(seed))


# --------------------------------------------------------------------------------------------
# Adaptive sharpness
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptiveSharpness(_WorstCase):
    """Worst-case adaptive sharpness ``max_{||u||_p <= rho} f(w + t*u) - f(w)``, t = |w| + eta.

    Attributes:
        rho: radius of the ball in the rescaled coordinates ``u``.
        p: ``"2"`` or ``"inf"``.
        eta: the constant added to ``|w|``.
        value: ``max_loss - base_loss``.
        max_loss: largest loss found on the ascent path (every iterate is inside the ball).
        base_loss: loss at the weights.
        steps: ascent steps taken.
        evaluations: loss(-and-gradient) evaluations.
        seconds: wall time.
        split: the data split.
        seed: seed of the random start.
    """

    rho: float
    p: str
    eta: float
    steps: int


@dataclasses.dataclass(frozen=True)
class AverageSharpness:
    """Average-case adaptive sharpness ``E_u f(w + t*u) - f(w)``, ``u ~ N(0, rho^2 I)``.

    Attributes:
        rho: standard deviation of each rescaled coordinate ``u_i`` (each weight moves by
            ``rho (|w_i| + eta)`` on average).
        eta: the constant added to ``|w|``.
        mean: mean loss increase over the samples.
        stderr: its standard error (sample std / sqrt(samples)).
        base_loss: loss at the weights.
        samples: number of random perturbations.
        increases: the individual loss increases.
        seconds: wall time.
        split: the data split.
        seed: seed of the perturbations.
    """

    rho: float
    eta: float
    mean: float
    stderr: float
    base_loss: float
    samples: int
    increases: tuple[float, ...]
    seconds: float
    split: str = "train"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


def _norm_kind(p: int | float | str) -> str:
    text = str(p).lower()
    if text in ("2", "2.0", "l2"):
        return "2"
    if text in ("inf", "infinity", "linf"):
        return "inf"
    raise LandscapeError(f"p must be 2 or inf, got {p!r}")


def _project(u: torch.Tensor, rho: float, kind: str) -> torch.Tensor:
    if kind == "inf":
        return u.clamp(-rho, rho)
    norm = float(u.norm())
    return u * (rho / norm) if norm > rho else u


def _ascent_direction(g: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "inf":
        return g.sign()
    norm = float(g.norm())
    return g / norm if norm > 0 else torch.zeros_like(g)


def _scale(x0: torch.Tensor, eta: float) -> torch.Tensor:
    if eta < 0 or not math.isfinite(eta):
        raise LandscapeError(f"eta must be >= 0, got {eta}")
    return x0.abs() + eta


def _scaled_start(model: nn.Module, data: DataLike, split: str, loss: LossLike, chunk: int,
                  eta: float) -> tuple[Objective, float, torch.Tensor, torch.Tensor]:
    """The objective, its loss at the weights, the flat weights and their scale |w| + eta."""
    obj = Objective(model, data, split, loss, chunk)
    base = obj.loss()
    return obj, base, obj.x0, _scale(obj.x0, eta)


def adaptive_sharpness(model: nn.Module, data: DataLike, rho: float = 0.05, *,
                       p: int | float | str = 2, eta: float = 0.01, steps: int = 10,
                       step_size: float | None = None, random_start: bool = True,
                       split: str = "train", loss: LossLike = "cross_entropy", seed: int = 0,
                       chunk: int = 8192) -> AdaptiveSharpness:
    """Worst-case adaptive sharpness by projected gradient ascent (Kwon et al. 2021 style).

    Perturbations are ``delta = t * u`` with ``t = |w| + eta`` element-wise and
    ``||u||_p <= rho``; ``u`` moves by ``step_size`` along the normalized gradient (p = 2) or
    the gradient's sign (p = inf) and is projected back onto the ball. With ``eta = 0`` the
    result is invariant (up to rounding) to rescaling consecutive ReLU layers.

    Args:
        model: the network; its weights are read, never changed.
        data: a DataBundle (``split`` picks the split) or an ``(inputs, targets)`` pair.
        rho: ball radius in the rescaled coordinates.
        p: 2 or ``"inf"``.
        eta: added to ``|w|`` so zero weights can move (0.01 by default).
        steps: ascent steps.
        step_size: length of each step in ``u`` (default ``rho``).
        random_start: start from a random point at half the radius (seeded) rather than from
            ``u = 0`` (where the gradient of a minimum can vanish).
        split, loss, seed, chunk: as in ``epsilon_sharpness``.

    Returns:
        AdaptiveSharpness.
    """
    kind = _norm_kind(p)
    if not (rho > 0 and math.isfinite(rho)):
        raise LandscapeError(f"rho must be a positive number, got {rho}")
    if steps < 1:
        raise LandscapeError(f"steps must be at least 1, got {steps}")
    start = time.perf_counter()
    obj, base, x0, t = _scaled_start(model, data, split, loss, chunk, eta)
    step = float(rho if step_size is None else step_size)
    u = torch.zeros_like(x0)
    if random_start:
        u = _random_start(x0.numel(), rho, kind, seed).to(x0.device, x0.dtype)
    best = base
    for _ in range(int(steps)):
        value, grad = obj.loss_and_grad(x0 + t * u)
        best = max(best, value)
        u = _project(u + step * _ascent_direction(t * grad, kind), rho, kind)
    best = max(best, obj.loss(x0 + t * u))
    return AdaptiveSharpness(rho=float(rho), p=kind, eta=float(eta), value=best - base,
                             max_loss=best, base_loss=base, steps=int(steps),
                             evaluations=obj.evaluations, seconds=time.perf_counter() - start,
                             split=split, seed=int(seed))


def _random_start(n: int, rho: float, kind: str, seed: int) -> torch.Tensor:
    gen = _generator(seed)
    if kind == "inf":
        return (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5) * rho
    z = torch.randn(n, generator=gen, dtype=torch.float64)
    return z * (0.5 * rho / float(z.norm()))


def average_sharpness(model: nn.Module, data: DataLike, rho: float = 0.05, *,
                      eta: float = 0.01, samples: int = 10, split: str = "train",
                      loss: LossLike = "cross_entropy", seed: int = 0, chunk: int = 8192
                      ) -> AverageSharpness:
    """Average-case adaptive sharpness: mean loss increase under random scaled perturbations.

    Each sample is ``delta = t * u`` with ``t = |w| + eta`` and ``u ~ N(0, rho^2 I)``: every
    weight gets Gaussian noise of standard deviation ``rho (|w_i| + eta)``, a relative
    perturbation of size ``rho``. (Random directions of the worst-case l2 ball would be
    ``sqrt(n)`` times smaller per weight and, in high dimension, barely change the loss.)

    Args:
        model: the network; its weights are read, never changed.
        data: a DataBundle or an ``(inputs, targets)`` pair.
        rho: relative noise level.
        eta: added to ``|w|``.
        samples: number of perturbations (at least 2 for a standard error).
        split, loss, seed, chunk: as in ``epsilon_sharpness``.

    Returns:
        AverageSharpness with the mean and its standard error.
    """
    if samples < 2:
        raise LandscapeError(f"samples must be at least 2 for a standard error, got {samples}")
    if not (rho > 0 and math.isfinite(rho)):
        raise LandscapeError(f"rho must be a positive number, got {rho}")
    start = time.perf_counter()
    obj, base, x0, t = _scaled_start(model, data, split, loss, chunk, eta)
    gen = _generator(seed)
    increases = []
    for _ in range(int(samples)):
        u = torch.randn(x0.numel(), generator=gen, dtype=torch.float64) * rho
        increases.append(obj.loss(x0 + t * u.to(x0.device, x0.dtype)) - base)
    arr = np.asarray(increases)
    return AverageSharpness(rho=float(rho), eta=float(eta), mean=float(arr.mean()),
                            stderr=float(arr.std(ddof=1) / math.sqrt(len(arr))),
                            base_loss=base, samples=int(samples),
                            increases=tuple(float(v) for v in arr),
                            seconds=time.perf_counter() - start, split=split, seed=int(seed))
