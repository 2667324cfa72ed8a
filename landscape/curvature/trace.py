"""Stochastic estimates of the Hessian's trace: Hutchinson and Hutch++.

Contract: ``hessian_trace`` takes a network and its data (with ``HessianOptions``) or any
symmetric operator and spends a fixed budget of products on Rademacher probes drawn from
``seed``; it returns a ``TraceResult`` (estimate, standard error, products used).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .base import CurvatureOperator
from .hessian import solver_operator
from .lanczos import rademacher
from .options import HessianOptions
from ..util.checks import check_choice


@dataclasses.dataclass(frozen=True)
class TraceResult:
    """Stochastic trace estimate.

    Attributes:
        estimate: the trace estimate.
        stderr: its standard error (of the stochastic part; Hutch++'s low-rank part is exact).
        n_products: Hessian-vector products used.
        method: ``hutch++`` or ``hutchinson``.
        seconds: wall time.
        mode: ``eval`` or ``train``.
        n_params: dimension of the Hessian.
    """

    estimate: float
    stderr: float
    n_products: int
    method: str
    seconds: float
    mode: str
    n_params: int


def hessian_trace(source: Any, data: Any = None, *, method: str = "hutch++",
                  n_products: int = 60, seed: int = 0, options: HessianOptions | None = None
                  ) -> TraceResult:
    """Trace of the Hessian from Rademacher probes.

    ``hutchinson``: mean of ``z^T H z``. ``hutch++``: a third of the products sketch the top
    of the spectrum (``Q`` from ``H S``), whose trace ``tr(Q^T H Q)`` is taken exactly; the rest
    is Hutchinson on the deflated ``(I - QQ^T) H (I - QQ^T)``.

    Args:
        source, data: as for ``hessian_eigenvalues`` (a network and its data, or an operator).
        method: ``hutch++`` or ``hutchinson``.
        n_products: budget of Hessian-vector products (hutch++: a multiple of 3 is used).
        seed: seed of the probes.
        options: how products are made from a network (``HessianOptions``).

    Returns:
        TraceResult (estimate, standard error, products used, mode).
    """
    check_choice(method, ("hutch++", "hutchinson"), "trace method")
    if n_products < (3 if method == "hutch++" else 2):
        raise LandscapeError(f"{method} needs at least {3 if method == 'hutch++' else 2} "
                             "products")
    start = time.perf_counter()
    op = solver_operator(source, data, options, record=False)
    rng = np.random.default_rng(seed)
    try:
        if method == "hutchinson":
            est, se = _hutchinson(op, n_products, rng, None)
        else:
            est, se = _hutchpp(op, n_products, rng)
    finally:
        op.close()
    return TraceResult(estimate=float(est), stderr=float(se), n_products=op.n_products,
                       method=method, seconds=time.perf_counter() - start, mode=op.mode,
                       n_params=op.n_params)


def _hutchinson(op: CurvatureOperator, m: int, rng: np.random.Generator,
                q: np.ndarray | None) -> tuple[float, float]:
    """Mean and standard error of ``g^T P H P g`` with ``P = I - Q Q^T`` (or ``I``)."""
    g = rademacher(rng, op.n_params, m)
    if q is not None:
        g -= q @ (q.T @ g)
    samples = np.array([g[:, i] @ op.matvec(g[:, i]) for i in range(m)])
    se = samples.std(ddof=1) / math.sqrt(m) if m > 1 else float("inf")
    return float(samples.mean()), float(se)


def _hutchpp(op: CurvatureOperator, n_products: int, rng: np.random.Generator
             ) -> tuple[float, float]:
    m = n_products // 3
    s = rademacher(rng, op.n_params, m)
    hs = np.stack([op.matvec(s[:, i]) for i in range(m)], axis=1)
    q, _ = np.linalg.qr(hs)
    hq = np.stack([op.matvec(q[:, i]) for i in range(q.shape[1])], axis=1)
    exact = float(np.sum(q * hq))
    rest, se = _hutchinson(op, n_products - 2 * m, rng, q)
    return exact + rest, se
