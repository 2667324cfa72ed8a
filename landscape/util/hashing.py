"""Content hashes (SHA-256, hex) of files and of named tensors.

The same content always gives the same hash: a file's bytes; tensors' names, dtypes, shapes
and bytes, whatever their order in the dict or their device.
"""
from __future__ import annotations

import hashlib
import os

import torch


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
