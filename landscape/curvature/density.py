"""Spectral density of the Hessian by stochastic Lanczos quadrature, and its smoothing.

Contract: ``hessian_density`` takes a network and its data (with ``HessianOptions``) or any
symmetric operator and returns a ``DensityResult`` whose density integrates to 1 on its grid;
``smooth_density`` and ``common_densities`` turn Ritz nodes and quadrature weights into
Gaussian-smoothed densities (``common_densities``: one kernel and one grid for several spectra,
as a figure comparing them needs).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .hessian import solver_operator
from .lanczos import lanczos, rademacher
from .options import HessianOptions


@dataclasses.dataclass(frozen=True, kw_only=True)
class DensityResult:
    """Smoothed spectral density from stochastic Lanczos quadrature.

    Attributes:
        grid: evaluation points (ascending).
        density: density on ``grid``; its trapezoid integral is 1.
        nodes: Ritz values of all probes, concatenated.
        weights: their quadrature weights (each probe's sum to 1 / n_probes; all sum to 1).
        sigma: standard deviation of the Gaussian kernel.
        n_products: Hessian-vector products used.
        n_probes: number of random probes.
        n_steps: Lanczos steps per probe (fewer if the Krylov space closed early).
        seconds: wall time.
        mode: ``eval`` or ``train``.
        n_params: dimension of the Hessian.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_products: int
    n_probes: int
    n_steps: int
    seconds: float
    mode: str
    n_params: int


def hessian_density(source: Any, data: Any = None, *, n_probes: int = 4, n_steps: int = 90,
                    seed: int = 0, sigma: float | None = None, grid_points: int = 1000,
                    options: HessianOptions | None = None) -> DensityResult:
    """Spectral density of the Hessian by stochastic Lanczos quadrature.

    Each probe (a Rademacher vector from ``seed``) runs ``n_steps`` Lanczos steps with full
    reorthogonalization; the tridiagonal matrix's eigenvalues (nodes) and squared first
    eigenvector components (weights) give a quadrature of the spectral measure; the average
    over probes is smoothed with a Gaussian of width ``sigma``.

    Args:
        source, data: as for ``hessian_eigenvalues`` (a network and its data, or an operator).
        n_probes: random probes (each costs ``n_steps`` products).
        n_steps: Lanczos steps per probe (80-100 is usual).
        seed: seed of the probes.
        sigma: kernel width; default 0.4% of the span of the nodes.
        grid_points: points of the evaluation grid (the nodes' span plus 6 sigma each side).
        options: how products are made from a network (``HessianOptions``).

    Returns:
        DensityResult (grid, density integrating to 1, nodes, weights, products).
    """
    if n_probes < 1 or n_steps < 1:
        raise LandscapeError("n_probes and n_steps must be at least 1")
    if grid_points < 3:
        raise LandscapeError("grid_points must be at least 3")
    if sigma is not None and not sigma > 0:
        raise LandscapeError(f"sigma must be positive, got {sigma}")
    start = time.perf_counter()
    op = solver_operator(source, data, options, record=False)
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    try:
        for _ in range(n_probes):
            probe = rademacher(rng, op.n_params, 1)[:, 0]
            theta, s, _ = lanczos(op.matvec, probe, min(n_steps, op.n_params))
            nodes.append(theta)
            weights.append(s[0] ** 2 / n_probes)
    finally:
        op.close()
    nodes_all, weights_all = np.concatenate(nodes), np.concatenate(weights)
    grid, density, sigma = smooth_density(nodes_all, weights_all, sigma, grid_points)
    return DensityResult(grid=grid, density=density, nodes=nodes_all, weights=weights_all,
                         sigma=sigma, n_products=op.n_products, n_probes=n_probes,
                         n_steps=max(len(t) for t in nodes), seconds=time.perf_counter() - start,
                         mode=op.mode, n_params=op.n_params)


def smooth_density(nodes: np.ndarray, weights: np.ndarray, sigma: float | None, points: int
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """Gaussian-smoothed density of weighted nodes on ``points`` grid points spanning the
    nodes plus 6 sigma each side.

    Args:
        nodes: Ritz values (any order).
        weights: their quadrature weights.
        sigma: kernel width; None: 0.4% of the span of the nodes.
        points: grid points.

    Returns:
        ``(grid, density, sigma)``: the density integrates to 1 on the grid.
    """
    span = float(nodes.max() - nodes.min())
    if sigma is None:
        sigma = 0.004 * span if span > 0 else 1e-3 * max(abs(float(nodes.max())), 1.0)
    grid = np.linspace(nodes.min() - 6 * sigma, nodes.max() + 6 * sigma, points)
    z = (grid[:, None] - nodes[None, :]) / sigma
    density = (np.exp(-0.5 * z ** 2) * weights).sum(axis=1) / (sigma * math.sqrt(2 * math.pi))
    density /= np.trapezoid(density, grid)  # the tails past 6 sigma are < 1e-8 of the mass
    return grid, density, float(sigma)


def common_densities(spectra: list[tuple[np.ndarray, np.ndarray]], sigma: float | None = None,
                     grid_points: int = 1000) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Smooth several spectra (Ritz nodes, quadrature weights) with ONE Gaussian kernel on
    ONE grid, so that a figure comparing them shows the same resolution for each.

    Args:
        spectra: ``(nodes, weights)`` per spectrum (``DensityResult.nodes/.weights``).
        sigma: kernel width; default 0.4% of the span of all nodes together.
        grid_points: points of the shared grid.

    Returns:
        ``(densities, grid, sigma)``: one density per spectrum (each integrates to 1).
    """
    if not spectra:
        raise LandscapeError("no spectra to smooth")
    nodes = [np.asarray(n, dtype=float).ravel() for n, _ in spectra]
    weights = [np.asarray(w, dtype=float).ravel() for _, w in spectra]
    every = np.concatenate(nodes)
    _, _, sigma = smooth_density(every, np.ones_like(every), sigma, 3)
    grid = np.linspace(every.min() - 6 * sigma, every.max() + 6 * sigma, grid_points)
    out = []
    for nd, wt in zip(nodes, weights):
        z = (grid[:, None] - nd[None, :]) / sigma
        dens = (np.exp(-0.5 * z ** 2) * wt).sum(axis=1)
        out.append(dens / np.trapezoid(dens, grid))
    return out, grid, sigma
