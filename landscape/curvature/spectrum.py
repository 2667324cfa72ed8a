"""Spectrum files: the one JSON layout of eigenvalues, trace and density results.

Contract: ``spectrum_record`` builds the record (``landscape hessian --out``, a study's
``curvature/<label>.json``) from solver results and metadata; ``load_spectrum`` reads one back
and raises StoreError for anything that is not a spectrum file. Writing is the caller's.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from .density import DensityResult
from .eigen import EigenResult
from .trace import TraceResult

SPECTRUM_FORMAT = "landscape-spectrum"
SPECTRUM_FORMAT_VERSION = 1


def spectrum_record(*, eigen: EigenResult | None = None, n_bottom: int = 0,
                    trace: TraceResult | None = None, density: DensityResult | None = None,
                    **meta: Any) -> dict[str, Any]:
    """The one layout of a spectrum file (``landscape hessian --out``, a study's
    ``curvature/<label>.json``): ``format``, ``format_version``, the ``meta`` fields (checkpoint,
    dataset, split, mode, loss, provenance, ...) and a section per result given:

    - ``eigenvalues``: ``values`` (ascending) and their ``residuals``; ``bottom`` (the first
      ``n_bottom`` values) and ``top`` (the rest); ``which``, ``n_products``, ``seconds``,
      ``mode``, ``method``, ``hvp``, ``converged``, ``n_params``;
    - ``trace``: ``estimate``, ``stderr`` (null when not available), ``method``,
      ``n_products``, ``seconds``, ``mode``;
    - ``density``: ``grid``, ``density``, ``nodes``, ``weights``, ``sigma``, ``n_probes``,
      ``n_steps``, ``n_products``, ``seconds``, ``mode``.
    """
    record: dict[str, Any] = {"format": SPECTRUM_FORMAT, "format_version": SPECTRUM_FORMAT_VERSION,
                              **meta}
    if eigen is not None:
        values = np.asarray(eigen.values).tolist()
        record["eigenvalues"] = {
            "values": values, "residuals": np.asarray(eigen.residuals).tolist(),
            "bottom": values[:n_bottom], "top": values[n_bottom:], "which": eigen.which,
            "n_products": eigen.n_products, "seconds": eigen.seconds, "mode": eigen.mode,
            "method": eigen.method, "hvp": eigen.hvp, "converged": bool(eigen.converged),
            "n_params": eigen.n_params}
    if trace is not None:
        record["trace"] = {"estimate": trace.estimate,
                           "stderr": trace.stderr if math.isfinite(trace.stderr) else None,
                           "method": trace.method, "n_products": trace.n_products,
                           "seconds": trace.seconds, "mode": trace.mode}
    if density is not None:
        record["density"] = {"grid": density.grid.tolist(), "density": density.density.tolist(),
                             "nodes": density.nodes.tolist(), "weights": density.weights.tolist(),
                             "sigma": density.sigma, "n_probes": density.n_probes,
                             "n_steps": density.n_steps, "n_products": density.n_products,
                             "seconds": density.seconds, "mode": density.mode}
    return record


def load_spectrum(path: str | os.PathLike) -> dict[str, Any]:
    """Read a spectrum file written from ``spectrum_record``.

    Raises:
        StoreError: missing, not JSON, or not a spectrum file.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"spectrum file {str(path)!r} does not exist")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise StoreError(f"{str(path)!r} is not a readable JSON file") from None
    if not isinstance(record, dict) or record.get("format") != SPECTRUM_FORMAT:
        raise StoreError(f"{str(path)!r} is not a landscape spectrum file")
    return record
