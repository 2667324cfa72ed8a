"""The step engine of the workflows: cached, keyed, resumable steps, a clock of their wall
time and numbered progress lines.

The contract of a step:

- Key: ``step_key(*parts)`` hashes what the step depends on (the weights' hash, the data spec,
  the settings) as sorted JSON (values JSON has no type for as their ``str``) to 16 hex
  characters. Two runs with equal parts get equal keys; any change of a part changes the key.
- Record: ``Steps`` keeps, in ``<out>/study_state.json``, for each finished step the key of its
  inputs and the sha256 of every output it wrote. Each record is read, merged and written back
  atomically (under the output folder's lock, which the workflow holds for its whole run), so
  no stale in-memory copy ever overwrites another step's record. An unreadable record counts
  as empty.
- Rerun: a step is current when its recorded key equals the new one and its outputs are there
  with the content it wrote and can be read; ``Steps.run`` then loads them instead of
  computing them and lists the step in ``Steps.reused``. A file that another step (or a disk,
  or a person) changed is never read as this step's: a changed or unreadable output makes the
  step run again with one warning line, never a traceback. With ``force`` the record is
  ignored and every step is computed again.
- Interruption: a step is recorded only after its outputs are written, so a run stopped
  midway keeps the steps finished before, and its rerun resumes with the first unfinished one
  (which starts over, unless it resumes from state of its own).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import LandscapeError
from ..util import sha256_file, write_json

__all__ = ["Steps", "Clock", "Stages", "step_key", "read_record", "STATE_FILE"]

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


def read_record(path: Path) -> dict[str, Any]:
    """A step's JSON output (a damaged one raises ``ValueError``: the step is computed
    again)."""
    record = json.loads(Path(path).read_text())
    if not isinstance(record, dict):
        raise ValueError(f"{Path(path).name} holds no record")
    return record


def _warn_stderr(message: str) -> None:
    print(message, file=sys.stderr)


class Steps:
    """Which steps are done: for each, the key of its inputs and the hashes of its outputs,
    kept in ``study_state.json`` (see the module's contract)."""

    def __init__(self, out: Path, force: bool, warn: Callable[[str], None] | None = None):
        """The record of ``out`` (ignored with ``force``: every step runs again); ``warn``
        gets the one line about a damaged output (default: stderr)."""
        self.out = Path(out)
        self.path = self.out / STATE_FILE
        self.force = force
        self.warn = warn or _warn_stderr
        self.reused: list[str] = []

    def _state(self) -> dict[str, Any]:
        """The record as it is on disk now."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _files(self, outputs: list[Path]) -> dict[str, str]:
        return {Path(p).relative_to(self.out).as_posix(): sha256_file(p) for p in outputs}

    def current(self, name: str, key: str, outputs: list[Path]) -> bool:
        """Whether step ``name`` was done with ``key`` and its ``outputs`` are as it wrote
        them (one warning line when one changed since)."""
        record = None if self.force else self._state().get(name)
        if not isinstance(record, dict) or record.get("key") != key \
                or not all(Path(p).is_file() for p in outputs):
            return False
        written = record.get("files")
        if not isinstance(written, dict):
            return False
        changed = [rel for rel, digest in self._files(outputs).items()
                   if written.get(rel) != digest]
        if changed:
            self.warn(f"warning: {', '.join(changed)} in {self.out} changed since step {name} "
                      "wrote it (damaged?): computing it again")
        return not changed

    def mark(self, name: str, key: str, outputs: list[Path]) -> None:
        """Record step ``name`` as done with ``key`` and the hashes of its ``outputs`` (call
        after they are written): read, merge and write back the record."""
        state = self._state()
        state[name] = {"key": key, "files": self._files(outputs)}
        write_json(self.path, state)

    def reuse(self, name: str, key: str, outputs: list[Path], load: Callable[[], Any]
              ) -> tuple[bool, Any]:
        """``(True, load())`` if the step is current and its outputs load (then it is listed
        in ``reused``), else ``(False, None)`` (one warning line if they do not load)."""
        if not self.current(name, key, outputs):
            return False, None
        try:
            result = load()
        except (LandscapeError, OSError, ValueError, KeyError, TypeError) as exc:
            self.warn(f"warning: the outputs of step {name} in {self.out} cannot be read "
                      f"({exc}): computing them again")
            return False, None
        self.reused.append(name)
        return True, result

    def run(self, name: str, key: str, outputs: list[Path], load: Callable[[], Any],
            compute: Callable[[], Any]) -> Any:
        """``load()`` the step's outputs if they are current, else ``compute()`` them and
        record the step as done."""
        done, result = self.reuse(name, key, outputs, load)
        if done:
            return result
        result = compute()
        self.mark(name, key, outputs)
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
