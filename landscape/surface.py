"""Loss surfaces over 1-D and 2-D grids of parameter-space offsets: the one point loop.

``compute_surface`` evaluates metrics at every point ``theta + x[i] d1 (+ y[j] d2)`` of a grid.
A ``SurfaceRun`` owns one such computation: it sets up the evaluator and the run's identity,
opens the surface file (new, or resumed after checking that it was made from the same model,
directions, data, grid and settings), cuts the remaining points into blocks, evaluates them,
merges the results and checkpoints the file atomically at most every ``checkpoint_seconds``.
The same loop runs in one process and under torchrun: there a ``distributed.RankExchange``
shares the blocks among the ranks and carries their results to rank 0, which alone writes.
Blocks hold the same points in either case, so the values are bit-identical on one device type.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .data import as_splits
from .direction_files import directions_sha256, load_directions, write_or_check_directions
from .distributed import DistContext, DistributedError, RankExchange
from .errors import LandscapeError
from .evaluate import Evaluator, split_metric
from .grid import (Surface, check_axis, grid_coords, grid_size, probe_points,  # noqa: F401
                   select_points, summary_line)
from .curvature import extreme_eigenvalues
from .store import check_output, resumable, save_surface
from .util import output_lock, remove_stale_temps, sha256_tensors
from .util import progress as progress_bar, provenance as make_provenance


@dataclasses.dataclass(frozen=True, kw_only=True)
class SurfaceOptions:
    """How each point of a surface is evaluated and how the run behaves (built once, by the
    command line from its flags or by a Python user, and passed down).

    Attributes:
        metrics: any of ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``.
        loss: ``cross_entropy``, ``mse``, or a callable ``(outputs, targets) -> mean loss``.
        bn_recalibrate: recompute BatchNorm statistics on the training data at each point.
        precision: ``fp32``, ``tf32`` (CUDA only) or ``bf16`` (autocast); for the last two the
            error against fp32 at the origin and the grid's corners is stored as
            ``provenance["precision_error"]``.
        channels_last: evaluate an image model in channels-last (NHWC) memory format.
        hessian: also compute ``eig_max`` and ``eig_min`` of the training-loss Hessian at
            each point (``landscape.hessian.extreme_eigenvalues``).
        seed: seed of the Hessian eigensolver's start vector.
        device: ``cuda``, ``mps``, ``cpu`` or None for the best available (under torchrun:
            each rank's own device).
        chunk: examples per forward pass.
        batch_points: grid points per batched forward (``torch.func`` + ``vmap``); None picks
            1 on the CPU (the loop is as fast there) and up to 16 on a GPU for models under a
            million parameters.
        checkpoint_seconds: at most this long between checkpoints of the output file.
        progress: show a progress bar (points done, points/s, time left) on stderr.
    """

    metrics: tuple[str, ...] = ("train_loss", "train_acc")
    loss: str | Callable = "cross_entropy"
    bn_recalibrate: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    hessian: bool = False
    seed: int = 0
    device: Any = None
    chunk: int = 8192
    batch_points: int | None = None
    checkpoint_seconds: float = 30.0
    progress: bool = True

    def __post_init__(self) -> None:
        metrics = tuple(dict.fromkeys([self.metrics] if isinstance(self.metrics, str)
                                      else self.metrics))
        if not metrics:
            raise LandscapeError("no metrics requested")
        for m in metrics:
            split_metric(m)
        object.__setattr__(self, "metrics", metrics)
        if self.batch_points is not None and self.batch_points < 1:
            raise LandscapeError("batch_points must be at least 1")
        if self.chunk < 1:
            raise LandscapeError("chunk must be at least 1")
        if not self.checkpoint_seconds >= 0:
            raise LandscapeError("checkpoint_seconds must be >= 0")

    @property
    def names(self) -> tuple[str, ...]:
        """The metrics stored: the requested ones, plus eig_max and eig_min with ``hessian``."""
        return self.metrics + (("eig_max", "eig_min") if self.hessian else ())

    def identity(self) -> dict[str, Any]:
        """The settings a stored surface must share with a request to be resumed."""
        loss = (self.loss if isinstance(self.loss, str)
                else getattr(self.loss, "__name__", "callable"))
        return {"metrics": list(self.metrics), "loss": loss, "precision": self.precision,
                "channels_last": bool(self.channels_last),
                "bn_recalibrate": bool(self.bn_recalibrate), "hessian": bool(self.hessian),
                "seed": int(self.seed) if self.hessian else None}


def compute_surface(model, data, directions, x, y=None, *,
                    options: SurfaceOptions | None = None,
                    out: str | os.PathLike | None = None, resume: bool = False,
                    force: bool = False, points: Iterable[int] | None = None,
                    provenance: dict[str, Any] | None = None,
                    directions_recipe: dict[str, Any] | None = None,
                    trajectory: dict[str, Any] | None = None,
                    anchors: dict[str, Any] | None = None,
                    context: DistContext | None = None) -> Surface | None:
    """Metrics of ``model`` on a 1-D or 2-D grid of offsets along ``directions``.

    Args:
        model: the network at the origin ``theta`` (weights are restored afterwards).
        data: a DataBundle, or an ``(x, y)`` training pair (train metrics only).
        directions: list of name -> tensor dicts (the first one or two are used), or the
            path of a directions file (``landscape.directions.save_directions``).
        x: coordinates along the first direction (any order, need not contain 0).
        y: coordinates along the second direction, or None for a 1-D surface.
        options: evaluation settings (``SurfaceOptions``; default: its defaults).
        out: HDF5 file to checkpoint into (atomically; see ``landscape.store``).
        resume: continue ``out`` if it exists (refused if made from other inputs); a complete
            file is returned as it is, not rewritten.
        force: overwrite an existing ``out`` that is not being resumed.
        points: compute only these grid point numbers (C order); the rest stay not done.
        provenance: extra fields to record (command, checkpoint hash, norm, ...).
        directions_recipe: with ``out``, save the directions beside it
            (``directions_file_for(out)``) with this dict as their provenance, or check that
            the file there holds the same directions (``force`` replaces one that differs; it
            is put back if the run fails before the surface file is written).
        trajectory, anchors: overlays stored with the surface (see ``Surface``).
        context: from ``landscape.distributed.init_distributed`` under torchrun: the ranks
            share the points and rank 0 alone writes; every rank calls with the same inputs.

    Returns:
        The Surface (also written to ``out`` when given); None on ranks other than 0.

    Raises:
        DistributedError: under torchrun, when the ranks disagree on their inputs or a rank
            stopped (rank 0 first saves every point it received; rerun with ``resume``).
    """
    options = options or SurfaceOptions()
    exchange = None if context is None or context.world_size == 1 else RankExchange(context)
    if context is not None:
        options = dataclasses.replace(options, device=context.device)
    run = SurfaceRun(model, data, directions, x, y, options=options, exchange=exchange)
    try:
        return run.run(out=out, resume=resume, force=force, points=points,
                       provenance=provenance, directions_recipe=directions_recipe,
                       trajectory=trajectory, anchors=anchors)
    finally:
        run.close()


def estimate_surface(model, data, directions, x, y=None, *,
                     options: SurfaceOptions | None = None) -> dict[str, Any]:
    """What a surface would cost, from one point evaluated now (nothing is written).

    Returns:
        ``points``, ``seconds_per_point`` (the measured point, set-up excluded), ``seconds``
        (their product), ``file_bytes`` (the surface file, approximately).
    """
    run = SurfaceRun(model, data, directions, x, y, options=options or SurfaceOptions())
    try:
        points = grid_size(run.x, run.y)
        run.compute([0])  # warm-up: first calls allocate
        start = time.perf_counter()
        run.compute([points // 2])
        per_point = time.perf_counter() - start
    finally:
        run.close()
    axes = len(run.x) + (0 if run.y is None else len(run.y))
    return {"points": points, "seconds_per_point": per_point, "seconds": per_point * points,
            "file_bytes": points * (8 * len(run.options.names) + 1) + 8 * axes + 16384}


def directions_file_for(out: str | os.PathLike) -> Path:
    """``surf.h5`` -> ``surf.directions.h5``: where a surface's directions are saved."""
    out = Path(out)
    stem = out.stem if out.suffix.lower() in (".h5", ".hdf5") else out.name
    return out.with_name(f"{stem}.directions.h5")


class _OneProcess:
    """The exchange of a run in a single process: every block is its own, nothing travels.
    A round is one block, so the checkpoint clock is looked at after every block."""

    is_main = True
    round_seconds = 0.0
    capacity = float("inf")
    stopped: tuple[type[BaseException], ...] = ()

    def agree(self, mine: dict[str, Any]) -> None:
        pass

    def open(self, start: Callable[[], Surface]) -> tuple[Surface, np.ndarray]:
        surface = start()
        return surface, surface.done.reshape(-1)

    def share(self, blocks: list[list[int]], batch: int) -> list[list[int]]:
        return blocks

    def exchange(self, rows, left: int, names) -> tuple[list, int]:
        return [], left

    guard = saving = staticmethod(contextlib.nullcontext)


class SurfaceRun:
    """One surface computation: set-up, blocks of points, merge, checkpoints, resume.

    Args:
        model, data, directions, x, y: as for ``compute_surface``.
        options: ``SurfaceOptions``.
        exchange: ``distributed.RankExchange`` under torchrun; None in one process.
    """

    def __init__(self, model, data, directions, x, y=None, *, options: SurfaceOptions,
                 exchange: RankExchange | None = None):
        self.options = options
        self.exchange = exchange or _OneProcess()
        self.x = check_axis(x, "x")
        self.y = None if y is None else check_axis(y, "y")
        grid_size(self.x, self.y)
        self.directions, self.dir_info = _directions(directions, 1 if self.y is None else 2)
        self.evaluator = Evaluator(model, data, self.directions, metrics=options.metrics,
                                   loss=options.loss, bn_recalibrate=options.bn_recalibrate,
                                   precision=options.precision, device=options.device,
                                   chunk=options.chunk, channels_last=options.channels_last)
        try:
            self.identity = _identity(self.evaluator, data, self.directions, options)
            self.batch = 1 if options.hessian else _batch_points(options.batch_points,
                                                                 self.evaluator)
            if options.hessian and "train" not in self.evaluator.splits:
                raise LandscapeError("Hessian metrics need the training split")
        except BaseException:
            self.evaluator.close()
            raise
        self.surface: Surface | None = None
        self.out: Path | None = None
        self._aside: Path | None = None
        self.saved_points, self._closed_writer = 0, True
        self._wrote_directions = self._saved = self._resumed = False

    # -- the run -------------------------------------------------------------------------

    def run(self, *, out=None, resume: bool = False, force: bool = False, points=None,
            provenance=None, directions_recipe=None, trajectory=None, anchors=None
            ) -> Surface | None:
        """Compute the points not yet done (see ``compute_surface`` for the arguments)."""
        ex = self.exchange
        self.out = None if out is None else Path(out)
        points = None if points is None else sorted({int(p) for p in points})
        ex.agree({"identity": self.identity, "x": self.x.tolist(),
                  "y": None if self.y is None else self.y.tolist(), "points": points,
                  "batch_points": self.batch, "device": self.evaluator.device.type})
        prov = dict(provenance or {})
        if isinstance(ex, RankExchange):
            prov["distributed"] = {"world_size": ex.ctx.world_size, "backend": ex.ctx.backend,
                                   "device": ex.ctx.device.type}
        try:
            with contextlib.ExitStack() as self._held:  # rank 0's lock on the output
                return self._run(ex, resume, force, points, prov, directions_recipe,
                                 trajectory, anchors)
        except BaseException:
            self._restore_directions()
            raise
        finally:
            if self._aside is not None:
                self._aside.unlink(missing_ok=True)

    def _run(self, ex, resume, force, points, prov, directions_recipe, trajectory, anchors
             ) -> Surface | None:
        surface, done = ex.open(lambda: self._open(resume, force, prov, directions_recipe,
                                                   trajectory, anchors))
        todo = select_points(done.size, done, points)
        blocks = [todo[k:k + self.batch] for k in range(0, len(todo), self.batch)]
        pending = ex.share(blocks, self.batch)
        if ex.is_main:
            self._begin(surface, len(todo), rewrite=not (self._resumed and not todo))
        try:
            with ex.guard():
                self._rounds(pending)
        except ex.stopped as exc:
            if self.surface is None:  # not rank 0: rank 0 reports
                raise
            self._finish()
            raise DistributedError(f"{exc}; {self.saved_note()}") from None
        finally:
            self._finish()
        return self.surface

    def _rounds(self, pending: list[list[int]]) -> None:
        """Compute for a round, exchange, merge, checkpoint when due; until no rank has points."""
        ex = self.exchange
        round_seconds = min(ex.round_seconds, self.options.checkpoint_seconds)
        while True:
            rows: list[tuple[int, dict[str, float]]] = []
            start = time.monotonic()
            while pending and len(rows) + len(pending[0]) <= ex.capacity:
                block = pending.pop(0)
                rows.extend(zip(block, self.compute(block)))
                if time.monotonic() - start >= round_seconds:
                    break
            self._merge(rows)  # rank 0's own points are kept even if the exchange fails
            others, left = ex.exchange(rows, sum(len(b) for b in pending), self.options.names)
            self._merge(others)
            if (self.surface is not None and self.out is not None
                    and time.monotonic() - self._last >= self.options.checkpoint_seconds):
                self.save()
                self._last = time.monotonic()
            if left == 0:
                return

    def compute(self, block: list[int]) -> list[dict[str, float]]:
        """Metrics at a block of grid points: one point alone, several in a batched forward."""
        coords = [grid_coords(self.x, self.y, p) for p in block]
        if len(block) > 1:
            return self.evaluator.evaluate_batch(coords)
        values = self.evaluator.evaluate(coords[0])
        if self.options.hessian:  # extreme eigenvalues of the training loss at this point
            top, bottom = extreme_eigenvalues(self.evaluator.model, self.evaluator.splits["train"],
                                              loss=self.options.loss, seed=self.options.seed)
            values["eig_max"], values["eig_min"] = float(top), float(bottom)
        return [values]

    # -- opening the file (rank 0) ---------------------------------------------------------

    def _open(self, resume, force, prov, recipe, trajectory, anchors) -> Surface:
        """A new empty surface, or the stored one to resume; the directions file beside it."""
        prov = make_provenance(**prov)
        prov.update(identity=self.identity, directions=dict(self.dir_info), seconds=0.0, runs=1)
        old = None
        if self.out is not None:
            self._held.enter_context(output_lock(self.out))  # one writer per surface file
            check_output(self.out, resume=resume, force=force)
            remove_stale_temps(self.out)  # safe under the lock: no live writer's temps
            remove_stale_temps(directions_file_for(self.out))
            if self.out.exists() and resume:
                old = resumable(self.out, self.identity, self.x, self.y)
            if recipe is not None:
                path = directions_file_for(self.out)
                self._wrote_directions, self._aside = write_or_check_directions(
                    path, self.directions, recipe, force)
                prov["directions"]["path"] = str(path)
        self._resumed = old is not None
        if old is not None:
            prov.update(created=old.provenance.get("created", prov["created"]),
                        seconds=float(old.provenance.get("seconds", 0.0)),
                        runs=int(old.provenance.get("runs", 1)) + 1)
            if "precision_error" in old.provenance:
                prov["precision_error"] = old.provenance["precision_error"]
            return dataclasses.replace(old, provenance=prov, path=str(self.out),
                                       trajectory=_table(trajectory) or old.trajectory,
                                       anchors=_table(anchors) or old.anchors)
        shape = (len(self.x),) if self.y is None else (len(self.x), len(self.y))
        return Surface(x=self.x, y=self.y,
                       metrics={m: np.full(shape, np.nan) for m in self.options.names},
                       done=np.zeros(shape, dtype=bool), provenance=prov,
                       path=None if self.out is None else str(self.out),
                       trajectory=_table(trajectory), anchors=_table(anchors))

    def _restore_directions(self) -> None:
        """After a failure before the surface file is written: remove or put back directions."""
        if self._wrote_directions and not self._saved and self.out is not None:
            path = directions_file_for(self.out)
            path.unlink(missing_ok=True)
            if self._aside is not None:
                os.replace(self._aside, path)
                self._aside = None

    # -- merging and checkpoints (rank 0) ---------------------------------------------------

    def _begin(self, surface: Surface, todo: int, rewrite: bool) -> None:
        self.surface = surface
        self.saved_points = self._done0 = int(np.sum(surface.done))
        if self.evaluator.precision != "fp32" and "precision_error" not in surface.provenance:
            surface.provenance["precision_error"] = self.evaluator.precision_error(
                probe_points(self.x, self.y))
        self._seconds0 = float(surface.provenance.get("seconds", 0.0))
        self._start = time.perf_counter()
        self._rewrite = rewrite
        self._bar = progress_bar(todo, "surface", self.options.progress, unit="pt")
        self._closed_writer = False
        if rewrite:  # the file exists from the start, and force replaces it now
            self.save()
        self._last = time.monotonic()

    def _merge(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        if self.surface is not None:  # rank 0
            for p, values in rows:
                idx = np.unravel_index(p, self.surface.shape)
                for name, value in values.items():
                    self.surface.metrics[name][idx] = value
                self.surface.done[idx] = True
            self._bar.update(len(rows))

    def save(self) -> None:
        """Stamp the provenance (seconds, points done, NaN count) and write the file."""
        s, done = self.surface, int(np.sum(self.surface.done))
        s.provenance.update(seconds=self._seconds0 + time.perf_counter() - self._start,
                            nonfinite=s.nonfinite, points_done=done,
                            computed_now=done - self._done0)
        if self.out is not None and self._rewrite:
            save_surface(self.out, s)
            self._saved = True
            self.saved_points = done

    def _finish(self) -> None:
        """Final save (under torchrun SIGTERM waits while it writes); once."""
        if not self._closed_writer:
            self._closed_writer = True
            self._bar.close()
            with self.exchange.saving():
                self.save()

    def saved_note(self) -> str:
        """Where the work stands, for the message of a failed run (rank 0)."""
        total = int(np.prod(self.surface.shape))
        if self.out is None:
            return f"{int(np.sum(self.surface.done))} of {total} points were computed"
        return (f"{self.saved_points} of {total} points are saved in {str(self.out)!r}; "
                "rerun with resume (--resume), on any number of processes, to finish")

    def close(self) -> None:
        """Give the model back as it was (weights, device, memory format, mode)."""
        self.evaluator.close()


# ----------------------------------------------------------------------------- helpers

def _directions(directions, ndim: int) -> tuple[list[dict], dict[str, Any]]:
    path = str(directions) if isinstance(directions, (str, os.PathLike)) else None
    if path is not None:
        directions, _ = load_directions(directions)
    directions = list(directions)[:ndim]
    if len(directions) < ndim:
        raise LandscapeError(f"a {ndim}-D surface needs {ndim} directions, got {len(directions)}")
    return directions, {"path": path, "sha256": directions_sha256(directions)}


def _identity(evaluator: Evaluator, data, directions, options: SurfaceOptions
              ) -> dict[str, Any]:
    """What a stored surface must share with a request to be resumed."""
    tensors = {f"{s}/{k}": t for s, (a, b) in as_splits(data).items()
               for k, t in (("x", a), ("y", b))}
    return {"model_sha256": sha256_tensors(evaluator._saved),
            "directions_sha256": directions_sha256(directions),
            "data_sha256": sha256_tensors(tensors), **options.identity()}


def _table(table: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    return None if table is None else {k: np.asarray(v) for k, v in table.items()}


def _batch_points(requested: int | None, evaluator: Evaluator) -> int:
    if requested is not None:
        return int(requested)
    small = sum(t.numel() for t in evaluator._saved.values()) < 1_000_000
    return 16 if evaluator.device.type == "cuda" and not evaluator.bn_recalibrate and small else 1


__all__ = ["Surface", "SurfaceOptions", "SurfaceRun", "compute_surface", "directions_file_for",
           "estimate_surface", "grid_coords", "select_points", "summary_line"]
