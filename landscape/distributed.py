"""Surfaces and Hessian-vector products spread over ``torch.distributed`` ranks.

Launch any surface command under torchrun, e.g.
``torchrun --nproc-per-node 4 -m landscape surface model.pt --x=-1:1:51 --y=-1:1:51 --out s.h5``.
Every rank loads the model, data and directions itself (all deterministic: directions are
drawn on the CPU from the seed), and ``init_distributed`` joins the process group: NCCL with
one GPU per local rank on CUDA machines, Gloo on CPUs. Results travel over Gloo in either case
(a Gloo group is made beside NCCL): they are a few floats per grid point.

A distributed surface (``compute_surface_distributed``):

1. every rank builds its ``Evaluator`` and the run's identity (hashes of model, directions and
   data, settings, grid); all ranks must agree, else every rank stops with the differences;
2. rank 0 alone opens the surface file (new, or resumed: its done mask decides what remains,
   whatever world size wrote it) and sends the done mask to every rank;
3. the remaining points, in C order, are cut into blocks of ``batch_points`` consecutive
   points and block ``b`` goes to rank ``b % world_size`` (one point per block in a fresh run:
   ``p % world_size == rank``). Every batched forward therefore holds the same points as in a
   one-process run from the same file, so the values are bit-identical on the same device type;
4. rounds: each rank computes blocks for about ``round_seconds``, then all ranks exchange
   fixed-size float64 tables (point number and values; -1 marks padding) with ``all_gather``;
   rank 0 merges them and writes the file atomically (``landscape.store.save_surface``) once
   ``checkpoint_seconds`` have passed. The loop ends when no rank has points left.

Only rank 0 writes the file, so there is no HDF5 locking, and a kill at any moment leaves the
last complete checkpoint. When a rank dies its sockets close and the next exchange fails on
every other rank; before each exchange a rank records how far it got in the process group's
key-value store, so rank 0 can name the ranks that never reached the failed exchange. Rank 0
then saves everything it has merged (also when torchrun stops it with SIGTERM after another
rank failed) and raises ``DistributedError``; rerun with ``resume`` on any number of ranks.

Hessian products over data shards: ``sharded_hessian_vector_product`` (a collective: every
rank gets ``H v``) and ``DistributedHessianOperator``: rank 0 makes them with
``DistributedHessian`` (a drop-in for the ``HessianOperator`` class, so any solver of
``landscape.hessian`` can use them) while the other ranks run ``serve_hessian_products``, and
only rank 0 runs the solver. Each rank multiplies by the Hessian of the mean loss over its
contiguous shard, weighted by the shard's share of the examples; the pieces are summed on
rank 0.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .errors import LandscapeError
from .hessian import DEFAULT_CHUNK, GRAPH_CACHE_BYTES, HessianOperator

DEFAULT_TIMEOUT = 1800.0
"""Seconds a collective may wait for the other ranks (a hung rank is reported after this)."""

ROUND_SECONDS = 1.0
"""Seconds of computing between exchanges of results (also bounded by checkpoint_seconds)."""

ROUND_CAPACITY = 64
"""Most grid points a rank reports per exchange (at least one block of batch_points)."""


class DistributedError(LandscapeError):
    """A rank failed or disagrees with the others, or the launch environment is unusable."""


class PeerError(DistributedError):
    """Raised on ranks other than 0 when rank 0 stopped with an error (rank 0 raises that
    error itself, so a launcher need print it once)."""


@dataclasses.dataclass(frozen=True)
class DistContext:
    """This process's place in the process group.

    Attributes:
        rank, world_size, local_rank: as torchrun sets them.
        backend: the default group's backend (``nccl`` or ``gloo``).
        device: this rank's device (``cuda:<local_rank>`` on GPUs).
        timeout: seconds a collective waits before failing.
        group: the Gloo group results travel over (None: the default group, already Gloo).
        owner: True when ``init_distributed`` created the process group (``shutdown`` ends it).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout: float
    group: Any = None
    owner: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and prints results."""
        return self.rank == 0


# ----------------------------------------------------------------------------- setup

def torchrun_environment(environ: dict[str, str] | None = None) -> dict[str, int] | None:
    """Rank, world size and local rank from the environment torchrun sets up.

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        ``{"rank", "world_size", "local_rank"}``, or None when ``RANK``/``WORLD_SIZE`` are
        not set (a plain, single-process run).
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise DistributedError(f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}"
                               f", LOCAL_RANK={env.get('LOCAL_RANK')!r} are not integers") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"RANK={rank} is not in 0..{world - 1} (WORLD_SIZE={world})")
    return {"rank": rank, "world_size": world, "local_rank": local}


def is_main_process(environ: dict[str, str] | None = None) -> bool:
    """False only in a torchrun process whose rank is not 0 (cheap: reads the environment)."""
    env = torchrun_environment(environ)
    return env is None or env["rank"] == 0


def init_distributed(device: str | torch.device | None = None,
                     timeout: float = DEFAULT_TIMEOUT) -> DistContext | None:
    """Join the process group torchrun set up (NCCL on CUDA, one GPU per local rank; Gloo
    otherwise), or adopt one that is already initialized.

    Args:
        device: ``cuda``, ``cpu``, ... or None for the best available. A bare ``cuda`` means
            GPU ``LOCAL_RANK``.
        timeout: seconds a collective may wait for the other ranks.

    Returns:
        The DistContext, or None for a single process (no torchrun environment, or
        ``WORLD_SIZE=1``).

    Raises:
        DistributedError: torch.distributed is missing, too few GPUs, or the group cannot form.
    """
    import torch.distributed as dist

    env = torchrun_environment()
    joined = dist.is_available() and dist.is_initialized()
    if not joined and (env is None or env["world_size"] == 1):
        return None
    if not dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed")
    if not timeout > 0:
        raise DistributedError(f"timeout must be positive, got {timeout}")
    local = env["local_rank"] if env else 0
    dev = _rank_device(device, local)
    delta = _dt.timedelta(seconds=float(timeout))
    owner = not joined
    if owner:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=delta, rank=env["rank"],
                                    world_size=env["world_size"])
        except Exception as exc:
            raise DistributedError(f"could not join the process group ({_first_line(exc)}); "
                                   "launch with torchrun, or set MASTER_ADDR and MASTER_PORT"
                                   ) from None
    backend = str(dist.get_backend()).lower()
    group = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=delta)
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                      backend=backend, device=dev, timeout=float(timeout), group=group,
                      owner=owner)
    _Link(ctx).call("start-up barrier", lambda: dist.barrier(group=group))
    return ctx


def shutdown(context: DistContext | None) -> None:
    """Leave the process group if ``init_distributed`` created it."""
    import torch.distributed as dist

    if context is not None and context.owner and dist.is_initialized():
        dist.destroy_process_group()


def _rank_device(device, local_rank: int) -> torch.device:
    from ._util import pick_device

    dev = pick_device(device)
    if dev.type != "cuda":
        return dev
    count = torch.cuda.device_count()
    index = dev.index if dev.index is not None else local_rank
    if index >= count:
        raise DistributedError(f"local rank {local_rank} needs GPU {index} but {count} "
                               f"{'is' if count == 1 else 'are'} visible: start at most "
                               f"{count} processes per node")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


# ----------------------------------------------------------------------------- collectives

_LINKS = itertools.count()


class _Link:
    """Collectives that turn a failure into a DistributedError naming the ranks that never
    reached it.

    Before each collective a rank writes the collective's number under its own key in the
    process group's store. When a collective fails (a rank died, so its sockets closed; or the
    timeout passed), the ranks whose number is behind are the ones that stopped. Every rank
    creates its links in the same order, so the key prefixes agree.
    """

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        self.stage = 0
        self.prefix = f"landscape/link{next(_LINKS)}"
        self.store = _default_store()

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        self.stage += 1
        self._set(f"{self.prefix}/{self.ctx.rank}", str(self.stage))
        try:
            return fn()
        except Exception as exc:  # gloo/NCCL errors are RuntimeError subclasses
            raise DistributedError(self.describe(what, exc)) from None

    def describe(self, what: str, exc: BaseException) -> str:
        stopped = self.behind()
        if stopped:
            who = ", ".join(str(r) for r in stopped)
            return (f"rank{'s' if len(stopped) > 1 else ''} {who} stopped before the {what} "
                    f"(died, was killed, or did not answer within {self.ctx.timeout:g} s)")
        return f"the {what} failed: {_first_line(exc)}"

    def behind(self) -> list[int]:
        """Ranks whose last recorded collective is older than this rank's."""
        if self.store is None:
            return []
        out = []
        try:
            for r in range(self.ctx.world_size):
                key = f"{self.prefix}/{r}"
                if r == self.ctx.rank:
                    continue
                if not self.store.check([key]) or int(self.store.get(key)) < self.stage:
                    out.append(r)
        except Exception:  # the store lived in a process that is gone
            return []
        return out

    def _set(self, key: str, value: str) -> None:
        if self.store is not None:
            try:
                self.store.set(key, value)
            except Exception:
                self.store = None


def _default_store():
    try:
        from torch.distributed.distributed_c10d import _get_default_store
        return _get_default_store()
    except Exception:  # an internal helper: without it, failures are reported without names
        return None


def run_on_main(context: DistContext | None, fn: Callable[[], Any], what: str = "setup") -> Any:
    """Run ``fn`` on rank 0 only; if it raises, every rank raises.

    Rank 0 re-raises its own exception; the others raise ``PeerError`` with its message.

    Returns:
        ``fn()``'s result on rank 0, None elsewhere (or ``fn()`` when ``context`` is None).
    """
    import torch.distributed as dist

    if context is None:
        return fn()
    result, error = None, None
    if context.is_main:
        try:
            result = fn()
        except Exception as exc:
            error = exc
    payload = [None if error is None else _message(error)]
    _Link(context).call(what, lambda: dist.broadcast_object_list(payload, src=0,
                                                                 group=context.group))
    if error is not None:
        raise error
    if payload[0] is not None:
        raise PeerError(f"rank 0 stopped: {payload[0]}")
    return result


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LandscapeError) else f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- surfaces

def compute_surface_distributed(model: nn.Module, data, directions, x, y=None,
                                metrics: Sequence[str] = ("train_loss", "train_acc"),
                                store: str | os.PathLike | None = None, resume: bool = False,
                                *, context: DistContext | None,
                                loss: str | Callable = "cross_entropy",
                                bn_recalibrate: bool = False, precision: str = "fp32",
                                checkpoint_seconds: float = 30.0, progress: bool = True,
                                seed: int = 0, provenance: dict[str, Any] | None = None,
                                hessian: bool = False, force: bool = False,
                                points: Iterable[int] | None = None,
                                batch_points: int | None = None, chunk: int = 8192,
                                directions_path: str | None = None,
                                trajectory: dict[str, Any] | None = None,
                                anchors: dict[str, Any] | None = None,
                                round_seconds: float = ROUND_SECONDS,
                                channels_last: bool = False):
    """``compute_surface`` with the grid points shared by the ranks of ``context``.

    Every rank calls it with the same arguments (each with its own copy of the model and
    data). Rank 0 alone reads and writes ``store``. The arguments not listed are those of
    ``landscape.surface.compute_surface``; the device is ``context.device``.

    Args:
        context: from ``init_distributed``; None (or a world of one) runs ``compute_surface``.
        round_seconds: seconds of computing between exchanges (at most
            ``checkpoint_seconds``; at least one block of points per exchange).

    Returns:
        The Surface on rank 0 (as written to ``store``), None on the other ranks.

    Raises:
        DistributedError: the ranks disagree on the inputs, or a rank stopped (rank 0 first
            saves every point it received; rerun with ``resume`` on any number of ranks).
    """
    points = None if points is None else [int(p) for p in points]  # may be a generator
    kwargs = dict(loss=loss, bn_recalibrate=bn_recalibrate, precision=precision,
                  checkpoint_seconds=checkpoint_seconds, seed=seed, hessian=hessian,
                  force=force, points=points, batch_points=batch_points, chunk=chunk,
                  directions_path=directions_path, trajectory=trajectory, anchors=anchors,
                  channels_last=channels_last)
    if context is None or context.world_size == 1:
        from .surface import compute_surface
        return compute_surface(model, data, directions, x, y, metrics, store, resume,
                               progress=progress, provenance=provenance,
                               device=None if context is None else context.device, **kwargs)
    from . import surface as sf
    from .evaluate import Evaluator

    x = sf._axis(x, "x")
    y = None if y is None else sf._axis(y, "y")
    directions, dir_info = sf._directions(directions, directions_path, 1 if y is None else 2)
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise LandscapeError("no metrics requested")
    evaluator = Evaluator(model, data, directions, metrics=metrics, loss=loss,
                          bn_recalibrate=bn_recalibrate, precision=precision,
                          device=context.device, chunk=chunk, channels_last=channels_last)
    try:
        job = _SurfaceJob(context, evaluator, x, y, metrics, hessian, loss, seed, batch_points)
        identity = sf._identity(evaluator, data, directions, metrics, loss, bn_recalibrate,
                                precision, hessian, seed)
        job.agree(identity, points)
        prov = dict(provenance or {}, distributed={"world_size": context.world_size,
                                                   "backend": context.backend,
                                                   "device": context.device.type})
        surface = job.open(lambda: sf._start(store, resume, force, identity, x, y,
                                             job.all_metrics, prov, dir_info, trajectory,
                                             anchors))
        return job.run(surface, store, points, checkpoint_seconds, round_seconds, progress)
    finally:
        evaluator.close()


class _SurfaceJob:
    """One distributed surface: agreement, opening the file, rounds of work and exchange."""

    def __init__(self, ctx: DistContext, evaluator, x, y, metrics, hessian, loss, seed,
                 batch_points):
        from . import surface as sf

        self.ctx, self.evaluator, self.x, self.y = ctx, evaluator, x, y
        self.all_metrics = tuple(metrics) + (("eig_max", "eig_min") if hessian else ())
        self.batch = 1 if hessian else sf._batch_points(batch_points, evaluator)
        self.eig = sf._hessian_fn(evaluator, loss, seed) if hessian else None
        self.link = _Link(ctx)
        self.total = len(x) * (1 if y is None else len(y))

    # -- before the work

    def agree(self, identity: dict[str, Any], points) -> None:
        """Every rank checks that all ranks were given the same inputs."""
        import torch.distributed as dist

        mine = {"identity": identity, "x": self.x.tolist(),
                "y": None if self.y is None else self.y.tolist(),
                "points": None if points is None else sorted({int(p) for p in points}),
                "batch_points": self.batch, "device": self.ctx.device.type}
        every: list[Any] = [None] * self.ctx.world_size
        self.link.call("comparison of inputs",
                       lambda: dist.all_gather_object(every, mine, group=self.ctx.group))
        diffs = []
        first = every[0]
        for r, theirs in enumerate(every):
            keys = [k for k in mine if k != "identity" and theirs[k] != first[k]]
            keys += [k for k in identity
                     if theirs["identity"].get(k) != first["identity"].get(k)]
            if keys:
                diffs.append(f"rank {r} differs from rank 0 in {', '.join(keys)}")
        if diffs:
            raise DistributedError("the ranks were given different inputs: " + "; ".join(diffs)
                                   + " (every rank must load the same checkpoint, data and "
                                   "options)")

    def open(self, start: Callable[[], Any]):
        """Rank 0 opens the file; every rank learns which points are done."""
        import torch.distributed as dist

        surface, error = None, None
        if self.ctx.is_main:
            try:
                surface = start()
            except Exception as exc:
                error = exc
        payload = [None if error is None else _message(error),
                   None if surface is None else surface.done.reshape(-1).copy()]
        self.link.call("opening of the surface file",
                       lambda: dist.broadcast_object_list(payload, src=0, group=self.ctx.group))
        if error is not None:
            raise error
        if payload[0] is not None:
            raise PeerError(f"rank 0 stopped: {payload[0]}")
        self.done = payload[1]
        return surface

    def my_blocks(self, points) -> tuple[list[list[int]], int]:
        """This rank's blocks of consecutive remaining points, and how many points remain."""
        from . import surface as sf

        todo = sf.select_points(self.total, self.done, points)
        blocks = [todo[k:k + self.batch] for k in range(0, len(todo), self.batch)]
        return blocks[self.ctx.rank::self.ctx.world_size], len(todo)

    # -- the work

    def compute(self, block: list[int]) -> list[dict[str, float]]:
        """The same calls, in the same grouping, as the one-process loop of compute_surface."""
        from . import surface as sf

        coords = [sf.grid_coords(self.x, self.y, p) for p in block]
        if len(block) == 1:
            results = [self.evaluator.evaluate(coords[0])]
            if self.eig is not None:
                results[0]["eig_max"], results[0]["eig_min"] = self.eig()
            return results
        return self.evaluator.evaluate_batch(coords)

    def run(self, surface, store, points, checkpoint_seconds: float, round_seconds: float,
            progress: bool):
        from . import surface as sf

        blocks, remaining = self.my_blocks(points)
        round_seconds = min(round_seconds, checkpoint_seconds)
        if not self.ctx.is_main:
            self.rounds(blocks, None, round_seconds)
            return None
        if self.evaluator.precision != "fp32" and "precision_error" not in surface.provenance:
            surface.provenance["precision_error"] = self.evaluator.precision_error(
                sf._probe_points(self.x, self.y))
        writer = _Writer(surface, store, checkpoint_seconds, progress, remaining)
        try:
            with _sigterm_raises():
                self.rounds(blocks, writer, round_seconds)
        except (DistributedError, _Terminated) as exc:
            writer.close()
            raise DistributedError(f"{exc}; {writer.saved_note()}") from None
        finally:
            writer.close()
        return surface

    def rounds(self, blocks: list[list[int]], writer: "_Writer | None",
               round_seconds: float = ROUND_SECONDS) -> None:
        """Compute for about ``round_seconds``, exchange, repeat until no rank has work."""
        import torch.distributed as dist

        capacity = max(ROUND_CAPACITY, self.batch)
        width = 1 + len(self.all_metrics)
        pending = list(blocks)
        while True:
            rows: list[tuple[int, dict[str, float]]] = []
            start = time.monotonic()
            while pending and len(rows) + len(pending[0]) <= capacity:
                block = pending.pop(0)
                rows.extend(zip(block, self.compute(block)))
                if time.monotonic() - start >= round_seconds:
                    break
            if writer is not None:
                writer.merge(rows)  # rank 0's own points are kept even if the exchange fails
            table = self._table(rows, capacity, width, sum(len(b) for b in pending))
            tables = [torch.empty_like(table) for _ in range(self.ctx.world_size)]
            self.link.call("exchange of results",
                           lambda: dist.all_gather(tables, table, group=self.ctx.group))
            if writer is not None:
                for r, t in enumerate(tables):
                    if r != self.ctx.rank:
                        writer.merge(self._rows(t))
                writer.checkpoint_if_due()
            if sum(int(t[0, 1]) for t in tables) == 0:
                return

    def _table(self, rows, capacity: int, width: int, left: int) -> torch.Tensor:
        """Row 0: (points reported, points left); then (point, values...); -1 = padding."""
        table = torch.full((capacity + 1, width), float("nan"), dtype=torch.float64)
        table[1:, 0] = -1.0
        table[0, 0], table[0, 1] = float(len(rows)), float(left)
        for i, (p, values) in enumerate(rows, start=1):
            table[i, 0] = float(p)
            table[i, 1:] = torch.tensor([values[m] for m in self.all_metrics],
                                        dtype=torch.float64)
        return table

    def _rows(self, table: torch.Tensor) -> list[tuple[int, dict[str, float]]]:
        count = int(table[0, 0])
        values = table[1:count + 1].tolist()
        return [(int(v[0]), dict(zip(self.all_metrics, v[1:]))) for v in values]


class _Writer:
    """Rank 0's copy of the surface: merges results, checkpoints in bounded time."""

    def __init__(self, surface, store, checkpoint_seconds: float, progress: bool, todo: int):
        from ._util import progress as progress_bar

        self.surface, self.store = surface, store
        self.checkpoint_seconds = checkpoint_seconds
        self.seconds0 = float(surface.provenance.get("seconds", 0.0))
        self.start = time.perf_counter()
        self.bar = progress_bar(todo, "surface", progress, unit="pt")
        self.closed = False
        self.saved_points = int(np.sum(surface.done))
        if store is not None:  # the file exists from the start, and force replaces it now
            self.save()
        self.last = time.monotonic()

    def merge(self, rows) -> None:
        for p, values in rows:
            idx = np.unravel_index(p, self.surface.shape)
            for name, value in values.items():
                self.surface.metrics[name][idx] = value
            self.surface.done[idx] = True
        self.bar.update(len(rows))

    def checkpoint_if_due(self) -> None:
        if self.store is not None and time.monotonic() - self.last >= self.checkpoint_seconds:
            self.save()
            self.last = time.monotonic()

    def save(self) -> None:
        from .store import save_surface
        from .surface import _stamp

        _stamp(self.surface, self.seconds0, self.start)
        if self.store is not None:
            save_surface(self.store, self.surface)
            self.saved_points = int(np.sum(self.surface.done))

    def close(self) -> None:
        """Final save (SIGTERM is held off while it writes)."""
        if self.closed:
            return
        self.closed = True
        self.bar.close()
        with _sigterm_ignored():
            self.save()

    def saved_note(self) -> str:
        total = int(np.prod(self.surface.shape))
        if self.store is None:
            return f"{int(np.sum(self.surface.done))} of {total} points were computed"
        return (f"{self.saved_points} of {total} points are saved in {str(self.store)!r}; "
                "rerun with resume (--resume), on any number of processes, to finish")


class _Terminated(BaseException):
    """SIGTERM arrived (torchrun sends it to every rank once one rank has failed). Not an
    Exception, so that no handler on the way mistakes it for a failed collective."""


def _sigterm_raises():
    """While active, SIGTERM raises _Terminated in the main thread (so rank 0 saves first)."""
    def handler(signum, frame):
        raise _Terminated("stopped by SIGTERM (torchrun sends it to every rank once one rank "
                          "has failed: see that rank's error)")
    return _SignalScope(handler)


def _sigterm_ignored():
    return _SignalScope(signal.SIG_IGN)


class _SignalScope:
    def __init__(self, handler):
        self.handler, self.old = handler, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self.handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


# ----------------------------------------------------------------------------- Hessian

def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous share ``[start, stop)`` of ``n`` examples for ``rank`` (sizes differ by at
    most one)."""
    return n * rank // world_size, n * (rank + 1) // world_size


def _pair(data, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from .data import DataBundle

    if isinstance(data, DataBundle):
        data = data.split(split)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise LandscapeError("data must be an (inputs, targets) pair or a DataBundle")
    return data[0], data[1]


_STOP, _PRODUCT, _GRADIENT = 0.0, 1.0, 2.0


class DistributedHessianOperator(HessianOperator):
    """The Hessian of the mean loss over data shared by the ranks of ``context``.

    Every rank keeps its contiguous shard of the examples (``shard_range``). Rank 0 drives: each
    ``hvp`` (and ``matvec``, so scipy solvers work unchanged) broadcasts the vector, every rank
    multiplies by its shard's Hessian weighted by ``shard / n``, and the pieces are summed on
    rank 0 (``reduce``; NCCL on GPUs). Meanwhile the other ranks run ``serve`` (or
    ``serve_hessian_products``, which builds the operator from rank 0's arguments). Rank 0's
    ``close`` releases them. The product equals the one-process product up to rounding (the
    sum is taken in another order).

    Args:
        model, data, loss, chunk_size, mode, device, hvp, dtype, split, record, progress,
            graph_cache: as for ``landscape.hessian.HessianOperator`` (all ranks give the same;
            ``device`` defaults to ``context.device``; only rank 0 shows progress).
        context: from ``init_distributed``.
    """

    def __init__(self, model: nn.Module, data: Any, loss: Any = "cross_entropy",
                 chunk_size: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES, *,
                 context: DistContext):
        x, y = _pair(data, split)
        n = len(y)
        if n < context.world_size:
            raise DistributedError(f"{n} examples cannot be shared by {context.world_size} "
                                   "ranks")
        lo, hi = shard_range(n, context.rank, context.world_size)
        self.context = context
        self.share = (hi - lo) / n
        self.total_examples = n
        self._link = _Link(context)
        self._released = False
        super().__init__(model, (x[lo:hi], y[lo:hi]), loss, chunk_size, mode,
                         device if device is not None else context.device, hvp, dtype,
                         "train", record, progress and context.is_main, graph_cache)

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        return self._link.call(what, fn)

    def _order(self, flag: float, v: torch.Tensor | None) -> torch.Tensor:
        """Rank 0 sends (flag, vector) to all ranks (its arguments are ignored elsewhere);
        returns what arrived."""
        import torch.distributed as dist

        msg = torch.zeros(self.n_params + 1, device=self.device, dtype=self.torch_dtype)
        if self.context.is_main:
            msg[0] = flag
            if v is not None:
                msg[1:] = v
        self._collective("Hessian product request", lambda: dist.broadcast(msg, src=0))
        return msg

    def _sum_on_main(self, local: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        self._collective("sum of Hessian products", lambda: dist.reduce(local, dst=0))
        return local

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` over all shards (rank 0 only; the others must be serving)."""
        self._check_driver()
        v = v.to(self.device, self.torch_dtype).reshape(-1)
        if v.numel() != self.n_params:
            raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has "
                                 f"{self.n_params}")
        msg = self._order(_PRODUCT, v)
        return self._sum_on_main(super().hvp(msg[1:]) * self.share)

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Mean loss and flat gradient over all shards (rank 0 only)."""
        self._check_driver()
        self._order(_GRADIENT, None)
        return self._local_loss_and_grad()

    def _local_loss_and_grad(self) -> tuple[float, torch.Tensor]:
        loss, grad = super().loss_and_grad()
        packed = torch.cat([torch.tensor([loss], device=grad.device, dtype=grad.dtype), grad])
        packed = self._sum_on_main(packed * self.share)
        return float(packed[0]), packed[1:]

    def serve(self) -> int:
        """On ranks other than 0: answer rank 0's requests until it closes the operator.

        Returns:
            The number of products served.
        """
        if self.context.is_main:
            raise DistributedError("rank 0 drives the operator; serve() is for the other ranks")
        served = 0
        while True:
            msg = self._order(_STOP, None)
            flag = float(msg[0])
            if flag == _PRODUCT:
                self._sum_on_main(HessianOperator.hvp(self, msg[1:]) * self.share)
                served += 1
            elif flag == _GRADIENT:
                self._local_loss_and_grad()
            else:
                return served

    def close(self) -> None:
        """On rank 0: release the serving ranks (once); close the progress bar."""
        if self.context.is_main and not self._released:
            self._released = True
            self._order(_STOP, None)
        super().close()

    def _check_driver(self) -> None:
        if not self.context.is_main:
            raise DistributedError("only rank 0 requests products; the other ranks serve()")
        if self._released:
            raise DistributedError("this operator was closed")


class DistributedHessian:
    """On rank 0: makes ``DistributedHessianOperator``s, a drop-in for ``HessianOperator(...)``
    in any solver, while the other ranks run ``serve_hessian_products``.

    Each call sends the operator's settings to the serving ranks, which build the same
    operator over their shards; ``finish()`` releases them when no more operators come.
    Operators run on ``context.device`` whatever ``device`` they are given.
    """

    def __init__(self, context: DistContext):
        if not context.is_main:
            raise DistributedError("rank 0 makes the operators; the other ranks run "
                                   "serve_hessian_products")
        self.context = context
        self._link = _Link(context)
        self.finished = False

    def __call__(self, model: nn.Module, data: Any, loss: Any = "cross_entropy",
                 chunk_size: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES
                 ) -> DistributedHessianOperator:
        if self.finished:
            raise DistributedError("finish() was called: the serving ranks are gone")
        if callable(loss):
            raise DistributedError("a distributed Hessian needs a named loss (cross_entropy or "
                                   "mse), not a callable: the other ranks must rebuild it")
        settings = dict(loss=loss, chunk_size=chunk_size, mode=mode, hvp=hvp, dtype=dtype,
                        split=split, graph_cache=graph_cache)
        self._send(settings)
        return DistributedHessianOperator(model, data, record=record, progress=progress,
                                          context=self.context, **settings)

    def finish(self) -> None:
        """Tell the serving ranks that no more operators come (once)."""
        if not self.finished:
            self.finished = True
            self._send(None)

    def _send(self, settings: dict[str, Any] | None) -> None:
        import torch.distributed as dist

        order = [settings]
        self._link.call("Hessian operator request",
                        lambda: dist.broadcast_object_list(order, src=0,
                                                           group=self.context.group))

    def __enter__(self) -> "DistributedHessian":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def serve_hessian_products(model: nn.Module, data: Any, context: DistContext) -> int:
    """On ranks other than 0: serve every operator rank 0's ``DistributedHessian`` makes,
    until it calls ``finish()``.

    Args:
        model, data: the same as rank 0's.
        context: from ``init_distributed``.

    Returns:
        The number of operators served.
    """
    import torch.distributed as dist

    if context.is_main:
        raise DistributedError("rank 0 drives the products; serve on the other ranks")
    link = _Link(context)
    count = 0
    while True:
        order: list[Any] = [None]
        link.call("Hessian operator request",
                  lambda: dist.broadcast_object_list(order, src=0, group=context.group))
        if order[0] is None:
            return count
        DistributedHessianOperator(model, data, context=context, **order[0]).serve()
        count += 1


def sharded_hessian_vector_product(model: nn.Module, data: Any, vector: torch.Tensor,
                                   loss: Any = "cross_entropy",
                                   chunk_size: int | None = DEFAULT_CHUNK, mode: str = "eval",
                                   hvp: str = "double", dtype: torch.dtype | None = None,
                                   *, context: DistContext | None) -> torch.Tensor:
    """``H v`` of the mean loss over ``data``, each rank working on its shard (a collective:
    every rank calls it and every rank gets the product; rank 0's ``vector`` is used).

    Args:
        model: the network (not modified); the same on every rank.
        data: ``(inputs, targets)`` or a DataBundle (its train split); the same on every rank.
        vector: flat tensor, one entry per trainable parameter.
        loss, chunk_size, mode, hvp, dtype: as for ``landscape.hessian.HessianOperator``.
        context: from ``init_distributed``; None computes the one-process product.

    Returns:
        ``H v`` as a flat tensor on ``context.device``.
    """
    import torch.distributed as dist

    if context is None or context.world_size == 1:
        from .hessian import hessian_vector_product
        return hessian_vector_product(model, data, vector, loss, chunk_size, mode,
                                      None if context is None else context.device, hvp)
    op = DistributedHessianOperator(model, data, loss, chunk_size, mode, hvp=hvp, dtype=dtype,
                                    context=context)
    v = vector.to(op.device, op.torch_dtype).reshape(-1).clone()
    if v.numel() != op.n_params:
        raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has {op.n_params}")
    op._collective("vector broadcast", lambda: dist.broadcast(v, src=0))
    out = op._sum_on_main(HessianOperator.hvp(op, v) * op.share)
    op._collective("product broadcast", lambda: dist.broadcast(out, src=0))
    return out
