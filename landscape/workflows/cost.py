"""What a comparison will cost before it starts: memory (fit or refuse) and, from one
measured grid point and one Hessian-vector product, time.

Contract: ``compare_cost`` counts the grid points (interpolation, the line and plane of each
minimum, the plane through three) and Hessian-vector products (``HessianPlan`` of the
config's eigenvalues, trace and density, and the GGN's top eigenvalue) of ``compare``'s
measurements on one model of the architecture, and their memory (the larger of a surface's
and a Hessian run's, which run one after another). Training the curve between two minima and
the sharpness steps are not counted.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..curvature import HessianOptions
from ..curvature.memory import HessianPlan, hessian_dry_run, hessian_memory
from ..directions import random_directions
from ..evaluate import METRICS
from ..surface import SurfaceOptions, estimate_surface, surface_memory
from .config import CompareConfig

GGN_TOP_PRODUCTS = 21
"""Products of the GGN's top eigenvalue (eigsh, one value at tolerance 1e-6), as measured on
the demo's small-batch minimum; a GGN product costs about a Hessian product (jvp + vjp)."""


def compare_cost(model, data, config: CompareConfig, n_minima: int, *,
                 measure_time: bool = True) -> dict[str, Any]:
    """Expected memory and (with ``measure_time``) time of ``compare`` on ``n_minima``.

    Returns:
        ``memory`` (the larger MemoryEstimate), ``points``, ``products`` (Hessian) and
        ``ggn_products`` (the GGN's top eigenvalues; counts), and
        with ``measure_time``: ``seconds_per_point``, ``seconds_per_product``, ``seconds``.
    """
    surface = SurfaceOptions(metrics=METRICS, progress=False, device=config.device)
    plan = HessianPlan(top_k=config.top_k, trace_products=config.trace_products,
                       density_probes=config.density_probes,
                       density_steps=config.density_steps)
    hessian = HessianOptions(device=config.device, check=False)
    memory = max((surface_memory(model, data, 2, options=surface),
                  hessian_memory(model, data, plan, hessian)),
                 key=lambda m: m.total_added)
    points = (config.interp_points
              + n_minima * (config.line_points + config.plane_points ** 2)
              + (config.plane_points ** 2 if n_minima >= 3 else 0))
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    products = n_minima * plan.expected_products(n_params)
    ggn = n_minima * GGN_TOP_PRODUCTS if config.ggn_top else 0
    cost: dict[str, Any] = {"memory": memory, "points": points, "products": products,
                            "ggn_products": ggn}
    if measure_time:
        axis = np.linspace(-1.0, 1.0, 3)
        point = estimate_surface(model, data, random_directions(model, count=2, seed=0), axis,
                                 axis, options=surface)["seconds_per_point"]
        product = hessian_dry_run(model, data, plan, hessian)["seconds_per_product"]
        cost.update(seconds_per_point=point, seconds_per_product=product,
                    seconds=points * point + (products + ggn) * product)
    return cost

