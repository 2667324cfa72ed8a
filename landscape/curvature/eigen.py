"""Extreme Hessian eigenvalues: Lanczos (scipy eigsh and full-reorthogonalization runs) and
power iteration.

Contract: ``hessian_eigenvalues`` takes a network and its data (with ``HessianOptions``) or any
symmetric operator and returns an ``EigenResult`` (values ascending, residuals, products);
``extreme_eigenvalues`` is the cheap both-ends estimate for every point of a surface grid;
``top_eigenpair`` is one (warm-startable) Lanczos run for the largest eigenvalue.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh
from torch import nn

from ..errors import LandscapeError
from .base import CurvatureOperator, ShiftedOperator, record_limit
from .ggn import OutputCurvatureOperator
from .hessian import HessianOperator, solver_operator
from .lanczos import BASIS_BUDGET, extreme_lanczos, gaussian_vector, lanczos
from .options import CURVATURES, DEFAULT_CHUNK, HessianOptions, LossArg
from ..util.checks import check_choice

BOTTOM_TOL = 1e-5
"""Default tolerance of the smallest end of ``hessian_eigenvalues``, relative to the spectrum's
width. On the MNIST-1D CNN trained full batch (8,010 parameters, width 20.2, smallest eigenvalue
-0.0026974) it took 135 products and was 7e-6 off; 1e-6 took 220 products and 1e-4 took 70 but
was 5e-4 (19%) off."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class EigenResult:
    """Extreme Hessian eigenvalues.

    Attributes:
        values: eigenvalues, ascending (for ``which="both"``: the bottom ones, then the top).
        vectors: unit eigenvectors as columns, ``(n_params, len(values))``, or None.
        residuals: ``||H v - lambda v||`` for each value (v of unit norm).
        n_products: Hessian-vector products used (solver and residuals together).
        seconds: wall time.
        mode: ``eval`` or ``train``: the mode the model's layers ran in.
        which: ``largest``, ``smallest`` or ``both``.
        method: ``lanczos`` (scipy eigsh) or ``power``.
        hvp: how products were computed: ``forward`` (torch.func jvp of grad) or ``double``.
        converged: False when the solver stopped at its iteration limit.
        n_params: dimension of the Hessian.
    """

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    n_products: int
    seconds: float
    mode: str
    which: str
    method: str
    hvp: str
    converged: bool
    n_params: int


def hessian_eigenvalues(source: Any, data: Any = None, *, k: int = 5, which: str = "largest",
                        tol: float = 1e-6, bottom_tol: float | None = BOTTOM_TOL,
                        return_vectors: bool = False, seed: int = 0, method: str = "lanczos",
                        k_smallest: int | None = None, ncv: int | None = None,
                        maxiter: int | None = None, options: HessianOptions | None = None
                        ) -> EigenResult:
    """Extreme eigenvalues of the Hessian of the mean loss over a data split.

    ``largest`` are the algebraically largest, ``smallest`` the most negative. With
    ``method="lanczos"`` (default) the top end is scipy's implicitly restarted Lanczos (eigsh)
    from a start vector drawn from ``seed``. The bottom of a trained network's spectrum is a
    dense cluster around zero, where restarted Lanczos crawls (MNIST-1D CNN trained full batch,
    ``k=3, which="both", k_smallest=1``: 1,229 products at tol 1e-6, about 1,200 of them for
    the smallest eigenvalue); it is found instead by one Lanczos run without restarts (full
    reorthogonalization) that stops when each bottom Ritz residual is below ``bottom_tol``
    times the spectrum's width (the same call: 156 products in all at the default 1e-5, 135 of
    them for the bottom; 241 at 1e-6). Only if that run hits its step limit does eigsh take
    over on ``H - s I`` (``s`` the largest eigenvalue, so eigsh's relative rule is relative to
    the width too), started from the best Ritz vector. Residuals come from the recorded products
    (Ritz vectors lie in their span), so they cost no extra product, as long as the run takes
    no more products than its record keeps (``record_limit``: what eigsh usually takes, so
    that the memory estimate holds); a longer run drops the record and pays one product per
    residual. ``method="power"`` is power iteration with deflation, kept as a baseline.

    Args:
        source: the network (not modified), or a symmetric operator (a scipy LinearOperator,
            a ``HessianOperator``, a dense or sparse matrix) to use as it is.
        data: with a network: ``(inputs, targets)`` or a DataBundle (its ``options.split``).
        k: how many eigenvalues (for ``both``: how many at the top).
        which: ``largest``, ``smallest`` or ``both``.
        tol: tolerance of the top end: eigsh stops when each Ritz residual is below ``tol``
            times its value; for ``power``, the relative change of the eigenvalue between
            iterations.
        bottom_tol: tolerance of the bottom end, relative to the spectrum's width ``W``
            (largest minus smallest eigenvalue): each bottom Ritz residual ends below
            ``bottom_tol * W``. A Ritz value is never below the smallest eigenvalue and lies
            within its residual of an eigenvalue, so the smallest one is bracketed by
            ``[value - bottom_tol * W, value]`` (a negative value proves negative curvature).
            The default 1e-5 bounds the error of the MNIST-1D CNN's smallest eigenvalue
            (-0.0027, W = 20) by 2e-4; it was 7e-6 off. None: the same as ``tol``. For
            ``power``: the relative change of the shifted eigenvalue.
        return_vectors: also return unit eigenvectors.
        seed: seed of the start vectors.
        method: ``lanczos`` or ``power``.
        k_smallest: for ``both``, how many at the bottom (default ``k``).
        ncv: eigsh's basis size (default: ``max(2k + 1, 20)`` for the top and, where eigsh
            takes over the bottom, ``max(2k + 1, 40)``).
        maxiter: restarts (eigsh), Lanczos steps of the bottom end (default 1000, fewer where
            the basis would pass 1 GiB) or iterations per eigenvalue (power, default 100).
        options: how products are made from a network (``HessianOptions``).

    Returns:
        EigenResult with values ascending, residuals, products, seconds and the mode used.
    """
    check_choice(which, ("largest", "smallest", "both"), "which")
    check_choice(method, ("lanczos", "power"), "method")
    k_small = (k_smallest if k_smallest is not None else k) if which == "both" else k
    k_large = k if which != "smallest" else 0
    k_small = k_small if which != "largest" else 0
    if min(k_large, k_small) < 0 or k_large + k_small < 1:
        raise LandscapeError("k must be at least 1")
    bottom_tol = tol if bottom_tol is None else bottom_tol
    if not (tol >= 0 and bottom_tol >= 0):
        raise LandscapeError(f"tolerances must not be negative (tol {tol}, bottom_tol "
                             f"{bottom_tol})")
    start = time.perf_counter()
    op = solver_operator(source, data, options, record=method == "lanczos")
    op.record_limit = record_limit(op.n_params, k_large, ncv)
    try:
        if k_large + k_small > op.n_params:
            raise LandscapeError(f"asked for {k_large + k_small} eigenvalues of a "
                                 f"{op.n_params}-parameter Hessian")
        rng = np.random.default_rng(seed)
        if method == "power":
            vals, vecs, res, converged = _power_ends(op, k_large, k_small, tol, bottom_tol,
                                                     maxiter, rng)
        else:
            vals, vecs, res, converged = _lanczos_ends(op, k_large, k_small, tol, bottom_tol,
                                                       ncv, maxiter, rng)
    finally:
        op.close()
    order = np.argsort(vals, kind="stable")
    return EigenResult(values=vals[order], vectors=vecs[:, order] if return_vectors else None,
                       residuals=res[order], n_products=op.n_products,
                       seconds=time.perf_counter() - start, mode=op.mode, which=which,
                       method=method, hvp=op.hvp_description, converged=converged,
                       n_params=op.n_params)


def _eigsh(op: LinearOperator, k: int, which: str, tol: float, ncv: int | None,
           maxiter: int | None, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """scipy eigsh that keeps what converged if it runs out of iterations."""
    try:
        vals, vecs = eigsh(op, k=k, which=which, tol=tol, ncv=ncv, maxiter=maxiter, v0=v0)
        return vals, vecs, True
    except ArpackNoConvergence as exc:
        if len(exc.eigenvalues) == 0:
            raise LandscapeError(f"Lanczos found no converged eigenvalue within its iteration "
                                 f"limit (tol {tol}); raise maxiter or tol") from exc
        warnings.warn(f"Lanczos converged for only {len(exc.eigenvalues)} of {k} eigenvalues",
                      stacklevel=4)
        return exc.eigenvalues, exc.eigenvectors, False
    except ArpackError as exc:
        raise _diagnose(op, v0) from exc


class ZeroCurvature(LandscapeError):
    """Every product is exactly zero: the operator is zero to its precision."""


def _diagnose(op: LinearOperator, v0: np.ndarray) -> LandscapeError:
    """Why ARPACK stopped at its first product ("starting vector is zero"): the product of
    the start vector is non-finite (weights or loss overflow float32), or exactly zero
    (a saturated softmax: every example's loss underflows to 0, so the Hessian does too)."""
    w = np.asarray(op.matvec(v0), dtype=np.float64)
    if not np.all(np.isfinite(w)):
        return LandscapeError("Hessian-vector products are NaN or inf at this model (its "
                              "weights or loss overflow float32): no eigenvalue to compute")
    if not np.any(w):
        return ZeroCurvature("the Hessian is zero to float32 precision at this model")
    return LandscapeError("ARPACK stopped at its first step (a start vector it could not "
                          "use); try another --seed")


def _zero_ends(op: CurvatureOperator, k: int, rng: np.random.Generator):
    """``k`` zero eigenvalues with orthonormal vectors: the answer for a zero operator (every
    direction is an eigenvector), with a warning that says why."""
    warnings.warn("the Hessian-vector products are exactly zero at this model (the softmax "
                  "is saturated: every example's loss is 0 in float32, as after scaling the "
                  "weights up): its eigenvalues are 0 to float32 precision", stacklevel=4)
    vecs, _ = np.linalg.qr(rng.standard_normal((op.n_params, k)))
    vals = np.zeros(k)
    return vals, vecs, op.residuals(vals, vecs), True


def _dense_small(op: CurvatureOperator) -> np.ndarray:
    """The whole Hessian by n products (for Hessians too small for eigsh)."""
    h = np.stack([op.matvec(e) for e in np.eye(op.n_params)], axis=1)
    return 0.5 * (h + h.T)


def _lanczos_ends(op: CurvatureOperator, k_large: int, k_small: int, tol: float,
                  bottom_tol: float, ncv: int | None, maxiter: int | None,
                  rng: np.random.Generator):
    n = op.n_params
    if max(k_large, k_small) >= n - 1 or n <= 2 * (k_large + k_small) + 2:
        vals, vecs = np.linalg.eigh(_dense_small(op))
        pick = np.r_[np.arange(k_small), np.arange(n - k_large, n)].astype(int)
        pick = np.unique(pick)
        return vals[pick], vecs[:, pick], op.residuals(vals[pick], vecs[:, pick]), True
    try:
        return _lanczos_parts(op, k_large, k_small, tol, bottom_tol, ncv, maxiter, rng)
    except ZeroCurvature:
        return _zero_ends(op, k_large + k_small, rng)


def _lanczos_parts(op: CurvatureOperator, k_large: int, k_small: int, tol: float,
                   bottom_tol: float, ncv: int | None, maxiter: int | None,
                   rng: np.random.Generator):
    """The top end by eigsh, the bottom end by ``_bottom_end``, concatenated."""
    n = op.n_params
    parts, converged, top = [], True, None
    if k_large:
        vals, vecs, ok = _eigsh(op, k_large, "LA", tol, ncv, maxiter, gaussian_vector(rng, n))
        parts.append((vals, vecs))
        converged &= ok
        top = float(np.max(vals))
    if k_small:
        vals, vecs, ok = _bottom_end(op, k_small, bottom_tol, top, ncv, maxiter, rng)
        parts.append((vals, vecs))
        converged &= ok
    vals = np.concatenate([p[0] for p in parts])
    vecs = np.concatenate([p[1] for p in parts], axis=1)
    return vals, vecs, op.residuals(vals, vecs), converged


def _bottom_end(op: CurvatureOperator, k: int, tol: float, top: float | None, ncv: int | None,
                maxiter: int | None, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ``k`` smallest eigenpairs, each Ritz residual below ``tol`` times the width.

    Lanczos without restarts first: on a dense cluster near zero it needs far fewer products
    than restarted eigsh (MNIST-1D CNN, width-relative 1e-5: 135 against 1,045). eigsh on the
    shifted operator takes over from the best Ritz vectors if the step limit comes first.
    """
    n = op.n_params
    steps = min(n, maxiter or 1000, max(20, BASIS_BUDGET // n))

    def width(theta: np.ndarray) -> float:
        high = theta[-1] if top is None else max(top, theta[-1])
        return max(high - theta[0], 1e-300)

    def done(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        return len(theta) >= k and bool(np.all(beta * np.abs(s[-1, :k]) <= tol * width(theta)))

    keep: dict[str, np.ndarray] = {}
    theta, s, m = lanczos(op.matvec, gaussian_vector(rng, n), steps, stop=done, check_every=5,
                          out=keep)
    vecs = keep["basis"].T @ s[:, :k]
    if m == n or done(theta, s, keep["beta"]):  # a closed Krylov space is exact
        return theta[:k], vecs, True
    shift = max(top if top is not None else theta[-1], 0.0)
    wide = ncv or min(n, max(2 * k + 1, 40))
    vals, vecs, ok = _eigsh(ShiftedOperator(op, shift), k, "SA", tol, wide, None,
                            vecs.sum(axis=1))
    return vals + shift, vecs, ok


def _power_ends(op: CurvatureOperator, k_large: int, k_small: int, tol: float,
                bottom_tol: float, maxiter: int | None, rng: np.random.Generator):
    """Power iteration with deflation; the bottom end on ``H - top I`` (to ``bottom_tol``)."""
    maxiter = maxiter or 100
    vals, vecs, res, converged = [], [], [], True
    top = None
    if k_large or k_small:
        v, u, r, ok = _power(op.matvec, max(k_large, 1), tol, maxiter, rng, op.n_params)
        top = v[0]
        if k_large:
            vals += v
            vecs += u
            res += r
            converged &= ok
    if k_small:
        shift = max(top, 0.0)
        v, u, r, ok = _power(lambda x: op.matvec(x) - shift * x, k_small, bottom_tol, maxiter,
                             rng, op.n_params)
        vals += [x + shift for x in v]
        vecs += u
        res += r
        converged &= ok
    return np.array(vals), np.stack(vecs, axis=1), np.array(res), converged


def _power(apply: Callable[[np.ndarray], np.ndarray], k: int, tol: float, maxiter: int,
           rng: np.random.Generator, n: int):
    """Dominant eigenpairs one at a time, each deflated against the ones found before."""
    vals, vecs, res, converged = [], [], [], True
    for _ in range(k):
        w = gaussian_vector(rng, n)
        value, ok = None, False
        for _ in range(maxiter):
            for u in vecs:
                w -= (u @ w) * u
            v = w / np.linalg.norm(w)
            hv = apply(v)
            new = float(v @ hv)
            converged_now = value is not None and abs(new - value) <= tol * (abs(value) + 1e-12)
            value = new
            if converged_now:
                ok = True
                break
            w = hv.copy()
        vals.append(value)
        vecs.append(v)  # the last vector multiplied: unit norm, deflated
        res.append(float(np.linalg.norm(hv - value * v)))
        converged &= ok
    return vals, vecs, res, converged


def extreme_eigenvalues(model: nn.Module, data: Any, loss: LossArg = "cross_entropy",
                        seed: int = 0, tol: float = 1e-3) -> tuple[float, float]:
    """Algebraically largest and smallest Hessian eigenvalue, cheaply (one Krylov space).

    Meant for every point of a surface grid: no determinism check, no vectors, no residual
    products. Runs on the model's device in its dtype, in eval mode; the model is not touched.

    Args:
        model: the network.
        data: ``(inputs, targets)`` (or a DataBundle: its train split).
        loss: ``cross_entropy``, ``mse`` or a mean-reduced callable.
        seed: seed of the start vector.
        tol: both ends stop when their Ritz residual is below ``tol`` times the spectrum's
            width (largest minus smallest Ritz value).

    Returns:
        ``(lambda_max, lambda_min)`` as floats.
    """
    op = HessianOperator(model, data, loss)
    nodes, _, _ = extreme_lanczos(op, np.random.default_rng(seed), tol)
    return float(nodes[-1]), float(nodes[0])


@dataclasses.dataclass(frozen=True)
class TopEigenpair:
    """The largest Hessian eigenvalue from one Lanczos run (e.g. warm-started).

    Attributes:
        value: the top Ritz value (never above the largest eigenvalue).
        vector: its unit Ritz vector (flat, float64), the start of the next run.
        residual: ``||H v - value v||`` (an eigenvalue lies within it of ``value``).
        n_products: Hessian-vector products used.
        converged: True if the residual reached ``tol * |value|``.
        seconds: wall time.
    """

    value: float
    vector: np.ndarray
    residual: float
    n_products: int
    converged: bool
    seconds: float


def top_eigenpair(model: nn.Module, data: Any, start: np.ndarray | None = None, *,
                  tol: float = 1e-3, max_products: int = 100, min_products: int = 1,
                  seed: int = 0, loss: LossArg = "cross_entropy",
                  chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                  device: str | torch.device | None = None, curvature: str = "hessian"
                  ) -> TopEigenpair:
    """The largest eigenvalue of the Hessian (or of the GGN, the exact Fisher or the empirical
    Fisher: ``curvature``) by Lanczos (full reorthogonalization) from ``start``.

    Started from the previous top eigenvector of a slowly changing model (training, a
    neighbouring grid point), a few products suffice: the run stops as soon as the top Ritz
    residual is below ``tol`` times the Ritz value. Its error is then of the order of the
    squared residual over the gap to the second eigenvalue (1e-3 gives about 1e-6 relative
    on a gap of a tenth of the value).

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        start: start vector (any norm; None or zero: a Gaussian vector from ``seed``).
        tol: stopping residual relative to the top Ritz value.
        max_products: most products (Lanczos steps).
        min_products: fewest products: a Krylov space of a few vectors can find an eigenvalue
            that has overtaken the one ``start`` points at (any Ritz pair with a small
            residual is near *some* eigenpair, not necessarily the top one).
        seed: seed of the random start vector.
        loss, chunk, mode, device: as for ``HessianOperator``.
        curvature: ``hessian`` (default), ``ggn``, ``fisher`` (exact) or
            ``empirical-fisher`` (``OutputCurvatureOperator``).

    Returns:
        TopEigenpair.
    """
    check_choice(curvature, CURVATURES, "curvature")
    begin = time.perf_counter()
    if curvature == "hessian":
        op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device)
    else:
        op = OutputCurvatureOperator(model, data, loss, kind=curvature, chunk=chunk, mode=mode,
                                     device=device)
    pair = operator_top_eigenpair(op, start, tol=tol, max_products=max_products,
                                  min_products=min_products, seed=seed)
    return dataclasses.replace(pair, seconds=time.perf_counter() - begin)


def operator_top_eigenpair(op: CurvatureOperator, start: np.ndarray | None = None, *,
                           tol: float = 1e-3, max_products: int = 100, min_products: int = 1,
                           seed: int = 0) -> TopEigenpair:
    """``top_eigenpair`` of any symmetric ``CurvatureOperator`` (a Hessian, a preconditioned
    Hessian, ...): the same warm-started Lanczos run and stopping rule.

    Returns:
        TopEigenpair (``n_products`` counts the operator's products).
    """
    if max_products < 1:
        raise LandscapeError(f"max_products must be at least 1, got {max_products}")
    begin = time.perf_counter()
    v0 = None if start is None else np.asarray(start, dtype=np.float64).reshape(-1)
    if v0 is not None and v0.size != op.n_params:
        raise LandscapeError(f"start vector has {v0.size} entries, the operator has "
                             f"{op.n_params}")
    if v0 is None or not np.linalg.norm(v0) > 0:
        v0 = gaussian_vector(np.random.default_rng(seed), op.n_params)

    def done(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        return (len(theta) >= min_products
                and beta * abs(s[-1, -1]) <= tol * max(abs(theta[-1]), 1e-300))

    keep: dict[str, Any] = {}
    theta, s, _ = lanczos(op.matvec, v0, min(max_products, op.n_params), stop=done, out=keep)
    vector = keep["basis"].T @ s[:, -1]
    vector /= np.linalg.norm(vector)
    residual = float(keep["beta"] * abs(s[-1, -1]))
    return TopEigenpair(value=float(theta[-1]), vector=vector, residual=residual,
                        n_products=op.n_products,
                        converged=residual <= tol * max(abs(float(theta[-1])), 1e-300),
                        seconds=time.perf_counter() - begin)
