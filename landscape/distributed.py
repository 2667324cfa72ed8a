"""Process groups under torchrun, and the exchange of results between ranks.

Under torchrun (``torchrun --nproc-per-node 4 -m landscape surface ...``) every rank loads the
model, data and directions itself, and ``init_distributed`` joins the process group: NCCL with
one GPU per local rank on CUDA machines, Gloo on CPUs; results travel over Gloo either way (a
few floats per grid point). This module knows nothing of surfaces or Hessians: the one point
loop of ``landscape.surface`` runs on every rank with a ``RankExchange`` (block ``b`` of the
remaining points goes to rank ``b % world_size``; after each round the ranks ``all_gather``
tables of (point, values) for rank 0 to merge and save), and the distributed Hessian of
``landscape.hessian`` uses the same collectives. When a rank dies, the next collective fails
everywhere and its error names the ranks that never reached it (``Link``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import itertools
import os
import signal
import threading
from typing import Any, Callable, Iterator

import torch

from .errors import LandscapeError
from .util import pick_device

DEFAULT_TIMEOUT = 1800.0  # seconds a collective waits before a hung rank is reported
ROUND_SECONDS = 1.0  # seconds of computing between exchanges (also <= checkpoint_seconds)
ROUND_CAPACITY = 64  # most grid points a rank reports per exchange (at least one block)


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
    if not joined:
        try:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=delta,
                                    rank=env["rank"], world_size=env["world_size"])
        except Exception as exc:
            raise DistributedError(f"could not join the process group ({_first_line(exc)}); "
                                   "launch with torchrun, or set MASTER_ADDR and MASTER_PORT"
                                   ) from None
    backend = str(dist.get_backend()).lower()
    group = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=delta)
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                      backend=backend, device=dev, timeout=float(timeout), group=group,
                      owner=not joined)
    Link(ctx).call("start-up barrier", lambda: dist.barrier(group=group))
    return ctx


def shutdown(context: DistContext | None) -> None:
    """Leave the process group if ``init_distributed`` created it."""
    import torch.distributed as dist

    if context is not None and context.owner and dist.is_initialized():
        dist.destroy_process_group()


def _rank_device(device, local_rank: int) -> torch.device:
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
    return (" ".join(str(exc).split()) or type(exc).__name__)[:limit]


# ----------------------------------------------------------------------------- collectives

_LINKS = itertools.count()


class Link:
    """Collectives that raise a DistributedError naming the ranks that never reached them.

    Before each collective a rank writes the collective's number under its own key in the
    process group's store. When a collective fails (a rank died, so its sockets closed; or the
    timeout passed), the ranks whose number is behind are the ones that stopped. Every rank
    creates its links in the same order, so the key prefixes agree.
    """

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        self.stage = 0
        self.prefix = f"landscape/link{next(_LINKS)}"
        try:  # an internal helper: without it, failures are reported without names
            from torch.distributed.distributed_c10d import _get_default_store
            self.store = _get_default_store()
        except Exception:
            self.store = None

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        self.stage += 1
        if self.store is not None:
            try:
                self.store.set(f"{self.prefix}/{self.ctx.rank}", str(self.stage))
            except Exception:
                self.store = None
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
        keys = {r: f"{self.prefix}/{r}" for r in range(self.ctx.world_size) if r != self.ctx.rank}
        try:
            return [r for r, key in keys.items()
                    if not self.store.check([key]) or int(self.store.get(key)) < self.stage]
        except Exception:  # the store lived in a process that is gone
            return []


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
    payload = [None if error is None else str(error) if isinstance(error, LandscapeError)
               else f"{type(error).__name__}: {error}"]
    Link(context).call(what, lambda: dist.broadcast_object_list(payload, src=0,
                                                                 group=context.group))
    if error is not None:
        raise error
    if payload[0] is not None:
        raise PeerError(f"rank 0 stopped: {payload[0]}")
    return result


# ----------------------------------------------------------------------------- exchange

class _Terminated(BaseException):
    """SIGTERM arrived (torchrun sends it to every rank once one rank has failed). Not an
    Exception, so that no handler on the way mistakes it for a failed collective."""


def _terminate(signum, frame):
    raise _Terminated("stopped by SIGTERM (torchrun sends it to every rank once one rank "
                      "has failed: see that rank's error)")


@contextlib.contextmanager
def _sigterm(handler) -> Iterator[None]:
    """Installs ``handler`` for SIGTERM while active (None: leaves it as it is)."""
    old = None
    if handler is not None and threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


class RankExchange:
    """What a surface run needs from the other ranks (see the module docstring).

    The point loop calls, on every rank and in this order: ``agree`` once, ``open`` once, then
    ``share`` to learn its blocks (after which ``capacity`` bounds the points of a round), and
    ``exchange`` after every round until no rank has points left. ``stopped`` lists the
    exceptions that mean another rank is gone.
    """

    stopped = (DistributedError, _Terminated)

    def __init__(self, context: DistContext, round_seconds: float = ROUND_SECONDS):
        self.ctx = context
        self.round_seconds = float(round_seconds)
        self.link = Link(context)
        self.capacity = ROUND_CAPACITY

    @property
    def is_main(self) -> bool:
        """True on rank 0, which holds the surface and writes the file."""
        return self.ctx.is_main

    def agree(self, mine: dict[str, Any]) -> None:
        """Every rank checks that all ranks were given the same inputs (``mine["identity"]``
        is compared key by key, so a message names e.g. ``directions_sha256``)."""
        import torch.distributed as dist

        every: list[Any] = [None] * self.ctx.world_size
        self.link.call("comparison of inputs",
                       lambda: dist.all_gather_object(every, mine, group=self.ctx.group))
        first, diffs = every[0], []
        for r, theirs in enumerate(every):
            keys = [k for k in mine if k != "identity" and theirs[k] != first[k]]
            keys += [k for k in mine["identity"]
                     if theirs["identity"].get(k) != first["identity"].get(k)]
            if keys:
                diffs.append(f"rank {r} differs from rank 0 in {', '.join(keys)}")
        if diffs:
            raise DistributedError("the ranks were given different inputs: " + "; ".join(diffs)
                                   + " (every rank must load the same checkpoint, data and "
                                   "options)")

    def open(self, start: Callable[[], Any]) -> tuple[Any, Any]:
        """Rank 0 runs ``start()`` (opening the surface file); every rank gets its done mask.

        Returns:
            (the surface on rank 0, None elsewhere; the flat done mask on every rank).
        """
        import torch.distributed as dist

        surface = run_on_main(self.ctx, start, "opening of the surface file")
        mask = [None if surface is None else surface.done.reshape(-1).copy()]
        self.link.call("sharing of the done points",
                       lambda: dist.broadcast_object_list(mask, src=0, group=self.ctx.group))
        return surface, mask[0]

    def share(self, blocks: list[list[int]], batch: int) -> list[list[int]]:
        """This rank's blocks of (at most ``batch``) points: ``blocks[rank::world_size]``."""
        self.capacity = max(ROUND_CAPACITY, batch)  # the same on every rank: tables must match
        return blocks[self.ctx.rank::self.ctx.world_size]

    def exchange(self, rows: list[tuple[int, dict[str, float]]], left: int,
                 names: tuple[str, ...]) -> tuple[list[tuple[int, dict[str, float]]], int]:
        """Send this round's ``(point, values)`` rows and the count of points this rank has
        left; return the other ranks' rows (on rank 0; nothing elsewhere) and the count of
        points left on all ranks."""
        import torch.distributed as dist

        table = _table(rows, self.capacity, names, left)
        tables = [torch.empty_like(table) for _ in range(self.ctx.world_size)]
        self.link.call("exchange of results",
                       lambda: dist.all_gather(tables, table, group=self.ctx.group))
        others = [] if not self.is_main else [
            row for r, t in enumerate(tables) if r != self.ctx.rank for row in _rows(t, names)]
        return others, sum(int(t[0, 1]) for t in tables)

    def guard(self) -> contextlib.AbstractContextManager:
        """While active on rank 0, SIGTERM (torchrun sends it to every rank once one rank has
        failed) raises, so that rank 0 saves what it has before it stops."""
        return _sigterm(_terminate if self.is_main else None)

    def saving(self) -> contextlib.AbstractContextManager:
        """While active, SIGTERM waits (the final save is not cut short)."""
        return _sigterm(signal.SIG_IGN)


def _table(rows, capacity: int, names: tuple[str, ...], left: int) -> torch.Tensor:
    """Row 0: (points reported, points left); then (point, values...); -1 = padding."""
    table = torch.full((capacity + 1, 1 + len(names)), float("nan"), dtype=torch.float64)
    table[1:, 0] = -1.0
    table[0, 0], table[0, 1] = float(len(rows)), float(left)
    for i, (p, values) in enumerate(rows, start=1):
        table[i, 0] = float(p)
        table[i, 1:] = torch.tensor([values[m] for m in names], dtype=torch.float64)
    return table


def _rows(table: torch.Tensor, names: tuple[str, ...]) -> list[tuple[int, dict[str, float]]]:
    return [(int(v[0]), dict(zip(names, v[1:]))) for v in table[1:int(table[0, 0]) + 1].tolist()]
