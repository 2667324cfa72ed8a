"""Loss surfaces over 1-D and 2-D grids of parameter-space offsets.

``compute_surface`` evaluates metrics at every point ``theta + x[i] d1 (+ y[j] d2)`` of a
grid. Grid points are numbered in C order (``p = i * len(y) + j``); the point loop works on
any subset of those numbers (``points=``, or ``rank``/``world_size`` for the round-robin
share ``p % world_size == rank``), so runs can be split across processes. With ``store=``
the results are checkpointed to an HDF5 file (``landscape.store``) at most every
``checkpoint_seconds`` and at the end; ``resume=True`` computes only the points the file
lacks, after checking that it was made from the same model, directions, data, grid and
settings.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np


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
    from .errors import LandscapeError

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


def _axis(values: Any, name: str) -> np.ndarray:
    from .errors import LandscapeError

    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) < 1:
        raise LandscapeError(f"axis {name} must be a 1-D sequence of coordinates")
    if not np.all(np.isfinite(arr)):
        raise LandscapeError(f"axis {name} has non-finite coordinates")
    return arr


def compute_surface(model, data, directions, x, y=None,
                    metrics: Sequence[str] = ("train_loss", "train_acc"),
                    store: str | os.PathLike | None = None, resume: bool = False, *,
                    loss: str | Callable = "cross_entropy", bn_recalibrate: bool = False,
                    precision: str = "fp32", checkpoint_seconds: float = 30.0,
                    progress: bool = True, seed: int = 0,
                    provenance: dict[str, Any] | None = None, hessian: bool = False,
                    device=None, force: bool = False, points: Iterable[int] | None = None,
                    rank: int = 0, world_size: int = 1, batch_points: int | None = None,
                    chunk: int = 8192, directions_path: str | None = None,
                    trajectory: dict[str, Any] | None = None,
                    anchors: dict[str, Any] | None = None,
                    channels_last: bool = False) -> Surface:
    """Metrics of ``model`` on a 1-D or 2-D grid of offsets along ``directions``.

    Args:
        model: the network at the origin ``theta`` (weights are restored afterwards).
        data: a DataBundle, or an ``(x, y)`` training pair (train metrics only).
        directions: list of name -> tensor dicts (the first one or two are used), or the
            path of a directions file (``landscape.directions.save_directions``).
        x: coordinates along the first direction (any order, need not contain 0).
        y: coordinates along the second direction, or None for a 1-D surface.
        metrics: any of ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``.
        store: HDF5 file to checkpoint into (atomically; see ``landscape.store``).
        resume: continue ``store`` if it exists (refused if made from other inputs).
        loss: ``cross_entropy``, ``mse``, or a callable ``(outputs, targets) -> mean loss``.
        bn_recalibrate: recompute BatchNorm statistics on the training data at each point.
        precision: ``fp32``, ``tf32`` (CUDA only) or ``bf16`` (autocast); for the last two the
            error against fp32 at the origin and the grid's corners is measured and stored as
            ``provenance["precision_error"]``.
        checkpoint_seconds: at most this long between checkpoints of ``store``.
        progress: show a progress bar (points done, points/s, time left) on stderr.
        seed: seed of any randomness (the Hessian eigensolver's start vector).
        provenance: extra fields to record (command, checkpoint hash, norm, ...).
        hessian: also compute ``eig_max`` and ``eig_min`` of the training-loss Hessian at
            each point (``landscape.hessian.extreme_eigenvalues``).
        device: ``cuda``, ``mps``, ``cpu`` or None for the best available.
        force: overwrite an existing ``store`` that is not being resumed.
        points: compute only these grid point numbers (C order); the rest stay not done.
        rank, world_size: compute only the points ``p % world_size == rank``. Only one
            process may write a given ``store`` file: give each rank its own file.
        batch_points: grid points per batched forward (``torch.func`` + ``vmap``); None
            picks 1 on the CPU (the loop is as fast there) and up to 16 on a GPU for
            models under a million parameters.
        chunk: examples per forward pass.
        directions_path: the directions file, recorded in the surface file.
        trajectory, anchors: overlays stored with the surface (see ``Surface``).
        channels_last: evaluate an image model in channels-last (NHWC) memory format.

    Returns:
        The Surface (also written to ``store`` when given).
    """
    from .errors import LandscapeError

    x = _axis(x, "x")
    y = None if y is None else _axis(y, "y")
    ndim = 1 if y is None else 2
    directions, dir_info = _directions(directions, directions_path, ndim)
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise LandscapeError("no metrics requested")
    all_metrics = metrics + (("eig_max", "eig_min") if hessian else ())
    from .evaluate import Evaluator

    evaluator = Evaluator(model, data, directions, metrics=metrics, loss=loss,
                          bn_recalibrate=bn_recalibrate, precision=precision, device=device,
                          chunk=chunk, channels_last=channels_last)
    from ._util import output_lock  # issue 16: one writer per surface file

    try:
        with output_lock(store) if store is not None else contextlib.nullcontext():
            identity = _identity(evaluator, data, directions, metrics, loss, bn_recalibrate,
                                 precision, hessian, seed)
            surface = _start(store, resume, force, identity, x, y, all_metrics, provenance,
                             dir_info, trajectory, anchors)
            return _run(evaluator, surface, store, points, rank, world_size, batch_points,
                        checkpoint_seconds, progress, hessian, loss, seed)
    finally:
        evaluator.close()


def _directions(directions, path: str | None, ndim: int):
    from .directions import directions_sha256, load_directions
    from .errors import LandscapeError

    if isinstance(directions, (str, os.PathLike)):
        path = str(directions)
        directions, _ = load_directions(directions)
    directions = list(directions)
    if len(directions) < ndim:
        raise LandscapeError(f"a {ndim}-D surface needs {ndim} directions, got "
                             f"{len(directions)}")
    directions = directions[:ndim]
    return directions, {"path": path, "sha256": directions_sha256(directions)}


def _identity(evaluator, data, directions, metrics, loss, bn_recalibrate, precision,
              hessian, seed) -> dict[str, Any]:
    """What a stored surface must share with a request to be resumed."""
    from .data import DataBundle
    from .directions import directions_sha256, tensors_sha256

    splits = {"train": data.train, "test": data.test} if isinstance(data, DataBundle) else {
        "train": tuple(data)}
    tensors = {f"{s}/{k}": t for s, (a, b) in splits.items() for k, t in (("x", a), ("y", b))}
    return {
        "model_sha256": tensors_sha256(evaluator._saved),
        "directions_sha256": directions_sha256(directions),
        "data_sha256": tensors_sha256(tensors),
        "metrics": list(metrics),
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable"),
        "precision": precision,
        "channels_last": bool(evaluator.channels_last),
        "bn_recalibrate": bool(bn_recalibrate),
        "hessian": bool(hessian),
        "seed": int(seed) if hessian else None,
    }


def _start(store, resume, force, identity, x, y, metrics, provenance, dir_info, trajectory,
           anchors) -> Surface:
    """A new empty surface, or the stored one to resume."""
    from ._util import provenance as make_provenance
    from .errors import StoreError
    from .store import remove_stale_temps, resumable

    prov = make_provenance(**(provenance or {}))
    prov.update(identity=identity, directions=dir_info, seconds=0.0, runs=1)
    if store is not None:
        path = Path(store)
        if path.exists() and not path.is_file():
            raise StoreError(f"output {str(path)!r} exists and is not a file")
        remove_stale_temps(path)
        if path.exists() and resume:
            old = resumable(path, identity, x, y)
            prov.update(created=old.provenance.get("created", prov["created"]),
                        seconds=float(old.provenance.get("seconds", 0.0)),
                        runs=int(old.provenance.get("runs", 1)) + 1)
            for key in ("precision_error",):
                if key in old.provenance:
                    prov[key] = old.provenance[key]
            return dataclasses.replace(old, provenance=prov, path=str(path),
                                       trajectory=trajectory or old.trajectory,
                                       anchors=anchors or old.anchors)
        if path.exists() and not force:
            raise StoreError(f"{str(path)!r} already exists: resume it (--resume) or overwrite "
                             "it (--force)")
    shape = (len(x),) if y is None else (len(x), len(y))
    return Surface(x=x, y=y, metrics={m: np.full(shape, np.nan) for m in metrics},
                   done=np.zeros(shape, dtype=bool), provenance=prov,
                   path=str(store) if store is not None else None,
                   trajectory=_table(trajectory), anchors=_table(anchors))


def _table(table: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    return None if table is None else {k: np.asarray(v) for k, v in table.items()}


def _run(evaluator, surface: Surface, store, points, rank, world_size, batch_points,
         checkpoint_seconds, show, hessian, loss, seed) -> Surface:
    """The point loop: evaluate, record, checkpoint."""
    from ._util import progress as progress_bar
    from .store import save_surface

    x, y = surface.x, surface.y
    flat_done = surface.done.reshape(-1)
    todo = select_points(flat_done.size, flat_done, points, rank, world_size)
    batch = 1 if hessian else _batch_points(batch_points, evaluator)
    if evaluator.precision != "fp32" and "precision_error" not in surface.provenance:
        surface.provenance["precision_error"] = evaluator.precision_error(
            _probe_points(x, y))
    eig = _hessian_fn(evaluator, loss, seed) if hessian else None
    start = time.perf_counter()
    seconds0 = float(surface.provenance.get("seconds", 0.0))
    if store is not None and surface.done.all() and Path(store).is_file():
        return surface  # issue 16: a complete file resumed is left as it is, never rewritten
    if store is not None:  # the file exists from the start, and --force replaces it now
        _stamp(surface, seconds0, start)
        save_surface(store, surface)
    last_save = time.monotonic()
    bar = progress_bar(len(todo), "surface", show, unit="pt")
    try:
        for k in range(0, len(todo), batch):
            chunk = todo[k:k + batch]
            coords = [grid_coords(x, y, p) for p in chunk]
            if len(chunk) == 1:
                results = [evaluator.evaluate(coords[0])]
                if eig is not None:
                    results[0]["eig_max"], results[0]["eig_min"] = eig()
            else:
                results = evaluator.evaluate_batch(coords)
            for p, values in zip(chunk, results):
                idx = np.unravel_index(p, surface.shape)
                for name, value in values.items():
                    surface.metrics[name][idx] = value
                surface.done[idx] = True
            bar.update(len(chunk))
            if store is not None and time.monotonic() - last_save >= checkpoint_seconds:
                _stamp(surface, seconds0, start)
                save_surface(store, surface)
                last_save = time.monotonic()
    finally:
        bar.close()
        _stamp(surface, seconds0, start)
        if store is not None:
            save_surface(store, surface)
    return surface


def _stamp(surface: Surface, seconds0: float, start: float) -> None:
    surface.provenance["seconds"] = seconds0 + time.perf_counter() - start
    surface.provenance["nonfinite"] = surface.nonfinite
    surface.provenance["points_done"] = int(np.sum(surface.done))


def _batch_points(requested: int | None, evaluator) -> int:
    from .errors import LandscapeError

    if requested is not None:
        if requested < 1:
            raise LandscapeError("batch_points must be at least 1")
        return int(requested)
    if evaluator.device.type != "cuda" or evaluator.bn_recalibrate:
        return 1
    size = sum(t.numel() for t in evaluator._saved.values())
    return 16 if size < 1_000_000 else 1


def _probe_points(x: np.ndarray, y: np.ndarray | None) -> list[tuple[float, ...]]:
    """The origin and the grid's corners, where the error of a reduced precision is measured."""
    if y is None:
        return [(0.0,), (float(x[0]),), (float(x[-1]),)]
    return [(0.0, 0.0)] + [(float(a), float(b)) for a in (x[0], x[-1]) for b in (y[0], y[-1])]


def _hessian_fn(evaluator, loss, seed) -> Callable[[], tuple[float, float]]:
    """Extreme Hessian eigenvalues of the training loss at the evaluator's current point."""
    from .errors import LandscapeError

    try:
        from .hessian import extreme_eigenvalues
    except ImportError as exc:
        raise LandscapeError(f"Hessian metrics are not available: {exc}") from None
    if "train" not in evaluator.splits:
        raise LandscapeError("Hessian metrics need the training split")
    train = evaluator.splits["train"]

    def eig() -> tuple[float, float]:
        top, bottom = extreme_eigenvalues(evaluator.model, train, loss=loss, seed=seed)
        return float(top), float(bottom)
    return eig


def summary_line(surface: Surface, seconds: float | None = None) -> str:
    """One line: points, seconds, NaN/inf count, the minimum loss and where."""
    s = surface.summary()
    secs = surface.provenance.get("seconds", 0.0) if seconds is None else seconds
    where = ("" if s["argmin"] is None else
             " at " + ", ".join(f"{a}={v:.4g}" for a, v in zip("xy", s["argmin"])))
    rate = s["done"] / secs if secs and secs > 0 else float("nan")
    minimum = f"min {s['metric']} {s['min']:.6g}{where}" if s["metric"] else "no metrics"
    return (f"{s['done']}/{s['points']} points in {secs:.1f} s ({rate:.3g} points/s), "
            f"{s['nonfinite']} NaN/inf, {minimum}")


