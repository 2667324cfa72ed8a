"""Basin widths that do not depend on the grid: compare's 1-D widths, refined where the first
grid does not resolve them.

``refine_1d`` is a step of ``compare``: for each minimum whose 1-D basin spans fewer than
``STEPS_PER_WIDTH`` grid steps of the 1-D surface (or is wider than it), it evaluates the
training loss along the same direction on grids refined around the model
(``landscape.refine.refine_width``) and stores the result in ``models/<name>/width_1d.json``;
a resolved width is recorded as measured on the first grid without new work.
``refined_shape`` folds that record into the 1-D basin shape that ``summarize`` reports, so
the width, its curvature and its caveat come from the grid that resolved it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..refine import STEPS_PER_WIDTH, refine_width
from ..shape import basin_shape, surface_shape
from ..surface import SurfaceOptions, compute_surface
from ..util import write_json
from .steps import read_record, step_key

__all__ = ["refine_1d", "refined_shape", "REFINE_POINTS", "REFINE_ROUNDS"]

REFINE_POINTS, REFINE_ROUNDS = 21, 8
"""Points of each refined grid and the most refined grids per model."""


def _needs_refining(surface, rise: float) -> bool:
    """Whether the 1-D width is unbounded or spans fewer than ``STEPS_PER_WIDTH`` steps."""
    shape = surface_shape(surface, metric="train_loss", rise=rise)
    return shape.width is None or shape.width < STEPS_PER_WIDTH * max(shape.grid_steps)


def refine_1d(config, bundle, minima, out: Path, steps, progress: bool, loss: str,
              surfaces: dict[str, dict[str, Any]], folder) -> dict[str, dict[str, Any]]:
    """Per minimum, the record of its 1-D width: ``method`` ``"grid"`` (the 1-D surface
    resolves it) or ``"refined"`` (with ``width``, ``resolved``, ``rounds``, ``step``, the
    last grid's ``x`` and ``train_loss``, and the first grid's ``coarse_width``).

    Args:
        config, bundle, minima, out, steps, progress, loss: as ``measure`` has them.
        surfaces: the 1-D and 2-D surfaces of each minimum (``_surfaces``' result).
        folder: ``model_folder`` (out, minimum) -> the minimum's own folder.
    """
    result = {}
    for m in minima:
        coarse = surfaces[m.name]["1d"]
        if not _needs_refining(coarse, config.rise):
            result[m.name] = {"method": "grid"}
            continue
        own = folder(out, m)
        path = own / "width_1d.json"
        key = step_key(m.key, bundle.spec, loss, config.seed, config.line_range,
                       config.line_points, config.rise, REFINE_POINTS, REFINE_ROUNDS)

        def compute(m=m, coarse=coarse, own=own, path=path):
            record = _refine(config, bundle, m, coarse, own / "directions.h5", progress, loss)
            write_json(path, record)
            return record
        result[m.name] = steps.run(f"width_1d_{m.name}", key, [path],
                                   lambda path=path: read_record(path), compute)
    return result


def _refine(config, bundle, m, coarse, directions: Path, progress: bool, loss: str
            ) -> dict[str, Any]:
    """Refine one minimum's 1-D width along the first direction of its 1-D surface."""
    options = SurfaceOptions(metrics=("train_loss",), progress=progress, device=config.device,
                             seed=config.seed, loss=loss)

    def train_loss(x: np.ndarray) -> np.ndarray:
        return compute_surface(m.model, bundle, directions, x=np.asarray(x, dtype=float),
                               options=options).metrics["train_loss"]

    first = surface_shape(coarse, metric="train_loss", rise=config.rise)
    found = refine_width(train_loss, coarse.x, coarse.metrics["train_loss"], rise=config.rise,
                         points=REFINE_POINTS, max_rounds=REFINE_ROUNDS)
    step = float(np.max(np.diff(found.x)))
    return {"method": "refined", "width": found.width, "resolved": found.resolved,
            "rounds": found.rounds, "step": step, "coarse_width": first.width,
            "coarse_step": float(max(first.grid_steps)), "x": found.x.tolist(),
            "train_loss": [float(v) for v in found.values]}


def refined_shape(shape: dict[str, Any], record: dict[str, Any] | None, rise: float
                  ) -> dict[str, Any]:
    """The 1-D basin shape (``BasinShape.to_dict()`` of the first grid) with the width,
    radii, curvature, grid step and resolution of the refined grid where ``record`` holds
    one; the basin count and the edge check stay the first grid's (they need its reach)."""
    if not record or record.get("method") != "refined":
        return shape
    fine = basin_shape(np.asarray(record["x"]), np.asarray(record["train_loss"]), rise=rise,
                       center=0.0).to_dict()
    return {**shape, "width": record["width"], "width_resolved": bool(record["resolved"]),
            "radii": fine["radii"], "axis_widths": fine["axis_widths"],
            "curvature": fine["curvature"], "grid_steps": fine["grid_steps"]}
