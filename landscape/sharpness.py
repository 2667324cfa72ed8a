"""Sharpness of a minimum and the shape of its basin.

Three families of measures live here:

* Keskar et al.'s epsilon-sharpness: the largest loss increase inside the box
  ``|z_i| <= eps (|x_i| + 1)`` around the weights ``x`` (or inside the same box taken on the
  coordinates ``A^+ x`` of a random subspace), found approximately with scipy's L-BFGS-B and
  reported as ``100 (max f - f(x)) / (1 + f(x))``.
* Adaptive (scale-invariant) sharpness: the worst loss increase over perturbations
  ``delta = t * u`` with ``t = |w| + eta`` and ``||u||_p <= rho`` (projected gradient ascent,
  p = 2 or infinity), and its average-case sibling over random ``u``.
* The basin shape of a 1-D curve or 2-D surface (numpy arrays, no model): how many basins,
  how wide the central one is, how curved its centre, and a "V" (one funnel) or "W" (several
  basins) label.

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
from .data import DataBundle
from .directions import random_directions
from .errors import LandscapeError
from .params import flatten, named_tensors, unflatten

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
        x, y = _split_of(data, split)
        self.x, self.y = x.to(self.device), y.to(self.device)
        if len(self.y) == 0:
            raise LandscapeError(f"the {split} split is empty")
        self.loss_fn = _loss_fn(loss, data)
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


def _split_of(data: DataLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, DataBundle):
        return data.split(split)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise LandscapeError("data must be a DataBundle or an (inputs, targets) pair")


def _loss_fn(loss: LossLike, data: DataLike) -> Callable:
    if callable(loss):
        return loss
    from .train import loss_function

    if isinstance(data, DataBundle):
        classes = data.num_classes
    else:
        classes = int(data[1].max()) + 1 if data[1].numel() else 1
    return loss_function(loss, classes)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# --------------------------------------------------------------------------------------------
# Keskar et al. epsilon-sharpness
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EpsilonSharpness:
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
    value: float
    max_loss: float
    base_loss: float
    subspace_dim: int
    iterations: int
    evaluations: int
    seconds: float
    split: str = "train"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


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

@dataclasses.dataclass(frozen=True)
class AdaptiveSharpness:
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
    value: float
    max_loss: float
    base_loss: float
    steps: int
    evaluations: int
    seconds: float
    split: str = "train"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


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
    from ._util import progress as bar_of

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
    from .hessian import hessian_eigenvalues

    result = hessian_eigenvalues(model, data, k=1, loss=loss, split=split)
    return float(result.values[-1]), "hessian_eigenvalues(k=1), Lanczos"


@torch.no_grad()
def _output_change(one: nn.Module, other: nn.Module, data: DataLike, split: str,
                   chunk: int) -> float:
    """Largest absolute difference of the two models' outputs over the split (eval mode)."""
    x, _ = _split_of(data, split)
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


# --------------------------------------------------------------------------------------------
# Basin shape: V versus W
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BasinShape:
    """The shape of a 1-D curve or 2-D surface around its centre.

    Attributes:
        label: ``"V"`` (one basin), ``"W"`` (several basins) or ``"flat"`` (no minimum deeper
            than the threshold: the values vary by less than it).
        n_basins: local minima whose depth (persistence) is at least ``threshold``.
        minima: ``(coordinates, value, depth)`` of those minima, deepest first; the global
            minimum's depth is the range of the values.
        ndim: 1 or 2.
        center: coordinates of the grid point taken as the centre.
        center_value: the value there.
        rise: the loss increase that bounds the central basin.
        threshold: the depth a minimum needs to count as a basin.
        width: mean diameter of the central basin (over directions) where the value first
            reaches ``center_value + rise``; None if on some direction it never does inside the
            grid.
        axis_widths: diameter along each axis (None where not reached).
        radii: distance from the centre to the crossing along each direction (None where not
            reached): 1-D (-x, +x); 2-D at angles ``2 pi k / n``.
        curvature: second derivative at the centre along each axis (finite differences).
        grid_steps: grid spacing at the centre along each axis (the larger of the two
            intervals next to it).
        min_on_edge: the lowest value lies on the grid's border, strictly below every interior
            value: the minimum may lie outside the grid.
        min_at: coordinates of the lowest value.
        width_resolved: False when ``width`` or an axis width is below two grid steps (of
            the coarsest axis for ``width``): the grid does not resolve the basin, so its width
            and curvature mean little.
    """

    label: str
    n_basins: int
    minima: tuple[tuple[tuple[float, ...], float, float], ...]
    ndim: int
    center: tuple[float, ...]
    center_value: float
    rise: float
    threshold: float
    width: float | None
    axis_widths: tuple[float | None, ...]
    radii: tuple[float | None, ...]
    curvature: tuple[float, ...]
    grid_steps: tuple[float, ...] = ()
    min_on_edge: bool = False
    min_at: tuple[float, ...] = ()
    width_resolved: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        out = dataclasses.asdict(self)
        out["minima"] = [{"at": list(c), "value": v, "depth": d} for c, v, d in self.minima]
        for key in ("center", "axis_widths", "radii", "curvature", "grid_steps", "min_at"):
            out[key] = list(out[key])
        return out


def basin_minima(values: np.ndarray) -> list[tuple[tuple[int, ...], float, float]]:
    """Local minima of a 1-D or 2-D array with their depth (0-dimensional persistence of the
    sublevel sets: the level at which a minimum's basin merges with a deeper one, minus its
    value). The grid's border is a wall; non-finite entries are walls too. The deepest minimum
    of each connected region gets the region's range as its depth.

    Args:
        values: 1-D or 2-D array.

    Returns:
        ``(index, value, depth)`` for every local minimum, deepest first.
    """
    arr = np.asarray(values, dtype=float)
    flat = arr.reshape(-1)
    finite = np.isfinite(flat)
    order = np.argsort(np.where(finite, flat, np.inf), kind="stable")
    rank = np.empty(flat.size, dtype=np.int64)
    rank[order] = np.arange(flat.size)
    parent = np.full(flat.size, -1, dtype=np.int64)
    birth: dict[int, int] = {}   # root -> index of its minimum
    peak: dict[int, float] = {}  # root -> highest value joined so far
    deaths: dict[int, float] = {}  # minimum index -> depth

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in order:
        if not finite[i]:
            break
        parent[i] = i
        birth[i], peak[i] = i, flat[i]
        for j in _neighbours(int(i), arr.shape):
            if parent[j] < 0:
                continue
            ri, rj = root(i), root(j)
            if ri == rj:
                continue
            # The younger basin (later in the sorted order: higher minimum, or equal and
            # found later on a plateau) dies at this level.
            young, old = (ri, rj) if rank[birth[ri]] > rank[birth[rj]] else (rj, ri)
            deaths[birth[young]] = flat[i] - flat[birth[young]]
            parent[young] = old
            peak[old] = max(peak[old], peak[young], flat[i])
    for r in {root(i) for i in range(flat.size) if parent[i] >= 0}:
        deaths[birth[r]] = peak[r] - flat[birth[r]]
    minima = [(tuple(int(v) for v in np.unravel_index(i, arr.shape)), float(flat[i]), float(d))
              for i, d in deaths.items() if _is_local_min(int(i), flat, arr.shape)]
    return sorted(minima, key=lambda m: (-m[2], m[1]))


def _neighbours(i: int, shape: tuple[int, ...]) -> list[int]:
    if len(shape) == 1:
        return [j for j in (i - 1, i + 1) if 0 <= j < shape[0]]
    r, c = divmod(i, shape[1])
    out = []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr, cc = r + dr, c + dc
        if 0 <= rr < shape[0] and 0 <= cc < shape[1]:
            out.append(rr * shape[1] + cc)
    return out


def _is_local_min(i: int, flat: np.ndarray, shape: tuple[int, ...]) -> bool:
    # Points born in the union-find that immediately merge (a plateau or slope point joining
    # an existing basin at its own level) have depth 0; keep only true local minima.
    return all(flat[i] <= flat[j] or not np.isfinite(flat[j]) for j in _neighbours(i, shape))


def basin_shape(x: np.ndarray, values: np.ndarray, y: np.ndarray | None = None, *,
                rise: float = 0.1, threshold: float | None = None,
                center: Sequence[float] | float = 0.0, directions: int = 16) -> BasinShape:
    """Basin count, central width and curvature of a curve ``values[i] = f(x[i])`` or a surface
    ``values[i, j] = f(x[i], y[j])``, with a V / W label.

    Args:
        x: increasing coordinates of the first axis.
        values: shape ``(len(x),)`` or ``(len(x), len(y))``; NaN or inf are walls.
        y: increasing coordinates of the second axis (2-D only).
        rise: the central basin ends where the value first exceeds the centre's by ``rise``.
        threshold: depth a minimum needs to count as a basin (default 5% of the value range).
            Noise of amplitude ``a`` makes minima at most about ``2a`` deep.
        center: the point (nearest grid point) taken as the centre, 0 (the model) by default.
        directions: rays from the centre in 2-D, a multiple of 4 (widths average over them).

    Returns:
        BasinShape.
    """
    xs, ys, vals = _check_grid(x, values, y)
    thr = _threshold(vals, threshold)
    if not (rise > 0 and math.isfinite(rise)):
        raise LandscapeError(f"rise must be a positive number, got {rise}")
    axes = (xs,) if ys is None else (xs, ys)
    idx = _center_index(axes, center)
    minima = [m for m in basin_minima(vals) if m[2] >= thr and m[2] > 0]
    n = len(minima)
    radii = _radii(axes, vals, idx, rise, directions)
    width, axis_widths = _widths(radii, len(axes))
    steps = tuple(_local_step(a, i) for a, i in zip(axes, idx))
    on_edge, min_idx = _minimum_on_edge(vals)
    resolved = not ((width is not None and width < 2.0 * max(steps))
                    or any(w is not None and w < 2.0 * h for w, h in zip(axis_widths, steps)))
    return BasinShape(
        label="flat" if n == 0 else ("V" if n == 1 else "W"), n_basins=n,
        minima=tuple((tuple(float(a[i]) for a, i in zip(axes, m[0])), m[1], m[2])
                     for m in minima),
        ndim=len(axes), center=tuple(float(a[i]) for a, i in zip(axes, idx)),
        center_value=float(vals[idx]), rise=float(rise), threshold=thr, width=width,
        axis_widths=axis_widths, radii=tuple(radii),
        curvature=tuple(_second_derivative(a, _line(vals, idx, k), idx[k])
                        for k, a in enumerate(axes)),
        grid_steps=steps, min_on_edge=on_edge,
        min_at=tuple(float(a[i]) for a, i in zip(axes, min_idx)), width_resolved=resolved)


def _local_step(a: np.ndarray, i: int) -> float:
    """Grid spacing at index ``i``: the larger of the intervals on either side."""
    return float(max(a[j + 1] - a[j] for j in (i - 1, i) if 0 <= j < len(a) - 1))


def _minimum_on_edge(vals: np.ndarray) -> tuple[bool, tuple[int, ...]]:
    """Whether the lowest finite value lies on the grid's border, strictly below every
    interior value (ties with the interior do not count), and where it is."""
    clean = np.where(np.isfinite(vals), vals, np.inf)
    where = tuple(int(v) for v in np.unravel_index(int(np.argmin(clean)), clean.shape))
    interior = clean[(slice(1, -1),) * clean.ndim]
    border = np.ones(clean.shape, dtype=bool)
    border[(slice(1, -1),) * clean.ndim] = False
    low = float(clean[border].min())
    return bool(np.isfinite(low) and low < float(interior.min())), where


def _threshold(vals: np.ndarray, threshold: float | None) -> float:
    """The basin depth threshold: as given, or 5% of the range of the finite values."""
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        raise LandscapeError("no finite values: nothing to measure")
    thr = 0.05 * float(finite.max() - finite.min()) if threshold is None else float(threshold)
    if thr < 0 or not math.isfinite(thr):
        raise LandscapeError(f"threshold must be >= 0, got {threshold}")
    return thr


def _center_index(axes: tuple[np.ndarray, ...], center: Sequence[float] | float
                  ) -> tuple[int, ...]:
    """Grid index nearest to ``center`` (one number is used on every axis)."""
    ctr = np.atleast_1d(np.asarray(center, dtype=float))
    if ctr.size == 1:
        ctr = np.repeat(ctr, len(axes))
    if ctr.size != len(axes):
        raise LandscapeError(f"center needs {len(axes)} coordinates, got {ctr.size}")
    return tuple(int(np.argmin(np.abs(a - c))) for a, c in zip(axes, ctr))


def _widths(radii: list[float | None], ndim: int
            ) -> tuple[float | None, tuple[float | None, ...]]:
    """Mean diameter over opposite ray pairs, and the diameters along the axes."""
    half = len(radii) // 2
    diameters = [None if radii[k] is None or radii[k + half] is None
                 else radii[k] + radii[k + half] for k in range(half)]
    width = None if any(d is None for d in diameters) else float(np.mean(diameters))
    # 1-D rays are (-x, +x); 2-D rays start on +x and pass +y a quarter of the way round.
    axis_widths = (diameters[0],) if ndim == 1 else (diameters[0], diameters[len(radii) // 4])
    return width, axis_widths


def _check_grid(x, values, y) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    xs = np.asarray(x, dtype=float).reshape(-1)
    ys = None if y is None else np.asarray(y, dtype=float).reshape(-1)
    vals = np.asarray(values, dtype=float)
    want = (len(xs),) if ys is None else (len(xs), len(ys))
    if vals.shape != want:
        raise LandscapeError(f"values have shape {vals.shape}, the axes give {want}")
    for name, a in (("x", xs), ("y", ys)):
        if a is None:
            continue
        if len(a) < 3:
            raise LandscapeError(f"axis {name} needs at least 3 points, got {len(a)}")
        if not (np.all(np.isfinite(a)) and np.all(np.diff(a) > 0)):
            raise LandscapeError(f"axis {name} must be finite and strictly increasing")
    return xs, ys, vals


def _line(vals: np.ndarray, idx: tuple[int, ...], axis: int) -> np.ndarray:
    if vals.ndim == 1:
        return vals
    return vals[:, idx[1]] if axis == 0 else vals[idx[0], :]


def _second_derivative(a: np.ndarray, f: np.ndarray, i: int) -> float:
    """Three-point second derivative on a possibly uneven grid; at the border the stencil
    moves inward by one point."""
    i = min(max(i, 1), len(a) - 2)
    h1, h2 = a[i] - a[i - 1], a[i + 1] - a[i]
    return float(2.0 * (h1 * f[i + 1] - (h1 + h2) * f[i] + h2 * f[i - 1])
                 / (h1 * h2 * (h1 + h2)))


def _radii(axes: tuple[np.ndarray, ...], vals: np.ndarray, idx: tuple[int, ...], rise: float,
           directions: int) -> list[float | None]:
    """Distance from the centre to the first point at ``centre + rise`` along each ray."""
    level = vals[idx] + rise
    if len(axes) == 1:
        a, f = axes[0], vals
        return [_crossing(a[idx[0]] - a[idx[0]::-1], f[idx[0]::-1], level),
                _crossing(a[idx[0]:] - a[idx[0]], f[idx[0]:], level)]
    if directions < 4 or directions % 4:
        raise LandscapeError(f"directions must be a multiple of 4 (so the axes are among "
                             f"them), got {directions}")
    from scipy.interpolate import RegularGridInterpolator

    clean = np.where(np.isfinite(vals), vals, np.inf)
    interp = RegularGridInterpolator(axes, clean, method="linear", bounds_error=False,
                                     fill_value=np.nan)
    origin = np.array([axes[0][idx[0]], axes[1][idx[1]]])
    step = min(np.diff(axes[0]).min(), np.diff(axes[1]).min()) / 4.0
    reach = float(np.hypot(np.ptp(axes[0]), np.ptp(axes[1])))
    r = np.arange(0.0, reach + step, step)
    out = []
    for k in range(directions):
        theta = 2.0 * math.pi * k / directions
        unit = np.array([math.cos(theta), math.sin(theta)])
        unit[np.abs(unit) < 1e-12] = 0.0
        pts = origin + r[:, None] * unit
        inside = _inside(pts, axes)
        # Rounding may put the last point a hair outside the grid: pull it back in.
        on_grid = np.column_stack([np.clip(pts[inside, k], a[0], a[-1])
                                   for k, a in enumerate(axes)])
        out.append(_crossing(r[inside], interp(on_grid), level))
    return out


def _inside(pts: np.ndarray, axes: tuple[np.ndarray, ...]) -> np.ndarray:
    ok = np.ones(len(pts), dtype=bool)
    for k, a in enumerate(axes):
        ok &= (pts[:, k] >= a[0] - 1e-12 * np.ptp(a)) & (pts[:, k] <= a[-1] + 1e-12 * np.ptp(a))
    # Keep the first contiguous run (the ray leaves the grid once).
    stop = np.argmin(ok) if not ok.all() else len(ok)
    ok[stop:] = False
    return ok


def _crossing(r: np.ndarray, f: np.ndarray, level: float) -> float | None:
    """First ``r`` where ``f`` reaches ``level`` (linear interpolation), None if never."""
    above = ~(f < level)  # NaN/inf count as reached: a wall
    if not above.any():
        return None
    k = int(np.argmax(above))
    if k == 0:
        return float(r[0])
    f0, f1 = f[k - 1], f[k]
    if not np.isfinite(f1):
        return float(r[k])
    return float(r[k - 1] + (level - f0) / (f1 - f0) * (r[k] - r[k - 1]))


def surface_shape(surface, metric: str = "train_loss", *, rise: float = 0.1,
                  threshold: float | None = None, directions: int = 16) -> BasinShape:
    """``basin_shape`` of one metric of a ``landscape.surface.Surface``.

    Args:
        surface: a complete 1-D or 2-D Surface.
        metric: which loss (``train_loss``, ``test_loss``, ...); accuracies are refused, their
            minima are not basins.
        rise, threshold, directions: as in ``basin_shape``.

    Returns:
        BasinShape.
    """
    if metric not in surface.metrics:
        raise LandscapeError(f"surface has no metric {metric!r} (it has "
                             f"{', '.join(sorted(surface.metrics)) or 'none'})")
    if _is_accuracy(metric):
        losses = sorted(m for m in surface.metrics if not _is_accuracy(m))
        raise LandscapeError(f"{metric!r} is an accuracy (higher is better): shape analysis "
                             f"measures basins of a loss (use {' or '.join(losses) or 'a loss'})")
    if not surface.complete:
        done = int(np.sum(surface.done))
        raise LandscapeError(f"surface is incomplete ({done} of {np.size(surface.done)} points "
                             "computed): finish it before measuring its shape")
    return basin_shape(surface.x, surface.metrics[metric], surface.y, rise=rise,
                       threshold=threshold, directions=directions)


def _is_accuracy(metric: str) -> bool:
    """``train_acc``, ``test_acc`` and other accuracy metrics (higher is better)."""
    return metric.lower().rsplit("_", 1)[-1] in ("acc", "accuracy")
