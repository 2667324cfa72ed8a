"""Direction files: a list of directions saved once to its own HDF5 file, with a content hash.

Layout: root attrs ``format="landscape-directions"``, ``format_version``, ``count``,
``sha256`` (``directions_sha256``: names, dtypes, shapes, bytes and order of every entry)
and ``provenance`` (JSON); dataset ``/d<k>/<entry name>`` for each direction ``k``, whose
attr ``order`` keeps the entries' order. A file is written once, atomically (built in
memory); reading it verifies the hash, so a damaged or altered file is refused with one
``StoreError`` line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .errors import StoreError
from .util import json_text, sha256_tensors, write_hdf5

if TYPE_CHECKING:  # the type lives with the directions, which re-export this module
    from .directions import Direction

DIRECTIONS_FORMAT = "landscape-directions"
DIRECTIONS_FORMAT_VERSION = 1


def directions_sha256(directions: Sequence[Direction]) -> str:
    """Content hash of a list of directions (names, dtypes, shapes, bytes and order)."""
    return sha256_tensors({f"{k}/{n}": t for k, d in enumerate(directions) for n, t in d.items()})


def save_directions(path: str | os.PathLike, directions: Sequence[Direction],
                    provenance: dict[str, Any] | None = None, overwrite: bool = False) -> str:
    """Write directions to their own HDF5 file, once, atomically.

    Layout: root attrs ``format="landscape-directions"``, ``format_version``, ``count``,
    ``sha256`` (``directions_sha256``) and ``provenance`` (JSON); dataset
    ``/d<k>/<entry name>`` for each direction ``k``.

    Args:
        path: destination (``.h5``).
        directions: the directions.
        provenance: how they were made (norm, seed, checkpoint hash, ...).
        overwrite: replace an existing file (otherwise an existing file is an error).

    Returns:
        The content hash.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(f"directions file {str(path)!r} already exists (written once; remove "
                         "it or pass overwrite)")
    digest = directions_sha256(directions)
    def fill(fh) -> None:
        fh.attrs["format"] = DIRECTIONS_FORMAT
        fh.attrs["format_version"] = DIRECTIONS_FORMAT_VERSION
        fh.attrs["count"] = len(directions)
        fh.attrs["sha256"] = digest
        fh.attrs["provenance"] = json_text(provenance or {})
        for k, d in enumerate(directions):
            group = fh.create_group(f"d{k}")
            group.attrs["order"] = json.dumps(list(d))
            for n, t in d.items():
                group.create_dataset(n, data=t.detach().cpu().numpy())

    write_hdf5(path, fill)  # built in memory: a full disk is one WriteError, not an HDF5 crash
    return digest


def load_directions(path: str | os.PathLike) -> tuple[list[Direction], dict[str, Any]]:
    """Read a directions file and verify its content hash.

    Returns:
        ``(directions, info)``; info has ``sha256``, ``provenance`` and ``path``.

    Raises:
        StoreError: missing, corrupt, not a directions file, or content not matching its hash.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise StoreError(f"directions file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as fh:
            if fh.attrs.get("format") != DIRECTIONS_FORMAT:
                raise StoreError(f"{str(path)!r} is not a landscape directions file")
            count = int(fh.attrs["count"])
            dirs = []
            for k in range(count):
                group = fh[f"d{k}"]
                order = json.loads(group.attrs["order"])
                dirs.append({n: torch.from_numpy(np.asarray(group[n][()])) for n in order})
            digest = str(fh.attrs["sha256"])
            prov = json.loads(fh.attrs.get("provenance", "{}"))
    except StoreError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError on damaged files
        raise StoreError(f"{str(path)!r} is not a readable directions file (corrupt or "
                         f"truncated: {type(exc).__name__})") from None
    if directions_sha256(dirs) != digest:
        raise StoreError(f"directions file {str(path)!r} is damaged: its content does not "
                         "match its recorded sha256")
    return dirs, {"sha256": digest, "provenance": prov, "path": str(path)}


def write_or_check_directions(path: Path, dirs: Sequence[Direction], recipe: dict[str, Any],
                              force: bool) -> tuple[bool, Path | None]:
    """Write a directions file once: write it, or check that the existing one holds these
    directions (``force`` replaces one that differs, moving it aside first).

    Returns:
        (True when this call wrote the file; the replaced file, moved aside, if any: the
        caller deletes it, or puts it back if its work fails).
    """
    digest = directions_sha256(dirs)
    if path.exists():
        try:
            same = load_directions(path)[1]["sha256"] == digest
        except StoreError:
            if not force:
                raise
            same = False
        if same:
            return False, None
        if not force:
            raise StoreError(f"directions file {str(path)!r} holds other directions than these "
                             "options make (sha256 differs); use --force to replace it or "
                             "another --out")
        aside = path.with_name(f".{path.name}.replaced")
        os.replace(path, aside)
        try:
            save_directions(path, dirs, recipe)
        except BaseException:
            os.replace(aside, path)
            raise
        return True, aside
    save_directions(path, dirs, recipe)
    return True, None
