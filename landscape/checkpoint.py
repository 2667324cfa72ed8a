"""Checkpoint files: ``save_checkpoint`` / ``load_checkpoint``.

Format (a ``torch.save`` dict, loadable with ``weights_only=True``):
``format="landscape-checkpoint"``, ``format_version``, ``model`` (the ``landscape_spec``:
builder name, options, seed, input shape, classes, dataset spec), ``state_dict``, ``extra``
(epoch, metrics, anything the caller adds).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._util import atomic_path
from .errors import CheckpointError

FORMAT = "landscape-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None
                    ) -> Path:
    """Write ``model`` (weights, buffers and how to rebuild it) to ``path`` atomically.

    Args:
        path: destination file (``.pt``).
        model: a model made by ``build_model`` (it carries ``landscape_spec``).
        extra: JSON-like metadata stored alongside (epoch, metrics, ...).

    Returns:
        The path written.
    """
    spec = getattr(model, "landscape_spec", None)
    if spec is None:
        raise CheckpointError("model was not made by build_model: it has no landscape_spec, "
                              "so the checkpoint could not be reloaded")
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": spec,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "extra": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, checked for format; clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint ({type(exc).__name__})"
                              ) from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a landscape checkpoint "
                              "(save one with landscape train or save_checkpoint)")
    return blob


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint, rebuilding its model unless one is given.

    Args:
        path: file written by ``save_checkpoint``.
        model: load into this model instead of rebuilding (must have the same entries).

    Returns:
        ``(model, info)``; ``info`` has ``model`` (spec), ``dataset`` (spec for
        ``load_dataset(**info["dataset"])``), ``extra`` and ``path``.
    """
    from .models import rebuild_model

    blob = read_checkpoint(path)
    spec = blob["model"]
    if model is None:
        model = rebuild_model(spec)
    try:
        model.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit model "
                              f"{spec.get('name')!r}: {detail}") from exc
    model.eval()
    info = {"model": spec, "dataset": spec.get("dataset"), "extra": blob.get("extra", {}),
            "path": str(path)}
    return model, info
