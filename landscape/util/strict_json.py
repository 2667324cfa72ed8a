"""Strict JSON text and files.

JSON has no NaN or infinity: ``json_text`` writes non-finite numbers as ``null`` and, for a
dict at the top, lists where they were under ``"nonfinite_fields"``; values JSON has no type
for (paths, devices, dtypes, arrays' elements of other kinds) are written as their ``str``.
``write_json`` writes such text atomically through ``files.write_bytes``.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from .files import write_bytes


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON, atomically.

    NaN and infinite numbers, which JSON cannot hold, are written as ``null``; a dict at the
    top then lists where they were under ``"nonfinite_fields"`` (e.g.
    ``["trace.estimate"]``).
    """
    write_bytes(path, (json_text(obj, indent=2) + "\n").encode())


def json_text(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON text (no NaN tokens: see ``write_json``); values JSON has no
    type for (paths, devices, dtypes, anything else) are written as their ``str``."""
    bad: list[str] = []
    plain = _plain(obj, "", bad)
    if bad and isinstance(plain, dict):
        plain["nonfinite_fields"] = bad
    return json.dumps(plain, indent=indent, sort_keys=False, allow_nan=False)


def _plain(obj: Any, where: str, bad: list[str]) -> Any:
    """``obj`` as JSON types, non-finite floats replaced by None (their places in ``bad``)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}.{k}" if where else str(k), bad)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", bad) for i, v in enumerate(obj)]
    if hasattr(obj, "tolist") and not isinstance(obj, (bool, int, float, str)):
        return _plain(obj.tolist(), where, bad)
    if isinstance(obj, float) and not math.isfinite(obj):
        bad.append(where)
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
