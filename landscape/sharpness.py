"""Sharpness of a minimum, and its reparametrization check.

Two families of measures live here (basin shape is in ``landscape.shape``):

* Keskar et al.'s epsilon-sharpness: the largest loss increase inside the box
  ``|z_i| <= eps (|x_i| + 1)`` around the weights ``x`` (or inside the same box taken on the
  coordinates ``A^+ x`` of a random subspace), found approximately with scipy's L-BFGS-B and
  reported as ``100 (max f - f(x)) / (1 + f(x))``.
* Adaptive (scale-invariant) sharpness: the worst loss increase over perturbations
  ``delta = t * u`` with ``t = |w| + eta`` and ``||u||_p <= rho`` (projected gradient ascent,
  p = 2 or infinity), and its average-case sibling over random ``u``.

``rescale_relu_layers`` and ``reparametrization_report`` let a user check which measures are
fooled by a function-preserving rescaling of two layers across a ReLU (Dinh et al., 2017).

Every loss here is the mean loss over a whole split (full batch, evaluated in chunks and
weighted by chunk size) in eval mode, so BatchNorm uses its running statistics; the model's
weights are never modified (the loss is evaluated with ``torch.func.functional_call``).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ._util import float32_mode
from ._util import progress as bar_of
from .data import DataBundle, split_of
from .directions import random_directions
from .hessian import HessianOptions, hessian_eigenvalues
from .errors import LandscapeError
from .params import flatten, named_tensors, unflatten
from .losses import loss_function

LossLike = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DataLike = DataBundle | tuple[torch.Tensor, torch.Tensor]

DEFAULT_EPS = (1e-3, 5e-4)


# --------------------------------------------------------------------------------------------
# The loss as a function of a flat weight vector
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class _Objective:
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
        with torch.no_grad(), _eval_mode(self.model), self._float32():
            return sum(float(part) for part in self._forward(w))

    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient with respect to the flat weights at ``w``."""
        self.evaluations += 1
        w = w.detach().clone().requires_grad_(True)
        total = 0.0
        with torch.enable_grad(), _eval_mode(self.model), self._float32():
            for part in self._forward(w):
                part.backward()
                total += float(part.detach())
        return total, w.grad.detach()


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
    obj = _Objective(model, data, split, loss, chunk)
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
    obj = _Objective(model, data, split, loss, chunk)
    base = obj.loss()
    x0 = obj.x0
    t = _scale(x0, eta)
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
    obj = _Objective(model, data, split, loss, chunk)
    base = obj.loss()
    x0 = obj.x0
    t = _scale(x0, eta)
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


# --------------------------------------------------------------------------------------------
# All sharpness measures at once
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SharpnessSummary:
    """Every sharpness measure of one model.

    Attributes:
        base_loss: mean loss over the split at the weights.
        epsilon: Keskar sharpness per eps (full space first, then the subspace if asked).
        adaptive: worst-case adaptive sharpness (p = 2, then p = inf).
        average: average-case adaptive sharpness.
        split: the data split.
        loss: the loss name.
    """

    base_loss: float
    epsilon: tuple[EpsilonSharpness, ...]
    adaptive: tuple[AdaptiveSharpness, ...]
    average: AverageSharpness | None
    split: str = "train"
    loss: str = "cross_entropy"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"base_loss": self.base_loss, "split": self.split, "loss": self.loss,
                "epsilon": [e.to_dict() for e in self.epsilon],
                "adaptive": [a.to_dict() for a in self.adaptive],
                "average": self.average.to_dict() if self.average else None}

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """Table rows: measure, setting, value, max loss, seconds."""
        out = []
        for e in self.epsilon:
            where = f"subspace p={e.subspace_dim}" if e.subspace_dim else "full space"
            out.append(("epsilon (Keskar)", f"eps={e.eps:g}, {where}", f"{e.value:.4g}",
                        f"{e.max_loss:.6g}", f"{e.seconds:.1f}"))
        for a in self.adaptive:
            out.append((f"adaptive worst-case l{a.p}", f"rho={a.rho:g}, eta={a.eta:g}",
                        f"{a.value:.4g}", f"{a.max_loss:.6g}", f"{a.seconds:.1f}"))
        if self.average:
            v = self.average
            out.append(("adaptive average-case", f"rho={v.rho:g}, n={v.samples}",
                        f"{v.mean:.4g} +- {v.stderr:.2g}", "", f"{v.seconds:.1f}"))
        return out


def measure_sharpness(model: nn.Module, data: DataLike, *, eps: Sequence[float] = DEFAULT_EPS,
                      subspace_dim: int = 0, rho: float = 0.05, rho_inf: float = 1e-3,
                      rho_avg: float = 0.05, eta: float = 0.01, samples: int = 10, seed: int = 0,
                      split: str = "train", loss: str = "cross_entropy", maxiter: int = 10,
                      steps: int = 10, chunk: int = 8192, progress: bool = False
                      ) -> SharpnessSummary:
    """Keskar sharpness for each ``eps`` (full space, plus a random subspace if
    ``subspace_dim > 0``), worst-case adaptive sharpness (l2 radius ``rho``, l-inf radius
    ``rho_inf``) and average-case adaptive sharpness (``samples`` draws, relative noise
    ``rho_avg``).

    Args:
        model, data, split, loss, seed, chunk: as in ``epsilon_sharpness``.
        eps: box sizes.
        subspace_dim: dimension of the random subspace (0: full space only).
        rho, rho_inf: adaptive radii for p = 2 and p = inf (0 skips that measure).
        rho_avg: relative noise of the average-case measure (0 skips it).
        eta: adaptive offset.
        samples: average-case draws (0 skips it, else at least 2).
        maxiter: L-BFGS-B iterations; steps: ascent steps.
        progress: show a progress bar over the measures.

    Returns:
        SharpnessSummary.
    """

    check_subspace_dim(model, subspace_dim)
    common = dict(split=split, loss=loss, seed=seed, chunk=chunk)
    jobs: list[tuple[str, Callable[[], Any]]] = []
    for e in eps:
        jobs.append(("epsilon", lambda e=e: epsilon_sharpness(model, data, e, maxiter=maxiter,
                                                              **common)))
        if subspace_dim:
            jobs.append(("epsilon", lambda e=e: epsilon_sharpness(
                model, data, e, maxiter=maxiter, subspace_dim=subspace_dim, **common)))
    for radius, p in ((rho, 2), (rho_inf, "inf")):
        if radius:
            jobs.append(("adaptive", lambda r=radius, p=p: adaptive_sharpness(
                model, data, r, p=p, eta=eta, steps=steps, **common)))
    if samples and rho_avg:
        jobs.append(("average", lambda: average_sharpness(model, data, rho_avg, eta=eta,
                                                          samples=samples, **common)))
    found: dict[str, list[Any]] = {"epsilon": [], "adaptive": [], "average": []}
    with bar_of(len(jobs), "sharpness", progress, unit="measure") as bar:
        for kind, job in jobs:
            found[kind].append(job())
            bar.update(1)
    base = _Objective(model, data, split, loss, chunk).loss()
    return SharpnessSummary(base_loss=base, epsilon=tuple(found["epsilon"]),
                            adaptive=tuple(found["adaptive"]),
                            average=found["average"][0] if found["average"] else None,
                            split=split, loss=loss if isinstance(loss, str) else "custom")


# --------------------------------------------------------------------------------------------
# Reparametrization (Dinh et al. 2017)
# --------------------------------------------------------------------------------------------

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
    obj = _Objective(model, data, split, loss, chunk)
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
    with _eval_mode(one), _eval_mode(other):
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
    rows = [_change("loss", *(_Objective(m, data, split, loss, chunk).loss() for m in pair),
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
