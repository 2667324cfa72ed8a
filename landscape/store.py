"""HDF5 surface files: atomic checkpoints, provenance, identity checks, loading.

Layout of a surface file (``format="landscape-surface"``, ``format_version=1``)::

    /                  attrs: format, format_version, created, updated, provenance (JSON),
                       identity (JSON: what must match to resume), model_sha256,
                       directions_sha256, data_sha256, grid ("51x51"), ndim, metrics (JSON),
                       points, points_done, nonfinite (points with a NaN/inf value), and,
                       when the provenance has them, norm, ignore, kind, seed, checkpoint and
                       checkpoint_sha256
    /axes/x, /axes/y   1-D float64 coordinates (/axes/y only for 2-D surfaces)
    /metrics/<name>    float64 values, shape (len(x),) or (len(x), len(y)); NaN = not yet
                       computed, or a NaN loss where /done is True
    /done              bool per grid point
    /directions        attrs: path and sha256 of the directions file (written once)
    /trajectory        optional (``landscape trajectory``): coords (n, 2) projected path,
                       explained_variance_ratio (2,), labels (n,) checkpoint names,
                       epochs (n,) (-1 where unknown)
    /anchors           optional (``interpolate``, ``plane``): coords (m, ndim) of the models
                       that define the directions, labels (m,)

The file is built in memory and written by ``landscape.util.write_bytes``: to a temporary
file in the same folder, flushed to disk, then ``os.replace``d over the target. A reader (or
a process killed at any moment, SIGKILL included) sees the old complete file or the new
complete file, never a mix; a full disk is one ``WriteError`` naming the file, the old file
unchanged and no temporary file left.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StoreError
from .grid import Surface, describe_axis
from .util import json_text, write_hdf5

FORMAT = "landscape-surface"
FORMAT_VERSION = 1

# identity keys and how a difference is named in messages
_IDENTITY_NAMES = {
    "model_sha256": "model weights",
    "directions_sha256": "directions",
    "data_sha256": "data",
    "metrics": "metrics",
    "loss": "loss",
    "precision": "precision",
    "channels_last": "channels-last memory format",
    "bn_recalibrate": "BatchNorm recalibration",
    "hessian": "Hessian metrics",
    "seed": "seed",
}
# the value of an identity key in files written before the key existed
_IDENTITY_DEFAULTS = {"channels_last": False}
_COPIED_ATTRS = ("norm", "ignore", "kind", "seed", "checkpoint", "checkpoint_sha256")


def save_surface(path: str | os.PathLike, surface: Surface) -> Path:
    """Write ``surface`` to ``path`` atomically (built in memory; temp file in the same
    folder, fsync, replace).

    Returns:
        The path written.

    Raises:
        WriteError: the file could not be written (full disk, ...); the old one is unchanged.
    """
    path = Path(path)
    prov = dict(surface.provenance)
    identity = prov.get("identity", {})
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def fill(fh) -> None:
        fh.attrs["format"] = FORMAT
        fh.attrs["format_version"] = FORMAT_VERSION
        fh.attrs["created"] = str(prov.get("created", now))
        fh.attrs["updated"] = now
        fh.attrs["provenance"] = json_text(prov)
        fh.attrs["identity"] = json_text(identity)
        for key in ("model_sha256", "directions_sha256", "data_sha256"):
            fh.attrs[key] = str(identity.get(key, ""))
        fh.attrs["grid"] = "x".join(str(n) for n in surface.shape)
        fh.attrs["ndim"] = surface.ndim
        fh.attrs["metrics"] = json.dumps(list(surface.metrics))
        fh.attrs["points"] = int(np.prod(surface.shape))
        fh.attrs["points_done"] = int(np.sum(surface.done))
        fh.attrs["nonfinite"] = surface.nonfinite
        for key in _COPIED_ATTRS:
            if prov.get(key) is not None:
                fh.attrs[key] = prov[key] if isinstance(prov[key], (int, float)) \
                    else str(prov[key])
        fh.create_dataset("axes/x", data=np.asarray(surface.x, dtype=np.float64))
        if surface.y is not None:
            fh.create_dataset("axes/y", data=np.asarray(surface.y, dtype=np.float64))
        for name, values in surface.metrics.items():
            fh.create_dataset(f"metrics/{name}", data=np.asarray(values, dtype=np.float64))
        fh.create_dataset("done", data=np.asarray(surface.done, dtype=bool))
        group = fh.create_group("directions")
        info = prov.get("directions", {}) or {}
        group.attrs["path"] = str(info.get("path") or "")
        group.attrs["sha256"] = str(info.get("sha256") or identity.get("directions_sha256",
                                                                        ""))
        _write_table(fh, "trajectory", surface.trajectory)
        _write_table(fh, "anchors", surface.anchors)

    write_hdf5(path, fill)
    return path


def _write_table(fh, name: str, table: dict[str, Any] | None) -> None:
    if not table:
        return
    group = fh.create_group(name)
    for key, value in table.items():
        arr = np.asarray(value)
        if arr.dtype.kind in ("U", "O"):
            import h5py
            group.create_dataset(key, data=[str(v) for v in arr.ravel()],
                                 dtype=h5py.string_dtype())
        else:
            group.create_dataset(key, data=arr)


def _read_table(fh, name: str) -> dict[str, np.ndarray] | None:
    if name not in fh:
        return None
    out = {}
    for key, ds in fh[name].items():
        value = ds[()]
        if ds.dtype.kind == "O" or (ds.dtype.kind == "S"):
            value = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in value])
        out[key] = np.asarray(value)
    return out


def load_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file.

    Returns:
        The Surface (``provenance`` includes ``identity``; ``path`` is set).

    Raises:
        StoreError: the file is missing, not HDF5, not a surface file, or damaged.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise StoreError(f"surface file {str(path)!r} does not exist")
    if not path.is_file():
        raise StoreError(f"{str(path)!r} is not a file")
    try:
        fh = h5py.File(path, "r")
    except Exception:
        raise StoreError(f"{str(path)!r} is not a readable HDF5 file (corrupt, truncated or "
                         "another format)") from None
    with fh:
        if fh.attrs.get("format") != FORMAT:
            raise StoreError(f"{str(path)!r} is not a landscape surface file")
        version = int(fh.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise StoreError(f"{str(path)!r} has surface format version {version}; this "
                             f"version of landscape reads up to {FORMAT_VERSION}")
        try:
            return _read_surface(fh, path)
        except StoreError:
            raise
        except Exception as exc:  # missing datasets, bad JSON, wrong shapes
            raise StoreError(f"{str(path)!r} is a damaged surface file ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:120]})") from None


def _read_surface(fh, path: Path) -> Surface:
    x = np.asarray(fh["axes/x"][()], dtype=np.float64)
    y = np.asarray(fh["axes/y"][()], dtype=np.float64) if "axes/y" in fh else None
    shape = (len(x),) if y is None else (len(x), len(y))
    metrics = {name: np.asarray(ds[()], dtype=np.float64) for name, ds in fh["metrics"].items()}
    order = json.loads(fh.attrs.get("metrics", "[]"))
    metrics = {m: metrics[m] for m in order if m in metrics} | metrics
    done = np.asarray(fh["done"][()], dtype=bool)
    for name, arr in list(metrics.items()) + [("done", done)]:
        if arr.shape != shape:
            raise StoreError(f"{str(path)!r} is a damaged surface file: {name} has shape "
                             f"{arr.shape}, the grid is {shape}")
    prov = json.loads(fh.attrs.get("provenance", "{}"))
    prov.setdefault("identity", json.loads(fh.attrs.get("identity", "{}")))
    return Surface(x=x, y=y, metrics=metrics, done=done, provenance=prov, path=str(path),
                   trajectory=_read_table(fh, "trajectory"), anchors=_read_table(fh, "anchors"))


def differences(existing: Surface, identity: dict[str, Any], x: np.ndarray,
                y: np.ndarray | None) -> list[str]:
    """What differs between a stored surface and a new request (empty when resumable)."""
    out = []
    for axis, old, new in (("x", existing.x, x), ("y", existing.y, y)):
        same = (old is None and new is None) or (
            old is not None and new is not None and old.shape == np.shape(new)
            and np.array_equal(old, np.asarray(new, dtype=np.float64)))
        if not same:
            out.append(f"grid {axis} ({describe_axis(old)} in the file, {describe_axis(new)} "
                       "now)")
    old_id = existing.provenance.get("identity", {})
    for key, label in _IDENTITY_NAMES.items():
        a = old_id.get(key, _IDENTITY_DEFAULTS.get(key))
        b = identity.get(key, _IDENTITY_DEFAULTS.get(key))
        if a != b:
            if key.endswith("sha256"):
                out.append(f"{label} (sha256 {str(a)[:12]} in the file, {str(b)[:12]} now)")
            else:
                out.append(f"{label} ({a!r} in the file, {b!r} now)")
    return out


def resumable(path: str | os.PathLike, identity: dict[str, Any], x: np.ndarray,
              y: np.ndarray | None) -> Surface:
    """Load a surface to resume, refusing one made from other inputs.

    Raises:
        StoreError: naming every difference (grid, model, directions, data, metrics, ...).
    """
    existing = load_surface(path)
    diffs = differences(existing, identity, x, y)
    if diffs:
        raise StoreError(f"cannot resume {str(path)!r}: it was made with other "
                         f"{'; '.join(diffs)}. Use force (--force) to overwrite it or write "
                         "to another file")
    return existing


def stored_settings(path: str | os.PathLike) -> dict[str, Any]:
    """What a surface file was made with, to resume it with nothing else given: its axes
    ``x`` and ``y`` and the evaluation settings of its identity (``metrics``, ``loss``,
    ``precision``, ``channels_last``, ``bn_recalibrate``, ``hessian``, ``seed``; a callable
    loss is not stored by name, and is left out).

    Raises:
        StoreError: the file is missing or not a surface file.
    """
    surface = load_surface(path)
    identity = surface.provenance.get("identity", {})
    out: dict[str, Any] = {"x": surface.x, "y": surface.y}
    for key in ("metrics", "loss", "precision", "channels_last", "bn_recalibrate", "hessian",
                "seed"):
        if identity.get(key) is not None:
            out[key] = tuple(identity[key]) if key == "metrics" else identity[key]
    if out.get("loss") not in ("cross_entropy", "mse"):
        out.pop("loss", None)
    return out


def check_output(out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> None:
    """Refuse, before any work, an output that is not a file, or that exists while neither
    resumed nor forced (StoreError, one line)."""
    path = Path(out)
    if resume and force:
        raise StoreError("use --resume or --force, not both")
    if path.exists() and not path.is_file():
        raise StoreError(f"output {str(path)!r} exists and is not a file")
    if path.exists() and not resume and not force:
        raise StoreError(f"{str(path)!r} already exists: continue it with --resume or overwrite "
                         "it with --force")

