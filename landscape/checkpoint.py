"""Checkpoint files: ``save_checkpoint`` / ``load_checkpoint``.

Format (a ``torch.save`` dict, loadable with ``weights_only=True``):
``format="landscape-checkpoint"``, ``format_version``, ``model`` (the ``landscape_spec``:
builder name, options, seed, input shape, classes, dataset spec), ``state_dict``, ``extra``
(epoch, metrics, anything the caller adds).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

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


def trained_loss(info: dict[str, Any], override: str | None = None) -> str:
    """The loss a checkpoint was trained with (``info`` from ``load_checkpoint``), unless
    ``override`` names one; ``cross_entropy`` when the checkpoint does not say."""
    if override is not None:
        return override
    config = (info.get("extra") or {}).get("config") or {}
    return config.get("loss", "cross_entropy")


def checkpoint_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Short names of checkpoints for legends and anchors: a run's final ``model.pt`` is named
    by its run folder (``runs/seed1/model.pt`` -> ``seed1``), another file by its name; names
    that would repeat keep their folder (``a/epoch_9.pt``, ``b/epoch_9.pt``)."""
    paths = [Path(p) for p in paths]
    names = [p.parent.name if p.name == "model.pt" and p.parent.name else p.name
             for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p.parent.name) / p.name) for p in paths]


def run_checkpoints(run_dir: str | os.PathLike) -> tuple[list[Path], Path, list[int]]:
    """The per-epoch checkpoints of a ``landscape train`` run folder, its final model, and the
    epoch of each checkpoint (from its name; -1 where it has none).

    Raises:
        CheckpointError: no such folder, no ``model.pt``, or fewer than two checkpoints.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
    final = root / "model.pt"
    if not final.is_file():
        raise CheckpointError(f"{str(run_dir)!r} has no model.pt (is it a finished `landscape "
                              "train` run folder?)")
    paths = sorted((root / "checkpoints").glob("*.pt"))
    if len(paths) < 2:
        raise CheckpointError(f"{str(run_dir)!r} has {len(paths)} checkpoints under "
                              "checkpoints/; trajectory PCA needs at least 2 (train with "
                              "--checkpoint-every)")
    epochs = [int(m.group(1)) if (m := re.search(r"(\d+)", p.stem)) else -1 for p in paths]
    return paths, final, epochs
