"""Advisory output locks between processes.

``output_lock(path)`` holds the operating system's lock (flock, through the ``filelock``
package) on ``.NAME.lock`` beside an output file, or ``.landscape.lock`` inside a run
folder, for the length of a block. A second process asking for the same lock is refused at
once with a ``WriteError`` naming the holder; the same process may take a lock it already
holds (a library call inside a command locks the same output again).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import WriteError
from .files import short_name, write_error
from .provenance import COMMAND_LINE

# Locks this process holds: lock-file path -> [FileLock, depth]. A library call inside a
# command locks the same output again; flock would refuse the second file descriptor.
_HELD: dict[str, list[Any]] = {}


def lock_file_for(path: str | os.PathLike) -> Path:
    """The advisory lock file of an output: ``.NAME.lock`` beside a file, ``.landscape.lock``
    inside a folder (a run folder; create it before locking it)."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        return path / ".landscape.lock"
    return path.parent / f".{short_name(path.name)}.lock"


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the advisory lock of the output ``path`` (a file or a run folder) for the block.

    A second process that asks for the same lock is refused at once with a ``WriteError``
    naming the holder (pid, host, command, start time, read from ``.NAME.lock.owner``).
    The lock is the operating system's (flock), so a killed holder's lock is free again at
    once (its ``.NAME.lock`` file stays behind, harmless, until the next writer is done);
    taking the lock also proves the folder is writable before any work starts.

    Raises:
        WriteError: another process holds the lock, or the folder is not writable.
    """
    import filelock

    lock_path = lock_file_for(path)
    key = str(lock_path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    lock = filelock.FileLock(key, timeout=0)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise WriteError(f"{str(path)!r} is being written by another process "
                         f"({_holder(lock_path)}): wait for it to finish, or write to another "
                         "file") from None
    except OSError as exc:
        raise write_error(path, exc) from None
    owner = lock_path.with_name(lock_path.name + ".owner")
    _HELD[key] = [lock, 1]
    try:
        with contextlib.suppress(OSError):  # the holder's name is a courtesy, not the lock
            owner.write_text(json.dumps({
                "pid": os.getpid(), "host": platform.node(),
                "command": COMMAND_LINE.get() or " ".join(sys.argv),
                "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}))
        yield
    finally:
        # Removed while still held: a process that opened the old file before it went finds
        # it unlinked after its flock and takes a fresh one (filelock checks st_nlink).
        for leftover in (owner, lock_path):
            with contextlib.suppress(OSError):
                leftover.unlink()
        del _HELD[key]
        lock.release()


def _holder(lock_path: Path) -> str:
    """Who holds a lock, from its owner file."""
    try:
        info = json.loads(lock_path.with_name(lock_path.name + ".owner").read_text())
        return (f"pid {info['pid']} on {info['host']} since {info['since']}: "
                f"{info['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "process unknown"
