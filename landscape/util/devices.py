"""Devices and float32 numerics.

``pick_device`` turns a user's device name (or None/"auto") into a ``torch.device`` that
exists here, refusing one that does not with a ``LandscapeError``. ``float32_mode`` runs a
block with CUDA float32 matmuls and convolutions in full precision or in TensorFloat-32 and
restores the previous settings afterwards, on errors too.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from ..errors import LandscapeError

FLOAT32_MODES = ("ieee", "tf32")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return the requested device, or the best available: cuda, then mps, then cpu."""
    if device is not None and str(device) != "auto":
        return _checked_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a LandscapeError when it is unknown or absent."""
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
    if dev.type == "mps" and not _mps_available():
        raise LandscapeError(f"device {device!r} requested but MPS is not available")
    return dev


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def float32_switches() -> list[Any]:
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
        raise LandscapeError(f"unknown float32 mode {mode!r}: use ieee or tf32")
    if not enabled:
        yield
        return
    switches = float32_switches()
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
