"""Writing files safely: atomic replacement, one-line write errors, leftover temporaries.

Every file the project writes goes through ``write_bytes`` (or ``atomic_path`` for writers
that need a path, such as figure backends): the content goes to a temporary file beside the
target, is flushed to disk and then ``os.replace``d over the target. A reader, or a process
killed at any moment, sees the old complete file or the new complete file, never a mix; an
OSError (full disk, no permission, name too long) becomes one ``WriteError`` naming the
user's file, with the old file unchanged and no temporary file left. HDF5 files are built in
memory (``write_hdf5``) so HDF5 itself never meets a full disk.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..errors import LandscapeError, WriteError

# Room left in a 255-byte file name for the dot, random part and suffix of a temporary file
# or a lock file beside it (".NAME.abcd1234.tmp", ".NAME.lock.owner").
_NAME_BYTES = 200
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def short_name(name: str) -> str:
    """``name``, or for names too long to carry a prefix and suffix, its first bytes plus a
    hash of the whole name (so temporary and lock files beside a 255-byte name still fit)."""
    raw = name.encode()
    if len(raw) <= _NAME_BYTES:
        return name
    head = raw[:_NAME_BYTES - 13].decode(errors="ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:12]}"


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """The one-line error for an OSError met while writing ``path`` (the user's name, never
    a temporary file's)."""
    if exc.errno in _SPACE_ERRNOS:
        reason = "no space left on the device (or the file-size limit was reached)"
    else:
        reason = (exc.strerror or str(exc)).rstrip(".").lower()
    return WriteError(f"cannot write {str(path)!r}: {reason}; any earlier version of it is "
                      "unchanged")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file. An OSError (full disk, no permission, ...) becomes a
    ``WriteError`` naming ``path``.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{short_name(path.name)}.", suffix=".tmp",
                                   dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give them the usual permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
        tmp_path = None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a Path if a file can be written there; else a one-line LandscapeError.

    Checked before any work: the path is not a folder, and its nearest existing parent is a
    folder this process may write in (missing folders below it are created on writing).
    """
    path = Path(path)
    if path.is_dir():
        raise LandscapeError(f"{path}: is a folder, not a file")
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise LandscapeError(f"{path}: cannot be written ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LandscapeError(f"{path}: cannot be written (no permission to write in {probe})")
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, replace): the one
    place where the project's files meet the disk, so a full disk is one ``WriteError``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` of ``obj`` through ``write_bytes``. Serialized in memory: torch.save to a
    file stores the file's (temporary) name inside the archive, so identical objects would give
    files, and hashes, that differ."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def write_hdf5(path: str | os.PathLike, fill: Callable[[Any], None]) -> Path:
    """Build an HDF5 file in memory with ``fill(h5py_file)``, then ``write_bytes`` it.

    HDF5 never touches the disk itself: a full disk during its writes crashed the library
    (segmentation faults, pages of tracebacks); a plain write fails with one OSError.
    """
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as fh:
        fill(fh)
    return write_bytes(path, buffer.getvalue())


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Delete the temporary files an interrupted writer of ``path`` left beside it
    (``.NAME.*.tmp`` and ``.NAME.*.tmp.<suffix>``). Call it only while holding
    ``output_lock(path)``: then no live process is writing them.

    Returns:
        The number of files removed.
    """
    path = Path(path)
    removed = 0
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob_escape(short_name(path.name))}.*.tmp*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters taken literally."""
    import glob

    return glob.escape(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
