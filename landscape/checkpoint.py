"""Checkpoint files: ``save_checkpoint`` / ``load_checkpoint``.

Format (a ``torch.save`` dict, loadable with ``weights_only=True``):
``format="landscape-checkpoint"``, ``format_version``, ``model`` (the ``landscape_spec``:
builder name, options, seed, input shape, classes, dataset spec), ``state_dict``, ``extra``
(epoch, metrics, anything the caller adds).

A checkpoint names the function that builds its model. For the built-in models that is a
name in the registry; for a user's ``module:function`` or ``file.py:function`` rebuilding
would import and run that code, so a checkpoint is a program as much as data. Loading one
therefore never imports code it names unless the caller says so: ``builder=`` names the
function to use instead (the command line's ``--model``), or ``trust_code=True`` (
``--trust-code``) accepts the stored name. The command line sets both for a whole command
with ``trusted_code``.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .errors import CheckpointError
from .util import write_torch

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
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": _canonical(spec),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "extra": _canonical(extra or {})}
    return write_torch(path, blob)  # byte-identical for identical runs


def _canonical(obj: Any) -> Any:
    """A copy whose pickle depends on its content alone: pickle writes a string or container
    met twice as a back-reference, so equal strings that were one object in one run (a
    keyword's name) and two in another (read back from a file, as in a resumed run) made the
    bytes differ. Fresh containers and interned strings make every run's sharing the same."""
    if isinstance(obj, str):
        return sys.intern(str(obj))
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_canonical(v) for v in obj)
    return obj


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """The raw checkpoint dict, checked for format and for damage (``read_torch``); clear
    errors for missing or corrupt files (``what`` names the file's role in them)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    blob = read_torch(path, what)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a landscape checkpoint "
                              "(save one with landscape train or save_checkpoint)")
    return blob


def read_torch(path: str | os.PathLike, what: str = "checkpoint",
               remedy: str = "restore or recompute it") -> Any:
    """``torch.load`` (``weights_only=True``, onto the CPU) of a file ``torch.save`` wrote,
    after checking the CRC of every member of its zip archive: torch itself does not, so a
    flipped byte in a tensor would load as a wrong weight. A legacy (non-zip) file is loaded
    as before.

    Args:
        path: the file.
        what: what it is, for messages (``checkpoint``, ``resume state``, ...).
        remedy: what to do about a damaged or unreadable file, for messages.

    Raises:
        CheckpointError: one line naming the file: damaged (a CRC or the archive's structure
            does not check out) or unreadable.
    """
    path = Path(path)
    verify_archive(path, what, remedy)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable {what} ({type(exc).__name__}): "
                              f"{remedy}") from exc


def verify_archive(path: str | os.PathLike, what: str = "checkpoint",
                   remedy: str = "restore or recompute it") -> None:
    """Check every member's CRC of the zip archive ``path`` (one read of the file); a file
    that does not start like a zip archive is left to its reader.

    Raises:
        CheckpointError: a member fails its CRC or the archive is broken (truncated, ...).
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, RuntimeError, zlib.error) as exc:
        bad = f"its archive is broken: {exc}"
    else:
        bad = bad and f"{bad} fails its CRC check"
    if bad:
        raise CheckpointError(f"{what} {str(path)!r} is damaged ({bad}): it was changed or cut "
                              f"short after it was written; {remedy}")


# (trust_code, builder) for the command being run; set by the command line, see trusted_code
_TRUST: contextvars.ContextVar[tuple[bool, str | None]] = contextvars.ContextVar(
    "landscape_trusted_code", default=(False, None))


@contextlib.contextmanager
def trusted_code(trust_code: bool = False, builder: str | None = None) -> Iterator[None]:
    """Within the block, ``load_checkpoint`` calls that say nothing themselves use these
    (the command line's ``--trust-code`` and ``--model``)."""
    token = _TRUST.set((bool(trust_code), builder))
    try:
        yield
    finally:
        _TRUST.reset(token)


def code_trusted() -> bool:
    """Whether the command being run passed ``--trust-code`` (see ``trusted_code``)."""
    return _TRUST.get()[0]


def names_code(name: Any) -> bool:
    """Whether a stored model or dataset name refers to code (``module:function``)."""
    return isinstance(name, str) and ":" in name


def check_dataset_code(spec: dict[str, Any] | None, hint: str) -> None:
    """Refuse a dataset spec stored in a checkpoint that names code (``module:function``)
    unless code is trusted (``trusted_code``); ``hint`` says how to trust it or name the data
    another way.

    Raises:
        CheckpointError: the spec names code and code is not trusted.
    """
    name = (spec or {}).get("name")
    if names_code(name) and not code_trusted():
        raise CheckpointError(f"the checkpoint names code for its dataset ({name!r}): loading "
                              f"it would import and run that code. {hint}")


def _model_name(spec: dict[str, Any], path: Path, trust_code: bool | None,
                builder: str | None) -> str:
    """The builder to rebuild with: the caller's, a built-in, or trusted stored code."""
    default_trust, default_builder = _TRUST.get()
    builder = builder if builder is not None else default_builder
    trust_code = default_trust if trust_code is None else trust_code
    if builder is not None:
        return builder
    name = spec.get("name")
    if names_code(name) and not trust_code:
        raise CheckpointError(
            f"checkpoint {str(path)!r} names code to build its model ({name!r}): loading it "
            "would import and run that code. If you trust it, pass --trust-code (Python: "
            "trust_code=True), or name the builder yourself with --model module:function")
    return name


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, *,
                    trust_code: bool | None = None, builder: str | None = None,
                    allow_nonfinite: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint, rebuilding its model unless one is given.

    Args:
        path: file written by ``save_checkpoint``.
        model: load into this model instead of rebuilding (must have the same entries).
        trust_code: rebuild a model the checkpoint names as ``module:function`` or
            ``file.py:function`` (imports and runs that code). None: as ``trusted_code``
            says (default False).
        builder: build the model with this registered name or ``module:function`` instead
            of the stored name (the stored options, seed and shapes are kept).
        allow_nonfinite: accept NaN or infinite weights (refused by default: every loss,
            Hessian and surface of such a model is undefined).

    Raises:
        CheckpointError: missing or corrupt file, weights that do not fit, or a checkpoint
            naming code without ``trust_code`` or ``builder``, or non-finite weights.

    Returns:
        ``(model, info)``; ``info`` has ``model`` (spec), ``dataset`` (spec for
        ``load_dataset(**info["dataset"])``), ``extra`` and ``path``.
    """
    from .models import rebuild_model

    blob = read_checkpoint(path)
    spec = blob["model"]
    if model is None:
        name = _model_name(spec, Path(path), trust_code, builder)
        model = rebuild_model({**spec, "name": name})
    try:
        model.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit model "
                              f"{spec.get('name')!r}: {detail}") from exc
    if not allow_nonfinite:
        _check_finite(blob["state_dict"], Path(path))
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


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a ``landscape train`` run folder's final ``model.pt``.

    Raises:
        CheckpointError: missing, or a folder without ``model.pt``.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "model.pt").is_file():
            raise CheckpointError(f"{str(path)!r} is a folder without model.pt (give a "
                                  "checkpoint or a finished `landscape train` run folder)")
        return p / "model.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    return p


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


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN or infinite weights, naming how many and where."""
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in state.items()
           if t.is_floating_point() or t.is_complex()}
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        total = sum(t.numel() for t in state.values())
        where = ", ".join(list(bad)[:3]) + (", ..." if len(bad) > 3 else "")
        raise CheckpointError(f"checkpoint {str(path)!r} holds non-finite weights "
                              f"({sum(bad.values()):,} of {total:,} values NaN or inf, in "
                              f"{where}): its loss, Hessian and surface are undefined")
