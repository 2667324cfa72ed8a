"""What a comparison will cost before it starts: memory (fit or refuse) and, from one
measured grid point and one Hessian-vector product, time.

Contract: ``compare_cost`` counts the grid points (interpolation, the line and plane of each
minimum, the plane through three) and Hessian-vector products (``HessianPlan`` of the
config's eigenvalues, trace and density, and the GGN's top eigenvalue) of ``compare``'s
measurements on one model of the architecture, and their memory (the largest of a surface's,
a Hessian run's and the curve training's between two minima, which run one after another; the
curve's time and the sharpness steps are not counted). ``sweep_memory`` is a batch-size sweep's
memory (its largest training step or its Hessian run), ``recipe_memory`` a recipe grid's, and
``fitting_subset`` the training subset that fits a limit. ``sweep_dry_run`` and
``recipe_dry_run`` give each run's optimizer steps (exactly those ``train`` takes), expected
seconds (from one step per batch size, one forward and one Hessian-vector product timed now
by ``UnitClock``, times the counts of each) and memory; they train nothing and write nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from typing import Any

import numpy as np
import torch

from ..connect import ConnectOptions, connect_memory
from ..curvature import HessianOptions
from ..curvature.memory import HessianPlan, hessian_dry_run, hessian_memory, product_seconds
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
        dry = hessian_dry_run(model, data, plan, hessian, memory=parts[1])
        product = dry["seconds_per_product"]
        cost.update(seconds_per_point=point, seconds_per_product=product,
                    seconds=points * point + n_minima * dry["seconds"] + ggn * product)
    return cost



SWEEP_WEIGHT_COPIES = 3
"""Weight-sized tensors a sweep's training run holds besides the step's gradients: the
optimizer's state (Rprop's two buffers are the most) and the checkpoint written each epoch."""
SAM_OPTIMIZERS = ("sam", "asam")
"""Optimizers whose step is two forward and backward passes and holds one more weight copy
(the ascent's perturbation)."""
KESKAR_EVALUATIONS = 11
"""Loss-and-gradient evaluations over the training split of Keskar sharpness as the sweeps
call it (L-BFGS-B, 10 iterations: one evaluation each, and the start)."""
TIMED_BATCH = 1024
"""Most examples of a timed step or forward; larger batches are scaled linearly from it."""


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
    n_train = len(data.train[1])
    batch = max(_batch(r.batch_size, n_train) for r in config.runs(n_train))
    return _run_memory(model, data, config.device, batch, SWEEP_WEIGHT_COPIES,
                       HessianPlan(top_k=1), profile)


def recipe_memory(model, data, grid, *, profile=None):
    """Memory a recipe grid (``RecipeGrid``) adds, before it starts: the largest of its
    largest training step (one weight copy more under SAM or ASAM), its evaluation of both
    splits and its measures' Hessian runs (the top eigenvalue, then the trace); the other
    measures hold a few weight-sized vectors, less than these."""
    n_train = len(data.train[1])
    batch = max(_batch(b, n_train) for b in grid.batch_sizes)
    copies = SWEEP_WEIGHT_COPIES + any(o in SAM_OPTIMIZERS for o in grid.optimizers)
    plan = HessianPlan(top_k=1, trace_products=grid.measures.trace_products)
    return _run_memory(model, data, grid.device, batch, copies, plan, profile)


def _batch(size, n_train: int) -> int:
    return n_train if size == "full" else min(int(size), n_train)


def _run_memory(model, data, device_name, batch: int, copies: int, plan: HessianPlan,
                profile):
    """The largest of a training step at ``batch``, an evaluation and a Hessian run."""
    from ..train_memory import evaluation_memory, training_memory

    device = str(pick_device(device_name))
    training = training_memory(model, data, batch, weight_copies=copies, device=device,
                               profile=profile)
    evaluation = evaluation_memory(model, data, weight_copies=copies, device=device)
    hessian = hessian_memory(model, data.train, plan,
                             HessianOptions(device=device_name, check=False))
    return max((training, evaluation, hessian), key=lambda m: m.total_added)


def fitting_subset(model, data, estimate, limit: int) -> str | None:
    """``--train-subset N fits (about X)`` for the largest training subset (halving) whose
    estimate fits ``limit`` bytes, or None.

    Args:
        estimate: ``estimate(model, data, profile=...)`` -> MemoryEstimate (``sweep_memory``
            with its config, ``recipe_memory`` with its grid).
    """
    from ..data import DataBundle
    from ..train_memory import step_profile
    from ..util.memory import format_bytes

    profile = step_profile(model, data)
    n = len(data.train[1]) // 2
    while n >= 1:
        part = DataBundle(train=(data.train[0][:n], data.train[1][:n]), test=data.test,
                          num_classes=data.num_classes, name=data.name, spec=data.spec)
        found = estimate(model, part, profile=profile)
        if found.total_added <= limit:
            return f"--train-subset {n} fits (about {format_bytes(found.total_added)})"
        n //= 2
    return None


def sweep_fitting_subset(model, data, config, limit: int) -> str | None:
    """``fitting_subset`` of a batch-size sweep (``config``: a SweepConfig)."""
    return fitting_subset(model, data, lambda m, d, profile: sweep_memory(
        m, d, config, profile=profile), limit)


@dataclasses.dataclass(frozen=True)
class RunCost:
    """What one training run of a sweep is expected to take, measurements included.

    Attributes:
        label: the run's name.
        steps: optimizer steps (``planned_steps``).
        seconds: expected wall time (training steps, evaluations, measurements).
        memory: its MemoryEstimate (the largest of its step, an evaluation, its Hessian run).
    """

    label: str
    steps: int
    seconds: float
    memory: Any


def planned_steps(config, n_train: int) -> tuple[int, int]:
    """``(optimizer steps, evaluated epochs)`` that ``landscape.train.train`` takes with the
    TrainConfig ``config`` on ``n_train`` examples."""
    batch = config.resolved_batch(n_train)
    per_epoch = n_train // batch if config.drop_last else math.ceil(n_train / batch)
    total = config.steps or per_epoch * config.epochs
    epochs = math.ceil(total / per_epoch)
    evaluated = sum(1 for e in range(1, epochs + 1) if e % config.eval_every == 0 or e == epochs)
    return total, evaluated


class UnitClock:
    """Seconds of what a sweep's runs are made of, each measured once now (the second of two
    calls): a training step's forward and backward at each batch, a forward over the training
    split, a Hessian-vector product over it. Steps and forwards of more than ``TIMED_BATCH``
    examples are timed on that many and scaled linearly."""

    def __init__(self, model, data, device: str | None = None):
        self.device = pick_device(device)
        self.model = copy.deepcopy(model).to(self.device)
        self.data, self.device_name = data, device
        self.n_train, self.n_test = len(data.train[1]), len(data.test[1])
        self._steps: dict[int, float] = {}
        self._forward: float | None = None
        self._product: float | None = None
        self.loss_fn = torch.nn.functional.cross_entropy

    def _timed(self, fn) -> float:
        fn()
        self._sync()
        start = time.perf_counter()
        fn()
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _slice(self, size: int):
        m = min(size, TIMED_BATCH, self.n_train)
        x, y = self.data.train
        return x[:m].to(self.device), y[:m].to(self.device), size / m

    def step(self, batch: int) -> float:
        """Seconds of one training step's forward and backward at ``batch`` examples."""
        if batch not in self._steps:
            x, y, scale = self._slice(batch)
            self.model.train()

            def once():
                self.loss_fn(self.model(x), y).backward()
                self.model.zero_grad(set_to_none=True)

            self._steps[batch] = self._timed(once) * scale
        return self._steps[batch]

    def forward(self) -> float:
        """Seconds of the loss over the training split, without gradients."""
        if self._forward is None:
            x, y, scale = self._slice(self.n_train)
            self.model.eval()

            def once():
                with torch.no_grad():
                    self.loss_fn(self.model(x), y).item()

            self._forward = self._timed(once) * scale
        return self._forward

    def evaluation(self) -> float:
        """Seconds of an epoch's evaluation (loss and accuracy of both splits)."""
        return self.forward() * (self.n_train + self.n_test) / self.n_train

    def gradient(self) -> float:
        """Seconds of the loss and gradient over the training split."""
        return self.step(self.n_train)

    def product(self) -> float:
        """Seconds of one Hessian-vector product over the training split."""
        if self._product is None:
            self._product = product_seconds(
                self.model.eval(), self.data.train,
                HessianOptions(device=self.device_name, check=False))[0]
        return self._product


def _default(fn, name: str):
    """The default of ``fn``'s argument ``name`` (what the measures use when not given)."""
    return inspect.signature(fn).parameters[name].default


def measure_units(options, n_params: int) -> dict[str, int]:
    """What ``landscape.measures.measure_model`` computes with ``options`` (MeasureOptions)
    over the training split: ``products`` (Hessian-vector), ``gradients`` (loss and
    gradient), ``forwards`` (loss alone) and ``evaluations`` (both splits)."""
    from ..sharpness import adaptive_sharpness, average_sharpness

    o = options
    plan = HessianPlan(top_k=1, trace_products=o.trace_products)
    steps = _default(adaptive_sharpness, "steps")
    pacbayes = 1 + (2 + o.pacbayes_iterations) * 2 * o.pacbayes_samples
    forwards = (2 + 1 + _default(average_sharpness, "samples")
                + 2 * o.line_points + o.plane_points ** 2 + 2 * pacbayes)
    return {"products": plan.expected_products(n_params),
            "gradients": KESKAR_EVALUATIONS + steps, "forwards": forwards, "evaluations": 1}


def _seconds(clock: UnitClock, units: dict[str, int]) -> float:
    return (units.get("products", 0) * clock.product()
            + units.get("gradients", 0) * clock.gradient()
            + units.get("forwards", 0) * clock.forward()
            + units.get("evaluations", 0) * clock.evaluation())


def sweep_dry_run(model, data, config) -> list[RunCost]:
    """Each run of a batch-size sweep (``SweepConfig``) with its expected steps, seconds and
    memory: steps times one measured step at its batch, an evaluation per epoch, and its
    measurements (the top eigenvalue's products, Keskar sharpness's gradients)."""
    from ..train import TrainConfig

    n_train = len(data.train[1])
    clock = UnitClock(model, data, config.device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    measured = {"products": HessianPlan(top_k=1).expected_products(n_params),
                "gradients": KESKAR_EVALUATIONS}
    memory = _memory_per_batch(model, data, config.device, HessianPlan(top_k=1))
    out = []
    for run in config.runs(n_train):
        tc = TrainConfig(optimizer=run.optimizer, lr=run.lr, batch_size=run.batch_size,
                         epochs=run.epochs, checkpoint_every=0)
        batch = tc.resolved_batch(n_train)
        steps, evaluated = planned_steps(tc, n_train)
        seconds = steps * clock.step(batch) + _seconds(clock, {**measured,
                                                               "evaluations": evaluated})
        out.append(RunCost(run.label, steps, seconds, memory(batch, SWEEP_WEIGHT_COPIES)))
    return out


def recipe_dry_run(model, data, grid) -> list[RunCost]:
    """Each recipe of a ``RecipeGrid`` with its expected steps, seconds and memory: steps
    times one measured step at its batch (twice for SAM and ASAM), an evaluation per epoch,
    and every measure (``measure_units``)."""
    from .recipes import run_name

    n_train = len(data.train[1])
    clock = UnitClock(model, data, grid.device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    units = measure_units(grid.measures, n_params)
    plan = HessianPlan(top_k=1, trace_products=grid.measures.trace_products)
    memory = _memory_per_batch(model, data, grid.device, plan)
    out = []
    for recipe in grid.recipes():
        tc = grid.train_config(recipe)
        batch = tc.resolved_batch(n_train)
        sam = recipe["optimizer"] in SAM_OPTIMIZERS
        steps, evaluated = planned_steps(tc, n_train)
        seconds = (steps * clock.step(batch) * (2 if sam else 1)
                   + _seconds(clock, {**units, "evaluations": units["evaluations"] + evaluated}))
        out.append(RunCost(run_name(recipe), steps, seconds,
                           memory(batch, SWEEP_WEIGHT_COPIES + sam)))
    return out


def _memory_per_batch(model, data, device_name, plan: HessianPlan):
    """``memory(batch, weight_copies)``: a run's MemoryEstimate, from one step profile."""
    from ..train_memory import step_profile

    profile = step_profile(model, data)
    cache: dict[tuple[int, int], Any] = {}

    def memory(batch: int, copies: int):
        if (batch, copies) not in cache:
            cache[batch, copies] = _run_memory(model, data, device_name, batch, copies, plan,
                                               profile)
        return cache[batch, copies]

    return memory
