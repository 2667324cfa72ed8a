"""Basin shape of a 1-D curve or 2-D surface: how many basins, how wide and curved the central
one is, and a "V" (one funnel) or "W" (several basins) label.

Works on numpy arrays alone (no model): a persistence count of local minima, the width of the
central basin where the values rise by ``rise`` above its bottom, and the curvature at its
centre.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from .errors import LandscapeError
from .persistence import (FLOOR, RELATIVE, PersistenceDiagram, basin_rule, check_grid,
                          neighbours, persistence_diagram, sweep)


@dataclasses.dataclass(frozen=True, kw_only=True)
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
        threshold: the depth the lowest minimum needs to count as a basin (under the
            relative rule each minimum's own threshold grows with its value).
        rule: the basin criterion in words, e.g. ``"depth >= 1 x (value + 0.05)"`` or
            ``"depth >= 0.5 (absolute)"``.
        barriers: for every basin but the deepest, ``(coordinates, saddle)``: the level of
            the lowest barrier (saddle) over which it joins a deeper basin; the barrier height
            is ``saddle - value``, its depth.
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
    rule: str = ""
    barriers: tuple[tuple[tuple[float, ...], float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        out = dataclasses.asdict(self)
        out["minima"] = [{"at": list(c), "value": v, "depth": d} for c, v, d in self.minima]
        out["barriers"] = [{"at": list(c), "saddle": s} for c, s in self.barriers]
        for key in ("center", "axis_widths", "radii", "curvature", "grid_steps", "min_at"):
            out[key] = list(out[key])
        return out


def basin_minima(values: np.ndarray) -> list[tuple[tuple[int, ...], float, float]]:
    """Local minima of a 1-D or 2-D array with their depth (0-dimensional persistence of the
    sublevel sets, ``landscape.persistence``: the level at which a minimum's basin merges
    with a deeper one, minus its value). The grid's border is a wall; non-finite entries are
    walls too. The deepest minimum of each connected region gets the region's range as its
    depth.

    Args:
        values: 1-D or 2-D array.

    Returns:
        ``(index, value, depth)`` for every local minimum, deepest first.
    """
    arr = np.asarray(values, dtype=float)
    flat = arr.reshape(-1)
    minima = [(p.minimum, p.birth, p.depth) for p in sweep(arr)
              if _is_local_min(int(np.ravel_multi_index(p.minimum, arr.shape)), flat, arr.shape)]
    return sorted(minima, key=lambda m: (-m[2], m[1]))


def _is_local_min(i: int, flat: np.ndarray, shape: tuple[int, ...]) -> bool:
    # Points born in the union-find that immediately merge (a plateau or slope point joining
    # an existing basin at its own level) have depth 0; keep only true local minima.
    return all(flat[i] <= flat[j] or not np.isfinite(flat[j]) for j in neighbours(i, shape))




def basin_shape(x: np.ndarray, values: np.ndarray, y: np.ndarray | None = None, *,
                rise: float = 0.1, threshold: float | None = None,
                relative: float = RELATIVE, floor: float = FLOOR,
                center: Sequence[float] | float = 0.0, directions: int = 16) -> BasinShape:
    """Basin count, central width and curvature of a curve ``values[i] = f(x[i])`` or a surface
    ``values[i, j] = f(x[i], y[j])``, with a V / W label.

    Args:
        x: increasing coordinates of the first axis.
        values: shape ``(len(x),)`` or ``(len(x), len(y))``; NaN or inf are walls.
        y: increasing coordinates of the second axis (2-D only).
        rise: the central basin ends where the value first exceeds the centre's by ``rise``.
        threshold: depth every minimum needs to count as a basin (absolute). None (the
            default): the relative rule below, set by the loss near each minimum, so that
            the count does not depend on how far the grid reaches.
        relative, floor: the relative rule: a minimum of value ``v`` counts when its depth
            (the barrier over which it joins a deeper basin) is at least
            ``relative * (v + floor)``: with the defaults, the barrier at least doubles the
            loss, and is at least ``floor`` high. Noise of amplitude ``a`` makes minima at
            most about ``2a`` deep.
        center: the point (nearest grid point) taken as the centre, 0 (the model) by default.
        directions: rays from the centre in 2-D, a multiple of 4 (widths average over them).

    Returns:
        BasinShape.
    """
    xs, ys, vals = check_grid(x, values, y)
    need, thr, rule = basin_rule(vals, threshold, relative, floor)
    if not (rise > 0 and math.isfinite(rise)):
        raise LandscapeError(f"rise must be a positive number, got {rise}")
    axes = (xs,) if ys is None else (xs, ys)
    idx = center_index(axes, center)
    minima = [m for m in basin_minima(vals) if m[2] >= need(m[1]) and m[2] > 0]
    at = lambda m: tuple(float(a[i]) for a, i in zip(axes, m[0]))  # noqa: E731
    n = len(minima)
    radii = _radii(axes, vals, idx, rise, directions)
    width, axis_widths = _widths(radii, len(axes))
    steps = tuple(_local_step(a, i) for a, i in zip(axes, idx))
    on_edge, min_idx = _minimum_on_edge(vals)
    resolved = not ((width is not None and width < 2.0 * max(steps))
                    or any(w is not None and w < 2.0 * h for w, h in zip(axis_widths, steps)))
    return BasinShape(
        label="flat" if n == 0 else ("V" if n == 1 else "W"), n_basins=n,
        minima=tuple((at(m), m[1], m[2]) for m in minima),
        barriers=tuple((at(m), m[1] + m[2]) for m in minima[1:]), rule=rule,
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


def center_index(axes: tuple[np.ndarray, ...], center: Sequence[float] | float
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
                  threshold: float | None = None, relative: float = RELATIVE,
                  floor: float = FLOOR, directions: int = 16) -> BasinShape:
    """``basin_shape`` of one metric of a ``landscape.surface.Surface``.

    Args:
        surface: a complete 1-D or 2-D Surface.
        metric: which loss (``train_loss``, ``test_loss``, ...); accuracies are refused, their
            minima are not basins.
        rise, threshold, relative, floor, directions: as in ``basin_shape``.

    Returns:
        BasinShape.
    """
    return basin_shape(surface.x, surface_values(surface, metric), surface.y, rise=rise,
                       threshold=threshold, relative=relative, floor=floor,
                       directions=directions)


def surface_diagram(surface, metric: str = "train_loss", *, threshold: float | None = None,
                    relative: float = RELATIVE, floor: float = FLOOR) -> PersistenceDiagram:
    """``landscape.persistence.persistence_diagram`` of one metric of a Surface: the
    persistence pairs with their saddles, the basin rule of ``surface_shape`` and the
    roughness.

    Args:
        surface: a complete 1-D or 2-D Surface.
        metric: which loss; accuracies are refused.
        threshold, relative, floor: the basin rule, as in ``basin_shape``.
    """
    return persistence_diagram(surface.x, surface_values(surface, metric), surface.y,
                               threshold=threshold, relative=relative, floor=floor)


def surface_values(surface, metric: str) -> np.ndarray:
    """The values of a loss metric of a complete Surface (clear errors otherwise)."""
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
    return surface.metrics[metric]


def path_barrier(values: np.ndarray) -> float | None:
    """Barrier of a path between two minima sampled from end to end: the highest value
    minus the higher of the two ends (0 when the path never rises above its ends; None when
    no value is finite).

    Args:
        values: the metric along the path, first and last entries at the two minima.
    """
    vals = np.asarray(values, dtype=float).reshape(-1)
    if vals.size < 2 or not np.isfinite(vals).any():
        return None
    ends = max(vals[0], vals[-1])
    return float(max(np.nanmax(vals) - ends, 0.0))


def _is_accuracy(metric: str) -> bool:
    """``train_acc``, ``test_acc`` and other accuracy metrics (higher is better)."""
    return metric.lower().rsplit("_", 1)[-1] in ("acc", "accuracy")
