"""The step engine of the workflows: cached, keyed, resumable steps, a clock of their wall
time and numbered progress lines.

The contract of a step:

- Key: ``step_key(*parts)`` hashes what the step depends on (the weights' hash, the data spec,
  the settings) as sorted JSON (values JSON has no type for as their ``str``) to 16 hex
  characters. Two runs with equal parts get equal keys; any change of a part changes the key.
- Record: ``Steps`` keeps ``name -> key`` of the finished steps in ``<out>/study_state.json``,
  rewritten atomically each time a step finishes. An unreadable record counts as empty.
- Rerun: a step is current when its recorded key equals the new one and all its outputs exist;
  ``Steps.run`` then loads its outputs instead of computing them and lists it in
  ``Steps.reused``. With ``force`` the record is ignored and every step is computed again.
- Interruption: a step is recorded only after its outputs are written, so a run stopped
  midway keeps the steps finished before, and its rerun resumes with the first unfinished one
  (which starts over, unless it resumes from state of its own).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from ..util import write_json

__all__ = ["Steps", "Clock", "Stages", "step_key", "STATE_FILE"]

STATE_FILE = "study_state.json"
"""Name of the record of finished steps in a workflow's output folder."""


def step_key(*parts: Any) -> str:
    """The key of a step: a short hash of everything it depends on.

    Args:
        parts: JSON-able values (others are hashed as their ``str``); dict order is ignored.

    Returns:
        16 hex characters of the SHA-256 of the parts as sorted JSON.
    """
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Steps:
    """Which steps are done, by a key of their settings, kept in ``study_state.json``."""

    def __init__(self, out: Path, force: bool):
        """Read the record of ``out`` (none with ``force``: every step runs again)."""
        self.path = out / STATE_FILE
        self.force = force
        self.state: dict[str, str] = {}
        if self.path.is_file() and not force:
            try:
                self.state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.state = {}
        self.reused: list[str] = []

    def current(self, name: str, key: str, outputs: list[Path]) -> bool:
        """Whether step ``name`` is done with ``key`` and its ``outputs`` all exist (then it
        is listed in ``reused``)."""
        fresh = (not self.force and self.state.get(name) == key
                 and all(p.exists() for p in outputs))
        if fresh:
            self.reused.append(name)
        return fresh

    def mark(self, name: str, key: str) -> None:
        """Record step ``name`` as done with ``key`` (call after its outputs are written)."""
        self.state[name] = key
        write_json(self.path, self.state)

    def run(self, name: str, key: str, outputs: list[Path], load: Callable[[], Any],
            compute: Callable[[], Any]) -> Any:
        """``load()`` the step's outputs if they are current, else ``compute()`` them and
        record the step as done."""
        if self.current(name, key, outputs):
            return load()
        result = compute()
        self.mark(name, key)
        return result


class Clock:
    """Wall seconds per step (``summary["step_seconds"]``), to see where the time goes."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        """Add the wall time of the ``with`` block to ``seconds[name]`` (rounded to 0.01 s)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0)
                                       + time.perf_counter() - t0, 2)


class Stages:
    """Numbered progress lines ``[k/total] ...`` (and plain ones) to a logger."""

    def __init__(self, log: Callable[[str], None] | None, total: int):
        self.log, self.total, self.done = log or (lambda _msg: None), total, 0

    def __call__(self, message: str) -> None:
        """A plain line."""
        self.log(message)

    def step(self, message: str) -> None:
        """The next numbered line ``[k/total] message``."""
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {message}")
