"""Scales that let figures of several minima compare at a glance: a loss cap near the
minima, one colour normalization and one set of contour levels for all panels, round level
values and colour-bar ticks.

Numbers in, numbers (and matplotlib norms) out: nothing here draws.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import LogLocator, MaxNLocator

from ..errors import LandscapeError


def loss_cap(arrays: Sequence[np.ndarray], rise: float = 0.1) -> float:
    """A top for a loss axis or colour scale that shows every basin: near the minima, not at
    the grid's worst corner.

    The lowest of the arrays' lower quartiles (so the flattest panel's basin fills the range
    and a sharp one's shows as a smaller one), raised to at least the lowest value plus
    ``2 rise``
    (so every basin's edge at ``+rise`` is inside), rounded up to 1, 2 or 5 times a power of
    ten, and never above the largest value.

    Args:
        arrays: the values of each curve or panel (NaN ignored).
        rise: the loss rise that bounds a basin.

    Returns:
        The cap.
    """
    parts = [np.asarray(a, float).ravel() for a in arrays]
    parts = [p[np.isfinite(p)] for p in parts]
    parts = [p for p in parts if p.size]
    if not parts:
        raise LandscapeError("no computed points to plot")
    lowest = min(float(p.min()) for p in parts)
    highest = max(float(p.max()) for p in parts)
    cap = _round_up(max(min(float(np.quantile(p, 0.25)) for p in parts), lowest + 2 * rise))
    return cap if cap < highest else highest


def _round_up(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value`` (> 0)."""
    if not value > 0:
        return value
    decade = 10.0 ** np.floor(np.log10(value))
    return float(next(m * decade for m in (1, 2, 5, 10) if m * decade >= value * (1 - 1e-12)))


def is_round(value: float) -> bool:
    """Two significant digits at most (0.5, 1.5, 20, 0.02; not 0.538119)."""
    return value != 0 and np.isclose(value, float(f"{value:.2g}"), rtol=1e-9, atol=0)


def shared_scale(arrays: Sequence[np.ndarray], levels: int | Sequence[float] = 20,
                 log: bool = False, vmin: float | None = None,
                 vmax: float | None = None) -> tuple[Normalize, np.ndarray]:
    """One colour normalization and one set of contour levels for several panels.

    Args:
        arrays: the values of every panel (NaN ignored).
        levels: number of levels, or the levels themselves.
        log: logarithmic levels and colours (non-positive values are left out).
        vmin, vmax: colour limits; default the smallest and largest computed value. A ``vmax``
            below the largest value clips: higher values take the top colour.

    Returns:
        ``(norm, levels)``.
    """
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    if log:
        vals = vals[vals > 0]
    if vals.size == 0:
        raise LandscapeError("no computed points to plot" + (" (none positive for a log scale)"
                                                             if log else ""))
    lo = float(vals.min()) if vmin is None else float(vmin)
    hi = float(vals.max()) if vmax is None else float(vmax)
    if log and lo <= 0:
        lo = float(vals.min())
    if not lo < hi:
        if vmin is not None and vmax is not None:
            raise LandscapeError(f"vmin ({vmin}) must be smaller than vmax ({vmax})")
        if vmax is not None:
            raise LandscapeError(f"vmax ({vmax}) must be above the smallest value ({lo:.4g})")
        lo, hi = (lo, lo * 10) if log else (lo, lo + max(abs(lo), 1.0) * 1e-3)
    if np.ndim(levels) == 0:
        n = int(levels)
        if n < 2:
            raise LandscapeError(f"levels must be at least 2, got {n}")
        level_arr = _nice_log_levels(lo, hi, n) if log else _nice_levels(lo, hi, n)
    else:
        level_arr = np.unique(np.asarray(levels, dtype=float))
        if level_arr.size < 2:
            raise LandscapeError("give at least two contour levels")
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    return norm, level_arr


def _nice_levels(lo: float, hi: float, n: int) -> np.ndarray:
    """About ``n`` round-numbered levels from ``lo`` to ``hi`` (both ends kept, so filled
    contours cover every value in range)."""
    inner = MaxNLocator(nbins=max(n - 1, 1), steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    inner = inner[(inner > lo + 1e-9 * span) & (inner < hi - 1e-9 * span)]
    return np.concatenate([[lo], inner, [hi]])


_LOG_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
                  (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0))


def _nice_log_levels(lo: float, hi: float, n: int) -> np.ndarray:
    """About ``n`` round levels (1, 2, 5 x 10^k and finer) spaced about evenly on a log
    scale from ``lo`` to ``hi`` (both ends kept, as in ``_nice_levels``)."""
    decades = np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    inner = np.array([])
    for mantissas in _LOG_MANTISSAS:
        values = np.array([m * 10.0 ** d for d in decades for m in mantissas])
        inner = values[(values > lo * (1 + 1e-9)) & (values < hi * (1 - 1e-9))]
        if len(inner) >= n - 2:
            break
    return np.concatenate([[lo], inner, [hi]])


def colorbar_ticks(norm: Normalize) -> np.ndarray:
    """Round tick values inside ``norm``'s range (1, 2, 5 per decade on a log scale)."""
    lo, hi = norm.vmin, norm.vmax
    if isinstance(norm, LogNorm):
        ticks = LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
        if np.sum((ticks >= lo) & (ticks <= hi)) > 8:
            ticks = LogLocator(subs=(1.0,)).tick_values(lo, hi)
    else:
        ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    return ticks[(ticks >= lo - 1e-9 * span) & (ticks <= hi + 1e-9 * span)]
