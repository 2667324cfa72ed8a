"""Small shared helpers: devices, atomic file writes, hashing, provenance, progress."""
from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return the requested device, or the best available: cuda, then mps, then cpu."""
    if device is not None and str(device) != "auto":
        from .errors import LandscapeError
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise LandscapeError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or "
                                 "auto") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise LandscapeError(f"device {device!r} requested but CUDA is not available")
        if dev.type == "cuda" and dev.index is not None and \
                dev.index >= torch.cuda.device_count():
            raise LandscapeError(f"device {device!r} requested but only "
                                 f"{torch.cuda.device_count()} CUDA device(s) are visible")
        mps = getattr(torch.backends, "mps", None)
        if dev.type == "mps" and not (mps is not None and mps.is_available()):
            raise LandscapeError(f"device {device!r} requested but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


FLOAT32_MODES = ("ieee", "tf32")


def _float32_switches() -> list[Any]:
    """The backend objects whose ``fp32_precision`` decides float32 matmul/convolution math
    on CUDA (torch >= 2.9); empty on older torch."""
    switches = [getattr(torch.backends.cuda, "matmul", None),
                getattr(getattr(torch.backends, "cudnn", None), "conv", None)]
    return [s for s in switches if s is not None and hasattr(s, "fp32_precision")]


@contextlib.contextmanager
def float32_mode(mode: str, enabled: bool = True) -> Iterator[None]:
    """Run the block with float32 matmuls and convolutions in full precision (``ieee``) or in
    TensorFloat-32 (``tf32``, 10-bit mantissa on NVIDIA tensor cores), then restore the
    previous settings.

    These settings only matter on CUDA devices: callers pass ``enabled=(device is cuda)``.
    PyTorch's own default runs cuDNN convolutions in TF32 on Ampere and later GPUs, so a
    float32 result that must be float32 (surfaces, Hessian products) is computed under
    ``float32_mode("ieee")``.
    """
    if mode not in FLOAT32_MODES:
        from .errors import LandscapeError
        raise LandscapeError(f"unknown float32 mode {mode!r}: use ieee or tf32")
    if not enabled:
        yield
        return
    switches = _float32_switches()
    if switches:
        old = [s.fp32_precision for s in switches]
        for s in switches:
            s.fp32_precision = mode
    else:  # torch < 2.9: the boolean switches
        old = [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        yield
    finally:
        if switches:
            for s, value in zip(switches, old):
                s.fp32_precision = value
        else:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


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


def write_error(path: str | os.PathLike, exc: OSError) -> "Exception":
    """The one-line error for an OSError met while writing ``path`` (the user's name, never
    a temporary file's)."""
    from .errors import WriteError

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
    from .errors import LandscapeError

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


# ------------------------------------------------------------------------------- output locks

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
        from .errors import WriteError
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


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Content hash of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of named tensors (names, dtypes, shapes and bytes), order-independent.
    A 0-d entry is hashed as shape (1,) (its bytes cannot be viewed otherwise)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        t = t.reshape(1) if t.ndim == 0 else t
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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


# The command line being run, set by the command-line interface for the duration of one command
# (so a command run in-process, e.g. from a test, is recorded as itself, not as its host).
COMMAND_LINE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "landscape_command_line", default=None)


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


def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm progress bar on stderr (count, rate, time left); silent when ``enabled`` is False."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit=unit, leave=False,
                dynamic_ncols=True, file=sys.stderr)
