"""Deprecated location, kept for one release: use landscape.util.

Every name this module held is re-exported from its new home in ``landscape.util``
(``_float32_switches`` is ``landscape.util.devices.float32_switches``).
"""
from __future__ import annotations

from .util.devices import FLOAT32_MODES, float32_mode, float32_switches, pick_device
from .util.files import (atomic_path, check_writable, glob_escape, remove_stale_temps,
                         short_name, write_bytes, write_error, write_hdf5, write_torch)
from .util.hashing import sha256_file, sha256_tensors
from .util.locks import lock_file_for, output_lock
from .util.progress import progress
from .util.provenance import COMMAND_LINE, provenance, versions
from .util.strict_json import json_text, write_json

_float32_switches = float32_switches

__all__ = [
    "FLOAT32_MODES", "float32_mode", "pick_device", "atomic_path", "check_writable",
    "glob_escape", "remove_stale_temps", "short_name", "write_bytes", "write_error",
    "write_hdf5", "write_torch", "sha256_file", "sha256_tensors", "lock_file_for",
    "output_lock", "progress", "COMMAND_LINE", "provenance", "versions", "json_text",
    "write_json", "float32_switches",
]
