"""Caveats that travel with numbers: what a comparison's steps know about their own results.

A basin narrower than the grid resolves or wider than the grid, a minimum on the grid's edge,
a surface mostly NaN, a model far from converged (its training loss far above the others', or a full-batch gradient
large enough that one gradient step would remove a good part of its loss),
a parameter norm ten times off the others' (scale-dependent measures are then not comparable,
Dinh et al. 2017), a plane whose grid does not pass through the minima it is drawn through or
does not resolve their basins there.
Each caveat is a plain sentence; ``collect`` gathers them per model and per step for
``summary.json`` (``warnings``), the console and the report. Nothing here measures a model: it
reads basin shapes, surfaces' values and the summary's numbers.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..params import SCALE_DEPENDENT, norm_outliers
from ..shape import basin_shape

__all__ = ["basin_caveats", "basin_note", "nan_caveats", "grid_misses", "anchor_unresolved", "cross_model_caveats",
           "norm_spread", "collect", "warning_lines", "NORM_FACTOR", "LOSS_FACTOR",
           "LOSS_MARGIN", "GRADIENT_SHARE", "NAN_SHARE"]

NORM_FACTOR = 10.0
"""Parameter norms further apart than this factor make scale-dependent measures incomparable."""
LOSS_FACTOR, LOSS_MARGIN = 10.0, 0.05
"""A model is not at a minimum like the others when its training loss is above ``LOSS_FACTOR``
times the lowest of the others' and above it by ``LOSS_MARGIN``."""
GRADIENT_SHARE = 0.5
"""A model is not at a stationary point when its descent bound ``|g|^2 / (2 lambda_max)`` (the
least loss one gradient step of size ``1/lambda_max`` removes) is above ``GRADIENT_SHARE``
of its training loss or above ``LOSS_MARGIN``."""
NAN_SHARE = 0.1
"""Share of non-finite points above which a surface's shape is flagged."""
MISS = 0.1
"""A model is missed by a grid when its nearest grid point is further than this many grid
steps away along some axis."""


def basin_note(shape: dict[str, Any]) -> str | None:
    """A short tag for a basin width cell: ``"unresolved"`` (narrower than two grid steps),
    ``"wider than the grid"``, or None when the width stands."""
    if shape.get("width") is None:
        return "wider than the grid"
    if not shape.get("width_resolved", True):
        return "unresolved"
    return None


def basin_caveats(shape: dict[str, Any], what: str) -> list[str]:
    """Sentences on a basin shape (``BasinShape.to_dict()``) that its grid cannot support.

    Args:
        shape: the shape's dict (``width``, ``width_resolved``, ``grid_steps``,
            ``min_on_edge``, ``min_at``, ``rise``).
        what: what the shape is of, e.g. ``"1-D basin"``.
    """
    out = []
    steps = ", ".join(f"{h:.3g}" for h in shape.get("grid_steps") or ())
    if shape.get("width") is None:
        out.append(f"{what}: the loss never rises {shape['rise']:g} above the centre inside "
                   "the grid on some direction: the basin is wider than the grid, its width "
                   "is unknown")
    elif not shape.get("width_resolved", True):
        out.append(f"{what}: width {shape['width']:.3g} is below two grid steps (step "
                   f"{steps}): the grid does not resolve the basin; its width, curvature and "
                   "basin count mean little")
    if shape.get("min_on_edge"):
        at = ", ".join(f"{v:.3g}" for v in shape.get("min_at") or ())
        out.append(f"{what}: the lowest loss lies on the grid's edge ({at}): the minimum may "
                   "lie outside the grid")
    return out


def nan_caveats(values: np.ndarray, what: str) -> list[str]:
    """A sentence when more than ``NAN_SHARE`` of a surface's values are NaN or inf."""
    vals = np.asarray(values, dtype=float)
    share = float(np.mean(~np.isfinite(vals))) if vals.size else 0.0
    if share <= NAN_SHARE:
        return []
    return [f"{what}: {100 * share:.0f}% of the grid's losses are NaN or inf"
            + (" (mostly NaN): its shape means little" if share > 0.5 else "")]


def grid_misses(surface) -> list[str]:
    """Labels of the models (a surface's ``anchors``) that no grid point lies on: their
    nearest grid point is more than ``MISS`` grid steps away along some axis, so the grid
    does not sample their loss and basins counted on it may be artifacts."""
    anchors = getattr(surface, "anchors", None)
    if not anchors or "coords" not in anchors:
        return []
    axes = [np.asarray(surface.x, dtype=float)]
    if getattr(surface, "y", None) is not None:
        axes.append(np.asarray(surface.y, dtype=float))
    coords = np.atleast_2d(np.asarray(anchors["coords"], dtype=float))
    labels = [str(v.decode() if isinstance(v, bytes) else v)
              for v in anchors.get("labels", range(len(coords)))]
    missed = []
    for label, point in zip(labels, coords):
        for axis, c in zip(axes, point):
            k = int(np.argmin(np.abs(axis - c)))
            step = float(np.min(np.diff(axis))) if len(axis) > 1 else math.inf
            if abs(axis[k] - c) > MISS * step:
                missed.append(label)
                break
    return missed


def anchor_unresolved(surface, rise: float) -> list[str]:
    """Labels of the models (a plane's ``anchors``) whose basin on the grid, centred on the
    grid point nearest them, is narrower than two grid steps there (``basin_shape``'s
    ``width_resolved``): the grid samples the model but not its basin."""
    anchors = getattr(surface, "anchors", None)
    if not anchors or "coords" not in anchors or getattr(surface, "y", None) is None:
        return []
    coords = np.atleast_2d(np.asarray(anchors["coords"], dtype=float))
    labels = [str(v.decode() if isinstance(v, bytes) else v)
              for v in anchors.get("labels", range(len(coords)))]
    values = np.asarray(surface.metrics["train_loss"], dtype=float)
    values = np.where(np.isfinite(values), values, np.inf)
    return [label for label, point in zip(labels, coords)
            if not basin_shape(surface.x, values, surface.y, rise=rise,
                               center=point).width_resolved]


def norm_spread(norms: dict[str, float]) -> float | None:
    """Largest over smallest parameter norm (None with fewer than two positive norms)."""
    values = [v for v in norms.values() if v and math.isfinite(v) and v > 0]
    return max(values) / min(values) if len(values) >= 2 else None


def _norm_flagged(norms: dict[str, float]) -> list[str]:
    """Models whose norm is off: ``norm_outliers`` with three or more; with two, both when
    they differ by more than ``NORM_FACTOR`` (neither is the odd one out)."""
    if len(norms) >= 3:
        return norm_outliers(norms, NORM_FACTOR)
    spread = norm_spread(norms)
    return list(norms) if spread is not None and spread > NORM_FACTOR else []


def cross_model_caveats(models: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per model, what comparing it with the others shows: a training loss far above theirs
    (not at a minimum as they are), a gradient that one step would lower the loss along
    (``gradient_caveats``) and a parameter norm ten times off (its scale-dependent measures
    are not comparable with theirs).

    Args:
        models: name -> summary entry (``label``, ``train_loss``, ``parameter_norm``, and
            ``gradient_norm``, ``top_eigenvalue``, ``descent_bound`` where measured).
    """
    out: dict[str, list[str]] = {name: [] for name in models}
    for name, m in models.items():
        others = [o["train_loss"] for k, o in models.items() if k != name
                  and o.get("train_loss") is not None]
        loss = m.get("train_loss")
        if others and loss is not None and math.isfinite(loss):
            low = min(others)
            if loss > LOSS_FACTOR * low and loss > low + LOSS_MARGIN:
                out[name].append(
                    f"{m['label']}: training loss {loss:.3g} is far above the others' (lowest "
                    f"{low:.3g}): it is not at a minimum as they are; its curvature, sharpness "
                    "and basin describe a slope, not a minimum")
        out[name] += gradient_caveats(m)
    norms = {k: m["parameter_norm"] for k, m in models.items()
             if m.get("parameter_norm") is not None}
    for name in _norm_flagged(norms):
        others = ", ".join(f"{models[k]['label']} {v:.3g}" for k, v in norms.items()
                           if k != name)
        out[name].append(
            f"{models[name]['label']}: parameter norm {norms[name]:.3g} is more than "
            f"{NORM_FACTOR:g}x off the others' ({others}): its scale-dependent measures ("
            + ", ".join(SCALE_DEPENDENT) + ") are not comparable with theirs")
    return out


def gradient_caveats(m: dict[str, Any]) -> list[str]:
    """A sentence when the model is not at a stationary point: its descent bound
    (``descent_bound``, the least loss a gradient step of size ``1/lambda_max`` removes) is
    above ``GRADIENT_SHARE`` of its training loss or above ``LOSS_MARGIN``. Scale-free: the
    squared gradient and the top eigenvalue change alike under a rescaling of the weights."""
    bound, loss = m.get("descent_bound"), m.get("train_loss")
    if bound is None or loss is None or not math.isfinite(bound):
        return []
    if bound <= min(GRADIENT_SHARE * loss, LOSS_MARGIN):
        return []
    return [f"{m['label']}: full-batch gradient norm {m['gradient_norm']:.3g} (top eigenvalue "
            f"{m['top_eigenvalue']:.3g}): one gradient step would lower the training loss "
            f"{loss:.3g} by at least {bound:.3g}: it is not at a minimum; its curvature, "
            "sharpness and basin describe a slope"]


def collect(summary: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Every caveat of a summary: ``{"models": name -> sentences, "steps": step -> sentences}``.
    Starts from ``summary["warnings"]`` as ``summarize`` left it (each model's basin and
    surface caveats, also listed under their steps), adds the cross-model ones and the
    V-versus-W section's (its steps')."""
    found = summary.get("warnings") or {}
    models = summary["models"]
    cross = cross_model_caveats(models)
    per_model = {name: list(dict.fromkeys((found.get("models") or {}).get(name, [])
                                          + cross[name])) for name in models}
    steps = {k: list(v) for k, v in (found.get("steps") or {}).items()}
    for key, section in (summary.get("v_versus_w") or {}).items():
        if isinstance(section, dict) and section.get("warnings"):
            steps[f"v_versus_w_{key}"] = list(section["warnings"])
    return {"models": per_model, "steps": {k: v for k, v in steps.items() if v}}


def warning_lines(warnings: dict[str, dict[str, list[str]]]) -> list[str]:
    """The distinct caveat sentences of ``collect``'s result, models first."""
    lines = [line for group in ("models", "steps") for lines in warnings[group].values()
             for line in lines]
    return list(dict.fromkeys(lines))
