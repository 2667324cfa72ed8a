"""What a comparison will cost before it starts: memory (fit or refuse) and, from one
measured grid point and one Hessian-vector product, time.

Contract: ``compare_cost`` counts the grid points (interpolation, the line and plane of each
minimum, the plane through three) and Hessian-vector products (``HessianPlan`` of the
config's eigenvalues, trace and density, and the GGN's top eigenvalue) of ``compare``'s
measurements on one model of the architecture, and their memory (the largest of a surface's,
a Hessian run's and the curve training's between two minima, which run one after another; the
curve's time and the sharpness steps are not counted). ``sweep_memory`` is a batch-size sweep's
memory (its largest training step or its Hessian run) and ``sweep_fitting_subset`` the training
subset that fits a limit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..connect import ConnectOptions, connect_memory
from ..curvature import HessianOptions
from ..curvature.memory import HessianPlan, hessian_dry_run, hessian_memory
from ..directions import random_directions
from ..evaluate import METRICS
from ..surface import SurfaceOptions, estimate_surface, surface_memory
from ..util import pick_device
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
    parts = [surface_memory(model, data, 2, options=surface),
             hessian_memory(model, data, plan, hessian)]
    if config.curve_epochs and n_minima >= 2:
        parts.append(connect_memory(model, data, ConnectOptions(device=config.device)))
    memory = max(parts, key=lambda m: m.total_added)
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



SWEEP_WEIGHT_COPIES = 3
"""Weight-sized tensors a sweep's training run holds besides the step's gradients: the
optimizer's state (Rprop's two buffers are the most) and the checkpoint written each epoch."""


def sweep_memory(model, data, config, *, profile=None):
    """Memory a batch-size sweep adds, before it starts: the largest of its largest training
    step (the largest batch of ``config.runs``, the full batch for ``full`` and the Rprop
    comparison), its evaluation of both splits each epoch and its top-eigenvalue Hessian run;
    sharpness is smaller than these.

    Args:
        model: one model of the sweep's architecture (as built for its data).
        data: the sweep's DataBundle.
        config: a SweepConfig.
        profile: ``landscape.train_memory.step_profile``'s result, reused when given.

    Returns:
        MemoryEstimate.
    """
    from ..train_memory import evaluation_memory, training_memory

    n_train = len(data.train[1])
    batch = max(n_train if r.batch_size == "full" else min(int(r.batch_size), n_train)
                for r in config.runs(n_train))
    device = str(pick_device(config.device))
    training = training_memory(model, data, batch, weight_copies=SWEEP_WEIGHT_COPIES,
                               device=device, profile=profile)
    evaluation = evaluation_memory(model, data, weight_copies=SWEEP_WEIGHT_COPIES,
                                   device=device)
    hessian = hessian_memory(model, data.train, HessianPlan(top_k=1),
                             HessianOptions(device=config.device, check=False))
    return max((training, evaluation, hessian), key=lambda m: m.total_added)


def sweep_fitting_subset(model, data, config, limit: int) -> str | None:
    """``--train-subset N fits (about X)`` for the largest training subset (halving) whose
    sweep estimate fits ``limit`` bytes, or None."""
    from ..data import DataBundle
    from ..train_memory import step_profile
    from ..util.memory import format_bytes

    profile = step_profile(model, data)
    n = len(data.train[1]) // 2
    while n >= 1:
        part = DataBundle(train=(data.train[0][:n], data.train[1][:n]), test=data.test,
                          num_classes=data.num_classes, name=data.name, spec=data.spec)
        estimate = sweep_memory(model, part, config, profile=profile)
        if estimate.total_added <= limit:
            return f"--train-subset {n} fits (about {format_bytes(estimate.total_added)})"
        n //= 2
    return None
