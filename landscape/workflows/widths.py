"""Basin widths that do not depend on the grid: compare's 1-D and 2-D widths, refined where
the first grid does not resolve them.

``refine_widths`` is a step of ``compare``: for each minimum whose 1-D (2-D) basin spans fewer
than ``STEPS_PER_WIDTH`` grid steps of its surface (or is wider than it), it evaluates the
training loss on lines through the model refined around it (``landscape.refine.refine_width``)
and stores the result in ``models/<name>/width_1d.json`` (``width_2d.json``). The 1-D line
is the 1-D surface's direction; the 2-D width is, as on the grid, the mean diameter over
``LINES`` lines through the centre at angles ``pi k / LINES`` of the plane's two directions.
A resolved width is recorded as measured on the first grid, without new work.
``refined_shape`` folds a record into the basin shape that ``summarize`` reports, so the
width, its curvature and its caveat come from the grid that resolved it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..direction_files import load_directions
from ..refine import STEPS_PER_WIDTH, refine_width
from ..shape import basin_shape, surface_shape
from ..surface import SurfaceOptions, compute_surface
from ..util import write_json
from .steps import read_record, step_key

__all__ = ["refine_widths", "refined_shape", "REFINE_POINTS", "REFINE_ROUNDS", "LINES"]

REFINE_POINTS, REFINE_ROUNDS = 21, 8
"""Points of each refined grid and the most refined grids per line."""
LINES = 8
"""Lines through the centre whose mean diameter is the 2-D width (the grid's 16 rays)."""


def _needs_refining(surface, rise: float) -> bool:
    """Whether the width is unbounded or spans fewer than ``STEPS_PER_WIDTH`` steps."""
    shape = surface_shape(surface, metric="train_loss", rise=rise)
    return shape.width is None or shape.width < STEPS_PER_WIDTH * max(shape.grid_steps)


def refine_widths(config, bundle, minima, out: Path, steps, progress: bool, loss: str,
                  surfaces: dict[str, dict[str, Any]], folder) -> dict[str, dict[str, Any]]:
    """Per minimum, ``{"1d": record, "2d": record}``: ``method`` ``"grid"`` (its surface
    resolves the width) or ``"refined"`` (with ``width``, ``resolved``, ``rounds``, ``step``,
    the first grid's ``coarse_width`` and ``coarse_step``; 1-D: the last grid's ``x`` and
    ``train_loss``; 2-D: ``angles`` and ``line_widths``).

    Args:
        config, bundle, minima, out, steps, loss: as ``measure`` has them; ``progress`` is
            taken and not used (each line is 21 points: no bar).
        surfaces: the 1-D and 2-D surfaces of each minimum (``_surfaces``' result).
        folder: ``model_folder`` (out, minimum) -> the minimum's own folder.
    """
    result: dict[str, dict[str, Any]] = {}
    for m in minima:
        result[m.name] = {}
        for kind in ("1d", "2d"):
            coarse = surfaces[m.name][kind]
            if not _needs_refining(coarse, config.rise):
                result[m.name][kind] = {"method": "grid"}
                continue
            own = folder(out, m)
            path = own / f"width_{kind}.json"
            key = step_key(m.key, bundle.spec, loss, config.seed, config.line_range,
                           config.line_points, config.plane_range, config.plane_points,
                           config.rise, REFINE_POINTS, REFINE_ROUNDS, kind, LINES)

            def compute(m=m, coarse=coarse, own=own, path=path, kind=kind):
                lines = _lines(own / "directions.h5", 1 if kind == "1d" else LINES)
                record = _refine(config, bundle, m, coarse, lines, loss)
                write_json(path, record)
                return record
            result[m.name][kind] = steps.run(f"width_{kind}_{m.name}", key, [path],
                                             lambda path=path: read_record(path), compute)
    return result


def _lines(path: Path, count: int) -> list[tuple[float, dict]]:
    """``(angle, direction)`` of ``count`` lines through the centre: ``cos a d1 + sin a d2``
    at ``a = pi k / count`` (one line: the first direction itself)."""
    dirs, _ = load_directions(path)
    if count == 1:
        return [(0.0, dirs[0])]
    out = []
    for k in range(count):
        a = math.pi * k / count
        c, s = round(math.cos(a), 15), round(math.sin(a), 15)
        out.append((a, {n: c * dirs[0][n] + s * dirs[1][n] for n in dirs[0]}))
    return out


def _refine(config, bundle, m, coarse, lines: list[tuple[float, dict]], loss: str
            ) -> dict[str, Any]:
    """Refine one minimum's width along each line; the width is the lines' mean diameter
    (None where one is never bounded)."""
    # Lines of 21 points: a progress bar each would flood the log; the step says what runs.
    options = SurfaceOptions(metrics=("train_loss",), progress=False, device=config.device,
                             seed=config.seed, loss=loss)
    first = surface_shape(coarse, metric="train_loss", rise=config.rise)
    # The first line starts from the first grid (1-D: the surface's own values); later
    # lines start from the span the one before found.
    x, values = np.asarray(coarse.x, dtype=float), None
    if coarse.y is None:
        values = coarse.metrics["train_loss"]
    found = []
    for _, direction in lines:
        def train_loss(at: np.ndarray, direction=direction) -> np.ndarray:
            return compute_surface(m.model, bundle, [direction], x=np.asarray(at, dtype=float),
                                   options=options).metrics["train_loss"]
        found.append(refine_width(train_loss, x, values, rise=config.rise,
                                  points=REFINE_POINTS, max_rounds=REFINE_ROUNDS))
        x, values = found[-1].x, None
    widths = [f.width for f in found]
    record = {"method": "refined",
              "width": None if None in widths else float(np.mean(widths)),
              "resolved": all(f.resolved for f in found),
              "rounds": max(f.rounds for f in found),
              "step": max(float(np.max(np.diff(f.x))) for f in found),
              "coarse_width": first.width, "coarse_step": float(max(first.grid_steps)),
              "first_grid_resolved": first.width_resolved}
    if len(lines) == 1:
        return {**record, "x": found[0].x.tolist(),
                "train_loss": [float(v) for v in found[0].values]}
    return {**record, "angles": [a for a, _ in lines], "line_widths": widths}


def refined_shape(shape: dict[str, Any], record: dict[str, Any] | None, rise: float
                  ) -> dict[str, Any]:
    """A basin shape (``BasinShape.to_dict()`` of the first grid) with the width and its
    resolution from ``record`` where it holds a refined one (1-D: also the radii, curvature
    and grid step of the last grid; 2-D: the widths along the axes); the basin count and the
    edge check stay the first grid's (they need its reach)."""
    if not record or record.get("method") != "refined":
        return shape
    out = {**shape, "width": record["width"], "width_resolved": bool(record["resolved"]),
           "grid_steps": [record["step"]] * len(shape.get("grid_steps") or [0])}
    if "x" in record:
        fine = basin_shape(np.asarray(record["x"]), np.asarray(record["train_loss"]),
                           rise=rise, center=0.0).to_dict()
        out.update(radii=fine["radii"], axis_widths=fine["axis_widths"],
                   curvature=fine["curvature"], grid_steps=fine["grid_steps"])
    elif "line_widths" in record:
        half = len(record["line_widths"]) // 2
        out["axis_widths"] = [record["line_widths"][0], record["line_widths"][half]]
    return out
