"""How an artifact was made: the command line, the time, the versions, the host.

``COMMAND_LINE`` is set by the command-line interface for the duration of one command, so a
command run in-process (from a test, say) is recorded as itself, not as its host program.
"""
from __future__ import annotations

import contextvars
import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import Any

import torch

# The command line being run, set by the command-line interface for the duration of one command
# (so a command run in-process, e.g. from a test, is recorded as itself, not as its host).
COMMAND_LINE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "landscape_command_line", default=None)


def versions() -> dict[str, str]:
    """Versions of Python and the packages results depend on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "scipy", "h5py", "landscape-minima"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def provenance(**extra: Any) -> dict[str, Any]:
    """How an artifact was made: command line, time, versions, host, plus ``extra`` fields."""
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program == "__main__.py":  # python -m landscape / torchrun -m landscape
        program = "python -m landscape"
    command = COMMAND_LINE.get()
    if command is None:
        command = " ".join([program] + sys.argv[1:]) if sys.argv else ""
    info: dict[str, Any] = {
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "host": platform.node(),
        "torch_threads": torch.get_num_threads(),
    }
    info.update(extra)
    return info
