"""What the figures read from a surface: a metric's values (NaN where not computed), the
training path and the anchor models it carries, names for panels and legends, and axis
labels from what the directions are.

Pure functions of a ``Surface`` (no drawing, no matplotlib); every figure module reads
surfaces through these, so a missing metric or a wrong dimension fails the same way in all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import LandscapeError
from ..surface import Surface


def surface_name(surface: Surface, index: int = 0) -> str:
    """A short name for messages and legends: the file stem, else ``surface <index + 1>``."""
    return Path(surface.path).stem if surface.path else f"surface {index + 1}"


def metric_values(surface: Surface, metric: str, ndim: int | None = None,
                  what: str = "this plot") -> np.ndarray:
    """The values of ``metric`` as floats, NaN where a point is not computed or not finite.

    Args:
        surface: the surface.
        metric: metric name, e.g. "train_loss".
        ndim: required grid dimension (1 or 2), or None for either.
        what: name of the plot, for the error message.

    Raises:
        LandscapeError: wrong dimension or unknown metric (the message lists the available ones).
    """
    name = surface.path or "surface"
    if ndim is not None and surface.ndim != ndim:
        raise LandscapeError(f"{name}: is a {surface.ndim}-D surface; {what} needs a {ndim}-D one")
    if metric not in surface.metrics:
        avail = ", ".join(sorted(surface.metrics)) or "none"
        raise LandscapeError(f"{name}: no metric {metric!r}; available: {avail}")
    values = np.array(surface.metrics[metric], dtype=float)
    if values.shape != tuple(surface.shape):
        raise LandscapeError(f"{name}: metric {metric!r} has shape {values.shape}, "
                             f"grid is {tuple(surface.shape)}")
    done = np.asarray(surface.done, dtype=bool) if surface.done is not None else True
    values[~np.broadcast_to(done, values.shape) | ~np.isfinite(values)] = np.nan
    return values


def provenance_value(surface: Surface, keys: Sequence[str]) -> Any:
    """First of ``keys`` found as a surface attribute, in provenance, or one level below it."""
    for key in keys:
        value = getattr(surface, key, None)
        if value is not None and not isinstance(value, str):
            return value
    prov = surface.provenance if isinstance(surface.provenance, dict) else {}
    for scope in [prov] + [v for v in prov.values() if isinstance(v, dict)]:
        for key in keys:
            if scope.get(key) is not None:
                return scope[key]
    return None


def trajectory_of(surface: Surface) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The projected training path and explained variance a trajectory surface carries, if any.

    Reads ``surface.trajectory`` (``coords`` (T, 2), ``explained_variance_ratio``), else a
    "trajectory" / "projected_path" entry and "explained_variance(_ratio)" in the provenance.

    Returns:
        ``(path (T, 2) or None, explained variance (k,) or None)``.
    """
    table = getattr(surface, "trajectory", None)
    if isinstance(table, dict):
        raw = next((table[k] for k in ("coords", "path", "points") if k in table), None)
        var = next((table[k] for k in ("explained_variance_ratio", "explained_variance")
                    if k in table), None)
    else:
        raw = table if table is not None else provenance_value(surface, ("trajectory",
                                                                         "projected_path"))
        if isinstance(raw, dict):
            raw = next((raw[k] for k in ("coords", "path", "points") if k in raw), None)
        var = None
    if var is None:
        var = provenance_value(surface, ("explained_variance_ratio", "explained_variance"))
    try:
        var = None if var is None else np.asarray(var, dtype=float).ravel()
    except (TypeError, ValueError):
        var = None
    return as_path(raw), var


def anchors_of(surface: Surface) -> tuple[np.ndarray | None, list[str]]:
    """Coordinates (m, ndim) and names of the models that define the directions, if stored.

    Interpolations and planes through checkpoints carry them (``surface.anchors``).
    """
    table = getattr(surface, "anchors", None)
    if not isinstance(table, dict) or "coords" not in table:
        return None, []
    try:
        coords = np.asarray(table["coords"], dtype=float).reshape(-1, surface.ndim)
    except (TypeError, ValueError):
        return None, []
    names = [str(n) for n in np.asarray(table.get("labels", []), dtype=object).ravel()]
    names += [""] * (len(coords) - len(names))
    return coords, names[:len(coords)]


def as_path(raw: Any) -> np.ndarray | None:
    """``raw`` as a (T, 2) float array of path points ((2, T) is transposed); else None."""
    if raw is None:
        return None
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.ndim == 2 and arr.shape[0] >= 1 and arr.shape[1] == 2:
        return arr
    if arr.ndim == 2 and arr.shape[0] == 2 and arr.shape[1] > 2:
        return arr.T
    return None


def axis_labels(surface: Surface, labels: Sequence[str] | None = None,
                explained_variance: Sequence[float] | None = None) -> tuple[str, str]:
    """Axis labels for a surface's directions.

    Explicit ``labels`` win; then explained variance ("PC1 (71.2% var.)"); then names stored in
    the provenance ("axis_labels"); then what the recipe says (an interpolation between two
    checkpoints, a plane, filter-normalized random directions); else "direction 1/2".
    """
    if labels:
        labels = list(labels) + ["direction 2"]
        return str(labels[0]), str(labels[1])
    var = explained_variance
    if var is None:
        var = trajectory_of(surface)[1]
    if var is not None and len(var) >= 2:
        var = np.asarray(var, dtype=float)
        pct = var * 100 if var.sum() <= 1.0 + 1e-6 else var
        return f"PC1 ({pct[0]:.1f}% var.)", f"PC2 ({pct[1]:.1f}% var.)"
    names = provenance_value(surface, ("axis_labels", "direction_names"))
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        names = list(names) + ["direction 2"]
        return names[0], names[1]
    prov = surface.provenance if isinstance(surface.provenance, dict) else {}
    if prov.get("type") == "interpolation" and surface.ndim == 1:
        _, ends = anchors_of(surface)
        if len(ends) == 2 and all(ends):
            return rf"$\alpha$  (0: {short_name(ends[0])}, 1: {short_name(ends[1])})", "direction 2"
        return r"interpolation $\alpha$", "direction 2"
    if prov.get("type") == "hessian":
        return _eigen_axis(prov, 0), _eigen_axis(prov, 1)
    norm = prov.get("norm")
    if prov.get("type") == "random" and isinstance(norm, str) and norm not in ("none", ""):
        return f"direction 1 ({norm}-normalized)", f"direction 2 ({norm}-normalized)"
    return "direction 1", "direction 2"


def _eigen_axis(prov: dict[str, Any], k: int) -> str:
    """'top Hessian eigenvector (λ = 20.1; unit norm)' for direction ``k`` of a recipe."""
    values = prov.get("eigenvalues") or []
    unit = "unit norm" if prov.get("norm") == "none" else f"{prov.get('norm')}-normalized"
    which = ("top" if k == 0 else f"#{k + 1}") + " Hessian eigenvector"
    value = f"λ = {values[k]:.3g}; " if k < len(values) else ""
    return f"{which} ({value}{unit})"


def short_name(name: str, width: int = 18) -> str:
    """A model's name for a label: the file stem (the run folder for ``model.pt``), cut to
    ``width`` characters."""
    stem = Path(name).stem if name.endswith((".pt", ".pth")) else name
    if stem == "model" and Path(name).parent.name:
        # `landscape train` names every run's weights model.pt: the run folder tells them apart
        stem = Path(name).parent.name
    return stem if len(stem) <= width else stem[:width - 1] + "…"


def pretty(metric: str) -> str:
    """'train_loss' -> 'train loss'."""
    return metric.replace("_", " ")


def surface_list(surfaces: Surface | Sequence[Surface]) -> list[Surface]:
    """One surface or several as a non-empty list; LandscapeError when there are none."""
    items = [surfaces] if isinstance(surfaces, Surface) else list(surfaces)
    if not items:
        raise LandscapeError("no surfaces to plot")
    return items


def panel_labels(labels: Sequence[str] | None, surfaces: list[Surface]) -> list[str]:
    """One label per surface: ``labels`` (checked for their number), else the file names."""
    if labels is None:
        return [surface_name(s, i) for i, s in enumerate(surfaces)]
    labels = list(labels)
    if len(labels) != len(surfaces):
        raise LandscapeError(f"{len(labels)} labels for {len(surfaces)} surfaces")
    return labels
