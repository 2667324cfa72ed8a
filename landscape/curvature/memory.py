"""What a Hessian run will cost before it starts: its memory by part and, from one measured
product, its time.

Contract: ``hessian_memory`` measures one product's tensors on a few examples (``TensorPeak``;
fixed plus per-example bytes, scaled to the chunk) and adds the solvers' float64 numpy arrays
(eigsh's basis, recorded products up to the record's limit, Hutch++'s probe blocks, the
density's Lanczos basis) from their sizes. The parts of a command run one after another, so
the peak is the largest solver part plus the products' own memory. ``fitting_plan`` finds
the nearest settings that fit a limit (fewer Lanczos vectors with restarts, fewer trace
products or density steps, smaller chunks); ``hessian_dry_run`` times one product and
multiplies.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import split_of
from ..util.memory import MemoryEstimate, TensorPeak, linear_in_examples
from .base import eigsh_products, record_limit
from .hessian import HessianOperator
from .lanczos import BASIS_BUDGET
from .options import DEFAULT_CHUNK, GRAPH_CACHE_BYTES, HessianOptions

WORKSPACE = 6 << 20
"""What a solver's first run adds beyond its arrays (ARPACK and LAPACK work space, allocator
arenas): 5-10 MiB measured on the MNIST-1D MLP, where it is most of the peak."""
PRODUCT_SLICE = 32
"""Examples of the first of two traced products (the second twice as many): enough that the
activations, not a layer's fixed work buffer, make the peak."""
BOTTOM_STEPS = 160
"""Lanczos steps the bottom end usually takes (135-156 measured on the MNIST-1D CNN)."""


@dataclasses.dataclass(frozen=True)
class HessianPlan:
    """What a ``landscape hessian`` run computes (the parts that cost memory and products).

    Attributes:
        top_k, bottom_k: eigenvalues at each end (0: none).
        ncv: eigsh's Lanczos vectors (None: its default ``max(2 top_k + 1, 20)``).
        trace_products: Hutch++ products (0: no trace).
        density_probes, density_steps: stochastic Lanczos quadrature (0 probes: none).
    """

    top_k: int = 5
    bottom_k: int = 0
    ncv: int | None = None
    trace_products: int = 0
    density_probes: int = 0
    density_steps: int = 90

    def basis_vectors(self, n: int) -> int:
        """eigsh's basis size for ``n`` parameters."""
        if not self.top_k:
            return 0
        return min(n, self.ncv or max(2 * self.top_k + 1, 20))

    def expected_products(self, n: int) -> int:
        """Products the plan is expected to take: eigsh's (``eigsh_products``: its basis
        once and about three more per eigenvalue), the bottom end about ``BOTTOM_STEPS``;
        trace and density take exactly what they are given."""
        eig = eigsh_products(n, self.top_k, self.ncv)
        bottom = min(BOTTOM_STEPS, n) if self.bottom_k else 0
        trace = 3 * (self.trace_products // 3) if self.trace_products else 0
        return eig + bottom + trace + self.density_probes * min(self.density_steps, n)


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _product_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     o: HessianOptions) -> list[tuple[float, float]]:
    """Per-product tensor bytes (peak when the gradient graph is rebuilt each product, peak
    when it is kept, the graph itself, the graph's saved tensors as the operator counts
    them), each as ``(fixed, per_example)``, from two tiny slices.

    A kept graph raises the product's own peak (1.33x measured on ResNet-20): its double
    backward must retain the graph instead of freeing it as it goes."""

    def measure(m: int) -> tuple[float, float, float, float]:
        def product(cache: int) -> tuple[float, HessianOperator]:
            op = HessianOperator(model, (x[:m], y[:m]), o.loss, chunk=None, mode=o.mode,
                                 device=o.device, hvp=o.hvp, dtype=o.dtype, graph_cache=cache)
            v = np.random.default_rng(0).standard_normal(op.n_params)
            with TensorPeak() as peak:
                op.matvec(v)
            return peak.peak, op

        rebuilt, op = product(0)
        kept = graph = saved = 0.0
        if op.hvp_method == "double":
            kept = product(1 << 62)[0]
            with TensorPeak() as live:
                held = op._gradient_graph(*op._chunks[0])
                graph, saved = live.live, held[2]
            del held
        return rebuilt, max(kept, rebuilt), graph, saved

    return linear_in_examples(measure, len(y), small=PRODUCT_SLICE)


def hessian_memory(model: nn.Module, data: Any, plan: HessianPlan,
                   options: HessianOptions | None = None, *,
                   profile: list[tuple[float, float]] | None = None) -> MemoryEstimate:
    """Memory of a Hessian run by part, before it starts (a few tiny products are made).

    Args:
        model: the network.
        data: ``(inputs, targets)`` or a DataBundle (its ``options.split``).
        plan: what is computed (``HessianPlan``).
        options: how products are made (chunk, device, dtype, hvp, mode, loss).
        profile: a product's bytes as ``_product_profile`` measured them (they do not
            depend on the chunk), to estimate several plans from one measurement.

    Returns:
        MemoryEstimate: resident ``model`` and ``data``; added ``products`` (one chunk's
        forward, gradient graph and double backward, with the flat vectors), ``gradient
        graphs kept`` (all chunks', when the operator keeps them), and the largest solver
        part.
    """
    o = options or HessianOptions()
    x, y = split_of(data, o.split)
    n_ex = len(y)
    chunk = min(o.chunk or n_ex, n_ex)
    chunks = -(-n_ex // chunk)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    (pf, pe), (kf, ke), (gf, ge), (sf, se) = profile or _product_profile(model, x, y, o)
    # as HessianOperator decides: one chunk's graph is always kept, every chunk's when the
    # rest fit GRAPH_CACHE_BYTES; a kept graph's product peaks higher (it retains the graph)
    keep = ge > 0 and (sf + se * chunk) * (chunks - 1) <= GRAPH_CACHE_BYTES
    added = {"products": int(kf + ke * chunk) if keep else int(pf + pe * chunk)}
    if keep and chunks > 1:
        added["gradient graphs kept"] = int((gf + ge * chunk) * (chunks - 1))
    added.update(_solver_parts(plan, n))
    added["workspace"] = WORKSPACE
    device = str(o.device or next(model.parameters()).device)
    resident = {"model": _tensor_bytes(list(model.parameters()) + list(model.buffers())),
                "data": _tensor_bytes((x, y))}
    return MemoryEstimate(added=added, resident=resident, device=device)


def _solver_parts(plan: HessianPlan, n: int) -> dict[str, int]:
    """The largest of the solvers' float64 arrays (they run one after another), plus the
    determinism check's two gradients."""
    vec = 8 * n
    parts: dict[str, int] = {}
    # each recorded product's input and output, for the residuals (made orthonormal in place)
    # (what eigsh usually takes: the record's floor may hold more, at most RECORD_FLOOR)
    record = min(eigsh_products(n, plan.top_k, plan.ncv),
                 record_limit(n, plan.top_k, plan.ncv)) * 2 * vec
    if plan.top_k:
        basis = plan.basis_vectors(n)
        arrays = (basis + 4 + plan.top_k) * vec  # ARPACK's basis, work, results
        kept = record_limit(n, plan.top_k, plan.ncv)
        if kept < basis:
            # eigsh fills its basis before it restarts, so a record this short is dropped
            # with basis vectors still untouched: the larger of the two moments is the peak
            parts["Lanczos basis"] = max(arrays, (kept + 1 + 4) * vec + kept * 2 * vec)
        else:
            parts["Lanczos basis"] = arrays + record
    if plan.bottom_k:
        steps = min(BOTTOM_STEPS, n, max(20, BASIS_BUDGET // max(n, 1)))
        parts["bottom-end Lanczos basis"] = (steps + 4) * vec + record
    if plan.trace_products:
        m = plan.trace_products // 3
        rest = plan.trace_products - 2 * m
        # probe blocks S, HS, Q, HQ, then the deflated probes (with rademacher's indices)
        parts["trace probe blocks"] = (4 * m + 2 * rest) * vec
    if plan.density_probes:
        parts["density Lanczos basis"] = (min(plan.density_steps, n) + 4) * vec
    if not parts:
        return {}
    name, size = max(parts.items(), key=lambda kv: kv[1])
    return {name: int(size), "gradients": 2 * 4 * n}


def fitting_plan(model: nn.Module, data: Any, plan: HessianPlan, options: HessianOptions,
                 limit: int) -> str | None:
    """The nearest settings whose estimate fits ``limit`` bytes, as the option to give
    (``--ncv 8 fits (about 2.1 GiB)``), or None if none does."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tries: list[tuple[str, HessianPlan, HessianOptions]] = []
    if plan.top_k:
        top = plan.basis_vectors(n)
        tries += [(f"--ncv {v}", dataclasses.replace(plan, ncv=v), options)
                  for v in range(top - 1, plan.top_k + 1, -1)]
    if plan.trace_products:
        tries += [(f"--trace-products {v}", dataclasses.replace(plan, trace_products=v),
                   options) for v in (48, 30, 24, 12, 6, 4) if v < plan.trace_products]
    if plan.density_probes:
        tries += [(f"--density-steps {v}", dataclasses.replace(plan, density_steps=v),
                   options) for v in (60, 40, 20, 10) if v < plan.density_steps]
    x, y = split_of(data, options.split)
    profile = _product_profile(model, x, y, options)
    chunk = options.chunk or DEFAULT_CHUNK
    while chunk > 1:
        chunk //= 2
        tries.append((f"--chunk-size {chunk}", plan, dataclasses.replace(options, chunk=chunk)))
    from ..util.memory import format_bytes

    for flag, p, o in tries:
        est = hessian_memory(model, data, p, o, profile=profile)
        if est.total_added <= limit:
            return f"{flag} fits (about {format_bytes(est.total_added)})"
    return None


def hessian_dry_run(model: nn.Module, data: Any, plan: HessianPlan,
                    options: HessianOptions | None = None) -> dict[str, Any]:
    """Time and memory a Hessian run is expected to take, from one product measured now.

    Returns:
        ``seconds_per_product`` (the second of two products: the first builds what the
        operator keeps), ``products`` (expected), ``seconds`` (their product) and ``memory``
        (``hessian_memory``).
    """
    o = options or HessianOptions()
    memory = hessian_memory(model, data, plan, o)
    op = HessianOperator(model, data, o.loss, chunk=o.chunk, mode=o.mode, device=o.device,
                         hvp=o.hvp, dtype=o.dtype, split=o.split)
    v = np.random.default_rng(0).standard_normal(op.n_params)
    op.matvec(v)
    start = time.perf_counter()
    op.matvec(v)
    per = time.perf_counter() - start
    products = plan.expected_products(op.n_params)
    return {"seconds_per_product": per, "products": products, "seconds": per * products,
            "memory": memory, "n_params": op.n_params}
