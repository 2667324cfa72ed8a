"""Memory a run will need, estimated before it starts, and the check that fits it or refuses.

Contract: a ``MemoryEstimate`` names its parts in bytes: what is already resident (the model,
the data on the device) and what the run will add (directions, a Lanczos basis, activations of
one chunk). ``fit_or_refuse`` compares the added part with the memory available (or a limit the
user gives) and raises a one-line ``LandscapeError`` that names the estimate and an option
that fits. ``TensorPeak`` measures the peak of live torch tensors allocated inside a block
(every operator's outputs, forward and backward), from which activation costs are measured
on a few examples and scaled by the chunk.
"""
from __future__ import annotations

import dataclasses
import re
import weakref
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import LandscapeError

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def format_bytes(n: float) -> str:
    """``3.2 GiB``, ``410 MiB``, ``12 KiB``: bytes for a message."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def parse_bytes(text: str) -> int:
    """``8G``, ``512M``, ``2.5GiB``, ``1000000`` -> bytes; LandscapeError if malformed."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise LandscapeError(f"{text!r} is not a memory size (e.g. 8G, 512M)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for a new allocation on ``device``: the kernel's MemAvailable for the CPU,
    the free memory of a CUDA device; None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """A run's memory by part, in bytes.

    Attributes:
        added: what the run allocates (name -> bytes), e.g. ``Lanczos basis``.
        resident: what is already held before it starts (model, data on the device).
        device: where the memory is (``cpu`` or a CUDA device).
    """

    added: dict[str, int]
    resident: dict[str, int]
    device: str = "cpu"

    @property
    def total_added(self) -> int:
        return int(sum(self.added.values()))

    @property
    def peak(self) -> int:
        """Resident plus added: the process's tensors at the run's peak."""
        return self.total_added + int(sum(self.resident.values()))

    def describe(self, parts: int = 3) -> str:
        """``2.1 GiB (Lanczos basis 1.6 GiB, activations 0.4 GiB, ...)``: the largest parts."""
        big = sorted(self.added.items(), key=lambda kv: -kv[1])[:parts]
        inner = ", ".join(f"{k} {format_bytes(v)}" for k, v in big if v > 0)
        return f"{format_bytes(self.total_added)}" + (f" ({inner})" if inner else "")

    def to_dict(self) -> dict[str, Any]:
        return {"added": dict(self.added), "resident": dict(self.resident),
                "total_added": self.total_added, "peak": self.peak, "device": self.device}


def fit_or_refuse(what: str, estimate: MemoryEstimate, limit: int | None,
                  alternatives: Callable[[int], str | None] | None = None) -> None:
    """Return if ``estimate``'s added memory fits ``limit`` bytes; else raise one line.

    Args:
        what: the run, for the message (``top-5 eigenvalues``).
        estimate: its memory.
        limit: bytes it may add (None: unknown, nothing is checked).
        alternatives: ``limit -> "--option value fits (about N GiB)"`` or None when no option
            makes it fit.
    """
    if limit is None or estimate.total_added <= limit:
        return
    hint = alternatives(limit) if alternatives else None
    raise LandscapeError(
        f"{what} needs about {estimate.describe()} on {estimate.device} but "
        f"{format_bytes(limit)} are available: "
        + (hint or "no setting fits; use fewer examples, a smaller model or a larger device"))


def memory_limit(device: torch.device | str, given: int | None) -> int | None:
    """The bytes a run may add: ``given`` (a user's limit) if set, else what is available."""
    free = available_bytes(device)
    if given is None:
        return free
    return given if free is None else min(given, free)


class TensorPeak(TorchDispatchMode):
    """Within the block, the peak bytes of live tensors that torch operators produced.

    Every output of every operator (forward, backward, double backward) counts once per
    storage until that storage is freed; tensors that existed before the block (weights,
    data) do not count, unless an operator copies them.

    Attributes:
        peak: the largest live total seen, in bytes.
        live: the live total now.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key, n = storage.data_ptr(), storage.nbytes()
            if n == 0 or key in self._seen:
                continue
            self._seen.add(key)
            self.live += n
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, n)
        return out


def linear_in_examples(measure: Callable[[int], Sequence[float]], n: int, small: int = 4
                       ) -> list[tuple[float, float]]:
    """Fit each quantity ``measure(m)[i] = fixed + per_example * m`` from two small ``m``
    (``small`` and twice that, at most ``n``) and return ``[(fixed, per_example), ...]``."""
    a = max(1, min(small, n // 2))
    b = min(2 * a, n)
    ya = list(measure(a))
    if b == a:
        return [(0.0, v / a) for v in ya]
    yb = list(measure(b))
    fits = []
    for va, vb in zip(ya, yb):
        per = max(0.0, (vb - va) / (b - a))
        fits.append((max(0.0, va - per * a), per))
    return fits
