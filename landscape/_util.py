"""Small shared helpers: devices, atomic file writes, hashing, provenance, progress."""
from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give them the usual permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default``: arrays and tensors as lists, anything else as its text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)  # paths, devices, dtypes, and anything else a record may name


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
