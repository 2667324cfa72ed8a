"""Every sharpness measure of one model at once: ``measure_sharpness`` and its summary.

``measure_sharpness`` runs Keskar's epsilon-sharpness for each box size (full space, plus a
random subspace if asked), worst-case adaptive sharpness (l2 and l-infinity balls) and
average-case adaptive sharpness, with one progress bar over the measures, and returns a
``SharpnessSummary`` (JSON through ``to_dict()``, table rows through ``rows()``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from torch import nn

from ..util import progress as bar_of
from .measures import (AdaptiveSharpness, AverageSharpness, EpsilonSharpness,
                       adaptive_sharpness, average_sharpness, check_subspace_dim,
                       epsilon_sharpness)
from .objective import DataLike, Objective

DEFAULT_EPS = (1e-3, 5e-4)


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
    base = Objective(model, data, split, loss, chunk).loss()
    return SharpnessSummary(base_loss=base, epsilon=tuple(found["epsilon"]),
                            adaptive=tuple(found["adaptive"]),
                            average=found["average"][0] if found["average"] else None,
                            split=split, loss=loss if isinstance(loss, str) else "custom")
