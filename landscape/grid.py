"""A surface as data: metric values on a 1-D or 2-D grid, and the numbering of its points.

``Surface`` is what computation produces, files store and figures draw; it holds arrays only.
Grid points are numbered in C order (``p = i * len(y) + j``), so that any subset of a grid
(a resumed run's missing points, one process's share) is a list of integers.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from .errors import LandscapeError

MAX_POINTS = 10_000_000
"""Most grid points a surface may have (a 3,162 x 3,162 plane)."""


@dataclasses.dataclass(frozen=True)
class Surface:
    """Values of metrics on a 1-D or 2-D grid around a model.

    Attributes:
        x: 1-D coordinates along the first direction.
        y: 1-D coordinates along the second direction, or None for a 1-D surface.
        metrics: name -> array of shape ``(len(x),)`` or ``(len(x), len(y))``; entry ``[i, j]``
            is the point ``x[i], y[j]``; NaN where not computed (or where the loss was NaN).
        done: bool array of the same shape; True where the point has been computed.
        provenance: how it was made (command, seeds, versions, hashes, ...).
        path: the file it was read from or written to, if any.
        trajectory: optional overlay of a training path (``landscape trajectory``):
            ``coords`` (n, 2), ``explained_variance_ratio`` (2,), ``labels`` (n,),
            ``epochs`` (n,).
        anchors: optional coordinates of the models that define the directions
            (``interpolate``, ``plane``): ``coords`` (m, ndim), ``labels`` (m,).
    """

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    done: np.ndarray
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: str | None = None
    trajectory: dict[str, np.ndarray] | None = None
    anchors: dict[str, np.ndarray] | None = None

    @property
    def ndim(self) -> int:
        """1 for a line, 2 for a plane."""
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape."""
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))

    @property
    def complete(self) -> bool:
        """True when every grid point is computed."""
        return bool(np.all(self.done))

    @property
    def nonfinite(self) -> int:
        """Number of computed points where some metric is NaN or infinite."""
        bad = np.zeros(self.shape, dtype=bool)
        for values in self.metrics.values():
            bad |= ~np.isfinite(values)
        return int(np.sum(bad & self.done))

    def summary(self, metric: str | None = None) -> dict[str, Any]:
        """Counts and the minimum of one metric.

        Args:
            metric: the metric to minimize (default: the first ``*_loss``, else the first).

        Returns:
            dict with ``points``, ``done``, ``nonfinite``, ``metric``, ``min`` (NaN if no
            finite value) and ``argmin`` (coordinates of the minimum, or None).
        """
        names = list(self.metrics)
        if metric is None:
            metric = next((m for m in names if m.endswith("loss")), names[0] if names else None)
        out = {"points": int(np.prod(self.shape)), "done": int(np.sum(self.done)),
               "nonfinite": self.nonfinite, "metric": metric, "min": float("nan"),
               "argmin": None}
        if metric is None:
            return out
        values = np.where(self.done & np.isfinite(self.metrics[metric]), self.metrics[metric],
                          np.inf)
        if np.isfinite(values).any():
            idx = np.unravel_index(int(np.argmin(values)), self.shape)
            out["min"] = float(values[idx])
            out["argmin"] = (float(self.x[idx[0]]),) if self.y is None else (
                float(self.x[idx[0]]), float(self.y[idx[1]]))
        return out


def grid_coords(x: np.ndarray, y: np.ndarray | None, point: int) -> tuple[float, ...]:
    """Coordinates of grid point number ``point`` (C order)."""
    if y is None:
        return (float(x[point]),)
    i, j = divmod(int(point), len(y))
    return (float(x[i]), float(y[j]))


def select_points(total: int, done: np.ndarray | None = None,
                  points: Iterable[int] | None = None, rank: int = 0, world_size: int = 1
                  ) -> list[int]:
    """The grid points one process should compute, in increasing order.

    Args:
        total: number of grid points.
        done: flat bool mask of points already computed (skipped).
        points: restrict to these point numbers.
        rank, world_size: keep only points with ``p % world_size == rank``.

    Returns:
        Sorted point numbers.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise LandscapeError(f"rank {rank} is not in 0..{world_size - 1}")
    chosen = range(total) if points is None else sorted({int(p) for p in points})
    out = []
    for p in chosen:
        if not 0 <= p < total:
            raise LandscapeError(f"point {p} is outside the grid of {total} points")
        if p % world_size == rank and (done is None or not done[p]):
            out.append(p)
    return out


def check_axis(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array of coordinates finite in float32 (LandscapeError
    otherwise)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) < 1:
        raise LandscapeError(f"axis {name} must be a 1-D sequence of coordinates")
    if not np.all(np.isfinite(arr)):
        raise LandscapeError(f"axis {name} has non-finite coordinates")
    if np.any(np.abs(arr) > np.finfo(np.float32).max):
        raise LandscapeError(f"axis {name} has coordinates beyond float32's range "
                             f"(+-{np.finfo(np.float32).max:.4g}): the weights they move are "
                             "float32 numbers")
    return arr


def grid_size(x: np.ndarray, y: np.ndarray | None) -> int:
    """Number of points of the grid ``x`` (x ``y``); LandscapeError above ``MAX_POINTS``."""
    points = len(x) * (1 if y is None else len(y))
    if points > MAX_POINTS:
        raise LandscapeError(f"the grid has {points:,} points, more than {MAX_POINTS:,}: use "
                             "fewer points per axis")
    return points


def probe_points(x: np.ndarray, y: np.ndarray | None) -> list[tuple[float, ...]]:
    """The origin and the grid's corners (where a reduced precision's error is measured)."""
    if y is None:
        return [(0.0,), (float(x[0]),), (float(x[-1]),)]
    return [(0.0, 0.0)] + [(float(a), float(b)) for a in (x[0], x[-1]) for b in (y[0], y[-1])]


def describe_axis(axis: np.ndarray | None) -> str:
    """``min:max:num`` for evenly spaced axes, else the point count."""
    if axis is None:
        return "none"
    axis = np.asarray(axis)
    if len(axis) >= 2 and np.allclose(np.diff(axis), (axis[-1] - axis[0]) / (len(axis) - 1)):
        return f"{axis[0]:g}:{axis[-1]:g}:{len(axis)}"
    return f"{len(axis)} points"


def auto_axis(values: Any, num: int = 21, *, through: bool = False) -> np.ndarray:
    """An axis covering ``values`` and 0 with a quarter of the span as margin on each side
    (the default axes of planes through models and of trajectory planes); with ``through``,
    each of ``values`` lies on it (``axis_through``)."""
    values = np.concatenate([np.asarray(values, dtype=float).ravel(), [0.0]])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.25 * (hi - lo) if hi > lo else 1.0
    if through:
        return axis_through(lo - pad, hi + pad, num, values)
    return np.linspace(lo - pad, hi + pad, num)


def summary_line(surface: Surface, seconds: float | None = None) -> str:
    """One line: points, seconds, NaN/inf count, the minimum loss and where."""
    s = surface.summary()
    secs = surface.provenance.get("seconds", 0.0) if seconds is None else seconds
    where = ("" if s["argmin"] is None else
             " at " + ", ".join(f"{a}={v:.4g}" for a, v in zip("xy", s["argmin"])))
    rate = s["done"] / secs if secs and secs > 0 else float("nan")
    minimum = f"min {s['metric']} {s['min']:.6g}{where}" if s["metric"] else "no metrics"
    sampling = "".join(f"; {split} loss at the origin {e['loss']:.4g} +- {e['stderr']:.2g} "
                       f"(sampling error over {e['examples']} examples)"
                       for split, e in surface.provenance.get("sampling_error", {}).items())
    return (f"{s['done']}/{s['points']} points in {secs:.1f} s ({rate:.3g} points/s), "
            f"{s['nonfinite']} NaN/inf, {minimum}{sampling}")


def axis_through(start: float, stop: float, num: int, points: Iterable[float]) -> np.ndarray:
    """``num`` evenly spaced coordinates from ``start`` to ``stop``, with the nearest one to
    each of ``points`` moved onto it, so that the grid passes exactly through those points
    (the models a plane is drawn through): a basin counted on it then rests on their losses,
    not on grid points that straddle them. Two points sharing a nearest coordinate both
    appear (the axis gains a point), and so does a point nearest an end (the ends stay, so
    the margin beyond the models does).

    Args:
        start, stop, num: as in ``numpy.linspace``.
        points: coordinates to lie on the axis, inside ``[start, stop]``.

    Returns:
        The increasing coordinates (evenly spaced except next to the moved points).
    """
    axis = [float(v) for v in np.linspace(start, stop, num)]
    moved: set[int] = set()
    extra = []
    for p in (float(v) for v in points):
        if not start <= p <= stop:
            raise LandscapeError(f"point {p:g} lies outside the axis [{start:g}, {stop:g}]")
        k = int(np.argmin([abs(a - p) for a in axis]))
        if k in moved or (k in (0, num - 1) and p != axis[k]):  # the ends stay: margin kept
            extra.append(p)
        else:
            axis[k] = p
            moved.add(k)
    return np.unique(np.array(axis + extra, dtype=np.float64))
