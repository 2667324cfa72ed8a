"""Does a measure predict generalization? PAC-Bayes flatness and rank statistics over runs.

Contract:

* ``pacbayes_flatness``: the largest standard deviation ``sigma`` of Gaussian weight noise
  that keeps the mean training loss within ``bound`` of the loss at the weights (Jiang et al.
  2020, "pacbayes.flatness"; with ``magnitude_aware`` each weight's noise has variance
  ``sigma^2 w_i^2 + eps^2``, their "pacbayes.mag.flatness"). The expected loss is estimated
  with antithetic pairs ``w + u, w - u`` of fixed draws (the same draws for every sigma, so
  the search is deterministic and the first-order term cancels exactly), and ``sigma`` is
  found by bisection on ``log sigma``. The reported measure is ``1 / sigma^2`` (larger:
  sharper, like the other sharpness measures). The model's weights are never changed.
* ``kendall_tau``, ``bootstrap_interval``, ``granulated_tau`` and ``correlations``: Kendall's
  tau-b (``scipy.stats.kendalltau``) between a measure and the generalization gap over runs,
  a percentile bootstrap interval over runs, Jiang et al.'s granulated tau (tau within each
  hyperparameter axis with every other setting fixed, averaged over the groups of the axis,
  then over the axes) and tau against the learning rate. Runs whose values are not finite
  are left out pair by pair; a tau that is undefined (fewer than 2 runs, a constant column)
  is NaN, never 0 (two runs have a tau of +1 or -1: Jiang et al.'s groups are often pairs).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from .errors import LandscapeError
from .sharpness import DataLike, LossLike
from .sharpness.objective import Objective


@dataclasses.dataclass(frozen=True)
class PacBayesFlatness:
    """The PAC-Bayes flatness of one model.

    Attributes:
        sigma: the largest noise level found whose mean loss increase is within ``bound``.
        flatness: ``1 / sigma^2`` (Jiang et al.'s measure; larger is sharper).
        deviation: the mean loss increase at ``sigma``.
        bound: the allowed loss increase.
        magnitude_aware: noise variance ``sigma^2 w^2 + eps^2`` instead of ``sigma^2``.
        eps: the floor of the magnitude-aware noise.
        base_loss: loss at the weights.
        samples: antithetic pairs of draws per noise level.
        evaluations: loss evaluations.
        at_limit: the search ended at ``lo`` or ``hi`` (sigma is then only a bound).
        seconds: wall time.
        seed: seed of the draws.
    """

    sigma: float
    flatness: float
    deviation: float
    bound: float
    magnitude_aware: bool
    eps: float
    base_loss: float
    samples: int
    evaluations: int
    at_limit: bool
    seconds: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


def pacbayes_flatness(model: nn.Module, data: DataLike, *, bound: float = 0.1,
                      magnitude_aware: bool = False, eps: float = 1e-3, samples: int = 4,
                      lo: float = 1e-5, hi: float = 10.0, iterations: int = 16,
                      split: str = "train", loss: LossLike = "cross_entropy", seed: int = 0,
                      chunk: int = 8192) -> PacBayesFlatness:
    """The largest Gaussian weight noise keeping the mean loss within ``bound``.

    Args:
        model: the network; its weights are read, never changed.
        data: a DataBundle or an ``(inputs, targets)`` pair.
        bound: allowed increase of the mean loss (> 0).
        magnitude_aware: noise variance ``sigma^2 w_i^2 + eps^2`` per weight.
        eps: floor of the magnitude-aware noise.
        samples: antithetic pairs per noise level (each pair costs two loss evaluations).
        lo, hi: the bracket of ``sigma`` searched.
        iterations: bisection steps on ``log sigma`` (the bracket shrinks by 2 each).
        split, loss, seed, chunk: the data split, loss, draws' seed and evaluation chunk.

    Returns:
        PacBayesFlatness; ``at_limit`` when the answer is an end of the bracket.
    """
    if not (bound > 0 and math.isfinite(bound)):
        raise LandscapeError(f"the PAC-Bayes loss bound must be positive, got {bound}")
    if not (0 < lo < hi) or samples < 1 or iterations < 1:
        raise LandscapeError("pacbayes_flatness needs 0 < lo < hi, samples >= 1, iterations >= 1")
    start = time.perf_counter()
    obj = Objective(model, data, split, loss, chunk)
    base = obj.loss()
    gen = torch.Generator().manual_seed(int(seed))
    draws = [torch.randn(obj.x0.numel(), generator=gen, dtype=torch.float64)
             .to(obj.device, obj.dtype) for _ in range(int(samples))]
    magnitude = obj.x0.abs() if magnitude_aware else None

    def deviation(sigma: float) -> float:
        std = (sigma if magnitude is None
               else torch.sqrt(sigma ** 2 * magnitude ** 2 + eps ** 2))
        pairs = [obj.loss(obj.x0 + std * z) + obj.loss(obj.x0 - std * z) for z in draws]
        return sum(pairs) / (2 * len(pairs)) - base

    sigma, dev, at_limit = _bisect(deviation, bound, lo, hi, iterations)
    return PacBayesFlatness(sigma=sigma, flatness=1.0 / sigma ** 2, deviation=dev,
                            bound=float(bound), magnitude_aware=magnitude_aware, eps=float(eps),
                            base_loss=base, samples=int(samples), evaluations=obj.evaluations,
                            at_limit=at_limit, seconds=time.perf_counter() - start,
                            seed=int(seed))


def _bisect(deviation, bound: float, lo: float, hi: float, iterations: int
            ) -> tuple[float, float, bool]:
    """Bisection on ``log sigma`` for the largest sigma with ``deviation(sigma) <= bound``
    (a NaN deviation counts as too large); returns (sigma, its deviation, at a limit)."""
    low_dev = deviation(lo)
    if not low_dev <= bound:
        return lo, low_dev, True
    high_dev = deviation(hi)
    if high_dev <= bound:
        return hi, high_dev, True
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        dev = deviation(mid)
        if dev <= bound:
            lo, low_dev = mid, dev
        else:
            hi = mid
    return lo, low_dev, False


# --------------------------------------------------------------------------------------------
# Rank statistics over runs
# --------------------------------------------------------------------------------------------

def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between ``x`` and ``y`` over their finite pairs (NaN when undefined:
    fewer than 2 pairs or a constant column)."""
    a, b = _finite_pairs(x, y)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def bootstrap_interval(x: Sequence[float], y: Sequence[float], *, resamples: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of Kendall's tau, resampling runs with replacement.

    Returns:
        (low, high), or (NaN, NaN) when fewer than 3 finite pairs (or no resample has a
        defined tau).
    """
    a, b = _finite_pairs(x, y)
    if len(a) < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    taus = [kendall_tau(a[idx], b[idx])
            for idx in (rng.integers(0, len(a), len(a)) for _ in range(int(resamples)))]
    taus = np.asarray([t for t in taus if math.isfinite(t)])
    if len(taus) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(taus, tail)), float(np.percentile(taus, 100 - tail))


@dataclasses.dataclass(frozen=True)
class GranulatedTau:
    """Jiang et al.'s granulated Kendall tau.

    Attributes:
        value: the mean of ``per_axis`` over the axes that have a defined value (NaN if none).
        per_axis: axis -> mean tau over its groups (runs equal in every other setting).
        groups: axis -> number of groups whose tau is defined.
    """

    value: float
    per_axis: dict[str, float]
    groups: dict[str, int]


def granulated_tau(settings: Sequence[Mapping[str, Any]], x: Sequence[float],
                   y: Sequence[float], axes: Sequence[str]) -> GranulatedTau:
    """Tau between ``x`` and ``y`` within each axis, every other setting held fixed.

    Args:
        settings: one mapping of setting -> value per run (every key other than the axis
            is held fixed within a group, seeds included).
        x, y: one value per run (the measure and the generalization gap).
        axes: the settings that vary as hyperparameter axes (one with a single value
            contributes nothing).

    Returns:
        GranulatedTau with the average over axes and each axis's mean.
    """
    per_axis, groups = {}, {}
    keys = sorted({k for s in settings for k in s})
    for axis in axes:
        buckets: dict[tuple, list[int]] = defaultdict(list)
        for i, s in enumerate(settings):
            buckets[tuple(repr(s.get(k)) for k in keys if k != axis)].append(i)
        taus = [kendall_tau([x[i] for i in idx], [y[i] for i in idx])
                for idx in buckets.values() if len({repr(settings[i].get(axis))
                                                    for i in idx}) > 1]
        taus = [t for t in taus if math.isfinite(t)]
        if taus:
            per_axis[axis], groups[axis] = float(np.mean(taus)), len(taus)
    value = float(np.mean(list(per_axis.values()))) if per_axis else float("nan")
    return GranulatedTau(value=value, per_axis=per_axis, groups=groups)


def correlations(runs: Sequence[Mapping[str, Any]], measures: Sequence[str],
                 axes: Sequence[str], *, target: str = "generalization_gap",
                 lr_key: str = "lr", resamples: int = 1000, seed: int = 0
                 ) -> dict[str, dict[str, Any]]:
    """Every measure's rank correlation with the generalization gap and with the lr.

    Args:
        runs: dicts with ``settings`` (axis -> value), ``measures`` (name -> number) and
            ``target`` (the generalization gap), as in a sweep's summary.json.
        measures: the measure names to correlate.
        axes: the hyperparameter axes for the granulated tau (not the seed).
        target: the run field correlated against.
        lr_key: the setting holding the learning rate.
        resamples, seed: of the bootstrap interval.

    Returns:
        measure -> ``kendall_tau``, ``interval``, ``granulated_tau``, ``per_axis``,
        ``tau_vs_lr``, ``runs`` (the finite pairs used).
    """
    settings = [r["settings"] for r in runs]
    gap = [r[target] for r in runs]
    lrs = [s.get(lr_key, float("nan")) for s in settings]
    table = {}
    for name in measures:
        values = [r["measures"].get(name, float("nan")) for r in runs]
        granulated = granulated_tau(settings, values, gap, axes)
        table[name] = {"kendall_tau": kendall_tau(values, gap),
                       "interval": list(bootstrap_interval(values, gap, resamples=resamples,
                                                           seed=seed)),
                       "granulated_tau": granulated.value, "per_axis": granulated.per_axis,
                       "tau_vs_lr": kendall_tau(values, lrs),
                       "runs": len(_finite_pairs(values, gap)[0])}
    return table
