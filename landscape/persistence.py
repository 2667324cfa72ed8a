"""0-dimensional persistence of a sampled 1-D curve or 2-D surface: its minima, the saddle at
which each minimum's basin merges into a deeper one, the basin rule that separates basins from
noise, and a roughness number.

Contract: numpy arrays in, frozen dataclasses out; no model, no plotting. The sublevel sets
live on the grid graph (neighbours along the axes: 2 in 1-D, 4 in 2-D); NaN and inf are walls
that are never entered. Points are ordered by (value, flat index), so ties always break the
same way. Elder rule: when two basins meet, the one whose minimum comes later in that order
dies at the value of the meeting point, the saddle. The deepest minimum of each connected
region never dies (its ``saddle`` is None); its depth is the region's range.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from .errors import LandscapeError

RELATIVE = 1.0
FLOOR = 0.05

Index = tuple[int, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PersistencePair:
    """One minimum's life in the sublevel sets of a grid.

    Attributes:
        minimum: grid index of the minimum.
        birth: its value.
        saddle: grid index where its basin joins an older one; None for the deepest minimum
            of a connected region (it never dies).
        death: the value at the saddle; ``inf`` when ``saddle`` is None.
        into: grid index of the older minimum it joins (None when it never dies).
        peak: the highest value of its region when it never dies, else ``death``.
    """

    minimum: Index
    birth: float
    saddle: Index | None
    death: float
    into: Index | None
    peak: float

    @property
    def persistence(self) -> float:
        """``death - birth``: the barrier height (``inf`` for a minimum that never dies)."""
        return self.death - self.birth

    @property
    def depth(self) -> float:
        """The barrier height, or the region's range for a minimum that never dies."""
        return (self.death if self.saddle is not None else self.peak) - self.birth


def sweep(values: np.ndarray) -> list[PersistencePair]:
    """Union-find over the sublevel sets: one record for every finite grid point.

    A point that is not a minimum in the (value, index) order is born and joins a neighbour's
    basin at once (``saddle == minimum``, persistence 0); plateau points after the first are
    such points.

    Args:
        values: 1-D or 2-D array; NaN and inf are walls.

    Returns:
        One PersistencePair per finite point, in no particular order.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim not in (1, 2):
        raise LandscapeError(f"persistence needs a 1-D or 2-D array, got {arr.ndim}-D")
    flat = arr.reshape(-1)
    finite = np.isfinite(flat)
    order = np.argsort(np.where(finite, flat, np.inf), kind="stable")
    rank = np.empty(flat.size, dtype=np.int64)
    rank[order] = np.arange(flat.size)
    parent = np.full(flat.size, -1, dtype=np.int64)
    oldest: dict[int, int] = {}  # root -> flat index of its oldest minimum
    peak: dict[int, float] = {}  # root -> highest value joined so far
    dead: dict[int, tuple[int, int]] = {}  # minimum -> (saddle, older minimum)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for i in (int(k) for k in order[:int(finite.sum())]):
        parent[i] = i
        oldest[i], peak[i] = i, flat[i]
        for j in neighbours(i, arr.shape):
            if parent[j] < 0:
                continue
            ri, rj = root(i), root(j)
            if ri == rj:
                continue
            young, old = (ri, rj) if rank[oldest[ri]] > rank[oldest[rj]] else (rj, ri)
            dead[oldest[young]] = (i, oldest[old])
            parent[young] = old
            peak[old] = max(peak[old], peak[young], flat[i])
    return [_record(int(m), flat, arr.shape, dead.get(int(m)), peak.get(int(m)))
            for m in np.flatnonzero(finite)]


def _record(m: int, flat: np.ndarray, shape: tuple[int, ...], death: tuple[int, int] | None,
            peak: float | None) -> PersistencePair:
    ix = lambda k: tuple(int(v) for v in np.unravel_index(k, shape))  # noqa: E731
    if death is None:  # a root: the oldest minimum of its region
        return PersistencePair(minimum=ix(m), birth=float(flat[m]), saddle=None,
                               death=math.inf, into=None, peak=float(peak))
    saddle, into = death
    return PersistencePair(minimum=ix(m), birth=float(flat[m]), saddle=ix(saddle),
                           death=float(flat[saddle]), into=ix(into),
                           peak=float(flat[saddle]))


def persistence_pairs(values: np.ndarray) -> list[PersistencePair]:
    """The persistence pairs of positive persistence, deepest first (the diagram's points).

    Args:
        values: 1-D or 2-D array; NaN and inf are walls.

    Returns:
        PersistencePair list sorted by depth (largest first), then by birth.
    """
    pairs = [p for p in sweep(values) if p.persistence > 0]
    return sorted(pairs, key=lambda p: (-p.depth, p.birth))


def neighbours(i: int, shape: tuple[int, ...]) -> list[int]:
    """Flat indices of the grid neighbours of flat index ``i`` (2 in 1-D, 4 in 2-D)."""
    if len(shape) == 1:
        return [j for j in (i - 1, i + 1) if 0 <= j < shape[0]]
    r, c = divmod(i, shape[1])
    out = []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr, cc = r + dr, c + dc
        if 0 <= rr < shape[0] and 0 <= cc < shape[1]:
            out.append(rr * shape[1] + cc)
    return out


def basin_rule(vals: np.ndarray, threshold: float | None, relative: float, floor: float
               ) -> tuple[Callable[[float], float], float, str]:
    """The basin criterion: ``(need(value) -> depth, threshold at the lowest value, rule)``.

    A fraction of the whole range would let one far corner of the grid hide every basin; the
    relative rule looks only at each minimum's own value and barrier.

    Args:
        vals: the values (only their finite minimum is used).
        threshold: an absolute depth, or None for the relative rule.
        relative, floor: a minimum of value ``v`` needs depth ``relative * (max(v, 0) + floor)``.
    """
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        raise LandscapeError("no finite values: nothing to measure")
    if threshold is not None:
        thr = float(threshold)
        if thr < 0 or not math.isfinite(thr):
            raise LandscapeError(f"threshold must be >= 0, got {threshold}")
        return (lambda _v: thr), thr, f"depth >= {thr:g} (absolute)"
    for name, v in (("relative", relative), ("floor", floor)):
        if not (v >= 0 and math.isfinite(v)):
            raise LandscapeError(f"{name} must be >= 0, got {v}")
    lowest = float(finite.min())
    return ((lambda v: relative * (max(v, 0.0) + floor)), relative * (max(lowest, 0.0) + floor),
            f"depth >= {relative:g} x (value + {floor:g})")


def check_grid(x, values, y) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Validated ``(x, y, values)`` as float arrays: axes of at least 3 strictly increasing
    finite points, values of shape ``(len(x),)`` or ``(len(x), len(y))``."""
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PersistenceDiagram:
    """The persistence diagram of a curve or surface, on its coordinates.

    Attributes:
        axes: the grid's coordinates (one array per dimension).
        pairs: the pairs of positive persistence, deepest first.
        basins: for each pair, whether its depth passes the basin rule.
        rule: the basin rule in words.
        roughness: the share of the total persistence (each pair's depth, summed) carried
            by minima too shallow to be basins: 0 for a clean funnel or clean separate
            basins, near 1 for a rugged plateau.
        noise_persistence: the summed depth of those shallow minima.
    """

    axes: tuple[np.ndarray, ...]
    pairs: tuple[PersistencePair, ...]
    basins: tuple[bool, ...]
    rule: str
    roughness: float
    noise_persistence: float

    def at(self, index: Index | None) -> list[float] | None:
        """Coordinates of a grid index (None stays None)."""
        return None if index is None else [float(a[i]) for a, i in zip(self.axes, index)]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; a pair that never dies has ``death`` and ``saddle`` null."""
        def point(index: Index | None) -> dict[str, list] | None:
            return None if index is None else {"index": list(index), "at": self.at(index)}

        return {"ndim": len(self.axes), "rule": self.rule, "roughness": self.roughness,
                "noise_persistence": self.noise_persistence, "n_pairs": len(self.pairs),
                "n_basins": int(sum(self.basins)),
                "pairs": [{"birth": p.birth,
                           "death": None if p.saddle is None else p.death,
                           "persistence": None if p.saddle is None else p.persistence,
                           "depth": p.depth, "basin": b, "minimum": point(p.minimum),
                           "saddle": point(p.saddle), "merges_into": point(p.into)}
                          for p, b in zip(self.pairs, self.basins)]}


def persistence_diagram(x: np.ndarray, values: np.ndarray, y: np.ndarray | None = None, *,
                        threshold: float | None = None, relative: float = RELATIVE,
                        floor: float = FLOOR) -> PersistenceDiagram:
    """Persistence pairs of ``values`` on the grid ``x`` (and ``y``), with the basin rule of
    ``landscape.shape.basin_shape`` and the roughness.

    Args:
        x, y: increasing coordinates of the axes (``y`` only for 2-D values).
        values: shape ``(len(x),)`` or ``(len(x), len(y))``; NaN or inf are walls.
        threshold, relative, floor: the basin rule, as in ``basin_shape``.

    Returns:
        PersistenceDiagram.
    """
    xs, ys, vals = check_grid(x, values, y)
    need, _thr, rule = basin_rule(vals, threshold, relative, floor)
    pairs = persistence_pairs(vals)
    basins = tuple(bool(p.depth >= need(p.birth)) for p in pairs)
    total = sum(p.depth for p in pairs)
    noise = sum(p.depth for p, b in zip(pairs, basins) if not b)
    return PersistenceDiagram(axes=(xs,) if ys is None else (xs, ys), pairs=tuple(pairs),
                              basins=basins, rule=rule, noise_persistence=float(noise),
                              roughness=float(noise / total) if total > 0 else 0.0)
