"""Barrier matrices of N minima: the straight-line barrier between every pair, in training
loss and in test error, and the minima grouped into basins by the basin rule.

Contract: ``matrix_from_paths`` is pure (arrays along each pair's path in, a frozen
``BarrierMatrix`` out); ``barrier_matrix`` evaluates the lines (and, when asked, trains a
Bezier curve per pair with ``landscape.connect``) and then calls it. A pair's barrier is
``landscape.shape.path_barrier`` of its path: the highest value minus the higher end. Two
minima are one basin when their barrier stays below the basin rule of
``landscape.persistence.basin_rule`` at the higher end's loss (the shallower minimum would
not count as a basin of its own); the groups are the connected components of those pairs,
so a chain A~B~C is one valley even where A and C alone would not pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import LandscapeError
from .persistence import FLOOR, RELATIVE, basin_rule
from .shape import path_barrier

__all__ = ["BarrierMatrix", "matrix_from_paths", "basin_groups", "path_values",
           "straight_line", "barrier_matrix"]

Pair = tuple[int, int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BarrierMatrix:
    """Barriers between every pair of N minima.

    Attributes:
        labels: names of the minima.
        train_barrier: (N, N) straight-line barrier of the training loss; symmetric, zero
            diagonal (NaN where a path had no finite value).
        test_error_barrier: (N, N) the same for the test error (1 - test accuracy).
        train_loss, test_error: (N,) the values at each minimum (its path ends).
        connected: (N, N) whether a pair's training barrier is below the basin rule.
        groups: the basins: tuples of indices, connected components of ``connected``.
        rule: the basin rule in words.
        curve_train_barrier, curve_test_error_barrier: the same along a trained curve per
            pair (None when no curves were trained).
    """

    labels: tuple[str, ...]
    train_barrier: np.ndarray
    test_error_barrier: np.ndarray
    train_loss: np.ndarray
    test_error: np.ndarray
    connected: np.ndarray
    groups: tuple[tuple[int, ...], ...]
    rule: str
    curve_train_barrier: np.ndarray | None = None
    curve_test_error_barrier: np.ndarray | None = None

    def group_labels(self) -> list[list[str]]:
        """The basins by the minima's labels."""
        return [[self.labels[i] for i in g] for g in self.groups]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (NaN as null); ``groups`` by label, with whether every pair
        inside a group passes on its own (``direct``) or only through a chain."""
        def grid(a):
            return None if a is None else [[_num(v) for v in row] for row in a]

        return {"labels": list(self.labels), "rule": self.rule,
                "train_barrier": grid(self.train_barrier),
                "test_error_barrier": grid(self.test_error_barrier),
                "train_loss": [_num(v) for v in self.train_loss],
                "test_error": [_num(v) for v in self.test_error],
                "connected": self.connected.tolist(),
                "groups": [{"members": names, "direct": bool(all(
                    self.connected[i, j] for i in g for j in g))}
                    for g, names in zip(self.groups, self.group_labels())],
                "n_basins": len(self.groups),
                "curve_train_barrier": grid(self.curve_train_barrier),
                "curve_test_error_barrier": grid(self.curve_test_error_barrier)}


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def path_values(surface) -> dict[str, np.ndarray]:
    """``train_loss`` and ``test_error`` along a path (a 1-D Surface with ``train_loss``
    and ``test_acc``), first and last entries at its two minima."""
    missing = [m for m in ("train_loss", "test_acc") if m not in surface.metrics]
    if missing:
        raise LandscapeError(f"path lacks {', '.join(missing)}: barriers need the training "
                             "loss and the test accuracy")
    return {"train_loss": np.asarray(surface.metrics["train_loss"], dtype=float),
            "test_error": 1.0 - np.asarray(surface.metrics["test_acc"], dtype=float)}


def basin_groups(connected: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Connected components of a symmetric boolean adjacency matrix, each sorted, ordered by
    their first member."""
    n = len(connected)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if connected[i, j]:
                parent[max(root(i), root(j))] = min(root(i), root(j))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return tuple(tuple(g) for g in sorted(groups.values()))


def matrix_from_paths(paths: Mapping[Pair, Mapping[str, np.ndarray]], labels: Sequence[str],
                      *, curves: Mapping[Pair, Mapping[str, np.ndarray]] | None = None,
                      threshold: float | None = None, relative: float = RELATIVE,
                      floor: float = FLOOR) -> BarrierMatrix:
    """The barrier matrix from the values along each pair's path.

    Args:
        paths: ``(i, j) -> {"train_loss": array, "test_error": array}`` for every pair
            ``i < j``, sampled from minimum ``i`` (first entry) to minimum ``j`` (last).
        labels: names of the N minima (N >= 2).
        curves: the same along a trained curve per pair, or None.
        threshold, relative, floor: the basin rule (``landscape.persistence.basin_rule``):
            a pair is one basin when its barrier is below the depth the rule asks of a
            minimum at the higher end's training loss.

    Returns:
        BarrierMatrix.
    """
    n = len(labels)
    if n < 2:
        raise LandscapeError(f"a barrier matrix needs at least two minima, got {n}")
    want = {(i, j) for i in range(n) for j in range(i + 1, n)}
    for name, given in (("paths", paths), ("curves", curves)):
        if given is not None and set(given) != want:
            raise LandscapeError(f"{name} must hold every pair (i, j), i < j, of {n} minima")
    ends = {"train_loss": np.full(n, np.nan), "test_error": np.full(n, np.nan)}
    for (i, j), p in sorted(paths.items()):
        for key, end in ends.items():
            vals = np.asarray(p[key], dtype=float).reshape(-1)
            end[i] = vals[0] if np.isnan(end[i]) else end[i]
            end[j] = vals[-1] if np.isnan(end[j]) else end[j]
    need, _thr, rule = basin_rule(np.concatenate([np.asarray(p["train_loss"], dtype=float)
                                                  for p in paths.values()]),
                                  threshold, relative, floor)
    train, test = (_matrix(paths, n, key) for key in ("train_loss", "test_error"))
    connected = np.eye(n, dtype=bool)
    for (i, j), p in paths.items():
        loss = np.asarray(p["train_loss"], dtype=float).reshape(-1)
        higher = max(loss[0], loss[-1])
        connected[i, j] = connected[j, i] = bool(np.isfinite(train[i, j])
                                                 and train[i, j] < need(higher))
    return BarrierMatrix(
        labels=tuple(labels), train_barrier=train, test_error_barrier=test,
        train_loss=ends["train_loss"], test_error=ends["test_error"], connected=connected,
        groups=basin_groups(connected), rule=rule,
        curve_train_barrier=None if curves is None else _matrix(curves, n, "train_loss"),
        curve_test_error_barrier=None if curves is None else _matrix(curves, n, "test_error"))


def _matrix(paths: Mapping[Pair, Mapping[str, np.ndarray]], n: int, key: str) -> np.ndarray:
    """Symmetric (n, n) ``path_barrier`` of ``key`` per pair, zero diagonal."""
    out = np.zeros((n, n))
    for (i, j), p in paths.items():
        b = path_barrier(p[key])
        out[i, j] = out[j, i] = np.nan if b is None else b
    return out


def straight_line(model_a, model_b, bundle, *, points: int = 21, options=None, out=None,
                  names: Sequence[str] = ("A", "B"), force: bool = True):
    """The 1-D surface on the straight line from ``model_a`` (alpha 0) to ``model_b``
    (alpha 1), as compare's interpolation step evaluates it.

    Args:
        model_a, model_b: two networks of one architecture.
        bundle: the DataBundle.
        points: evaluation points on alpha in [0, 1] (at least 3).
        options: ``SurfaceOptions`` (default: train and test loss and accuracy).
        out: HDF5 file to write (None: kept in memory).
        names: labels of the two ends (the surface's anchors).
        force: overwrite an existing ``out``.

    Returns:
        Surface over alpha.
    """
    from .directions import interpolation_direction
    from .evaluate import METRICS
    from .surface import SurfaceOptions, compute_surface
    from .util import provenance

    if points < 3:
        raise LandscapeError(f"a path needs at least 3 points, got {points}")
    options = options or SurfaceOptions(metrics=METRICS)
    anchors = {"coords": np.array([[0.0], [1.0]]), "labels": np.array(list(names))}
    return compute_surface(model_a, bundle, [interpolation_direction(model_a, model_b)],
                           x=np.linspace(0.0, 1.0, points), options=options, out=out,
                           force=force, anchors=anchors,
                           provenance=provenance(step="straight line", endpoints=list(names)))


def barrier_matrix(models: Sequence, bundle, *, labels: Sequence[str] | None = None,
                   points: int = 21, options=None, connect_options=None,
                   threshold: float | None = None, relative: float = RELATIVE,
                   floor: float = FLOOR,
                   log: Callable[[str], None] | None = None) -> BarrierMatrix:
    """Measure the barrier between every pair of ``models``.

    Args:
        models: N >= 2 networks of one architecture.
        bundle: the DataBundle (train and test splits).
        labels: their names (default ``m0``, ``m1``, ...).
        points: points per straight line, alpha in [0, 1].
        options: ``SurfaceOptions`` of the lines (metrics: train and test loss and accuracy).
        connect_options: a ``landscape.connect.ConnectOptions`` to also train a curve per
            pair (N (N - 1) / 2 trainings), or None for the straight lines only.
        threshold, relative, floor: the basin rule (see ``matrix_from_paths``).
        log: called with a line per pair (None: silent).

    Returns:
        BarrierMatrix.
    """
    from .evaluate import METRICS
    from .surface import SurfaceOptions

    labels = list(labels) if labels is not None else [f"m{i}" for i in range(len(models))]
    if len(labels) != len(models):
        raise LandscapeError(f"{len(labels)} labels for {len(models)} models")
    options = dataclasses.replace(options or SurfaceOptions(), metrics=METRICS)
    say = log or (lambda _m: None)
    paths, curves = {}, ({} if connect_options is not None else None)
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            names = (labels[i], labels[j])
            say(f"straight line {names[0]} -> {names[1]}")
            paths[i, j] = path_values(straight_line(models[i], models[j], bundle,
                                                    points=points, options=options,
                                                    names=names))
            if curves is not None:
                from .connect import connect

                say(f"curve {names[0]} -> {names[1]} ({connect_options.epochs} epochs)")
                result = connect(models[i], models[j], bundle, options=dataclasses.replace(
                    connect_options, line=False), progress=options.progress, names=names)
                curves[i, j] = path_values(result.curve)
    return matrix_from_paths(paths, labels, curves=curves, threshold=threshold,
                             relative=relative, floor=floor)
