"""Small shared helpers below every other part of landscape.

One concern a module: ``devices`` (device choice, float32 numerics), ``files`` (atomic
writes, write errors, leftover temporaries), ``strict_json`` (JSON without NaN tokens),
``locks`` (advisory output locks between processes), ``hashing`` (content hashes),
``provenance`` (how an artifact was made), ``progress`` (progress bars) and ``checks``
(option checks). They depend on ``landscape.errors`` only; heavy optional libraries (h5py,
filelock, tqdm) load inside the functions that use them.
"""
from __future__ import annotations

from .checks import check_choice
from .devices import FLOAT32_MODES, float32_mode, float32_switches, pick_device
from .files import (atomic_path, check_writable, glob_escape, remove_stale_temps, short_name,
                    write_bytes, write_error, write_hdf5, write_torch)
from .hashing import sha256_file, sha256_tensors
from .locks import lock_file_for, output_lock
from .progress import progress
from .provenance import COMMAND_LINE, provenance, versions
from .strict_json import json_text, write_json

__all__ = [
    # devices and numerics
    "pick_device", "float32_mode", "float32_switches", "FLOAT32_MODES",
    # files
    "atomic_path", "write_bytes", "write_torch", "write_hdf5", "write_json", "json_text",
    "check_writable", "write_error", "remove_stale_temps", "short_name", "glob_escape",
    # locks
    "lock_file_for", "output_lock",
    # hashes and provenance
    "sha256_file", "sha256_tensors", "provenance", "versions", "COMMAND_LINE",
    # progress and checks
    "progress", "check_choice",
]
