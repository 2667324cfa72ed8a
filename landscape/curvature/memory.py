"""What a Hessian run will cost before it starts: its memory by part and, from one measured
product, its time.

Contract: ``hessian_memory`` measures one product's tensors on a few examples (``TensorPeak``;
fixed plus per-example bytes, scaled to the chunk) and adds the solvers' float64 numpy arrays
(eigsh's basis, recorded products up to the record's limit, Hutch++'s probe blocks, the
density's Lanczos basis) from their sizes. The parts of a command run one after another, so
the peak is the largest solver part plus the products' own memory. ``fitting_plan`` finds
the nearest settings that fit a limit (fewer Lanczos vectors with restarts, fewer trace
products or density steps, smaller chunks); ``hessian_dry_run`` times one product and
multiplies, and adds the first product's set-up and the solvers' own work (``solver_seconds``,
timed on a cheap stand-in operator and scaled to the parameters).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import nn

from ..data import split_of
from ..util.memory import MemoryEstimate, TensorPeak, linear_in_examples
from .base import CurvatureOperator, eigsh_products, record_limit
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
        once and about three more per eigenvalue; one more per eigenvalue for the residuals
        where the record cannot hold them all), the bottom end about ``BOTTOM_STEPS``;
        trace and density take exactly what they are given."""
        eig = eigsh_products(n, self.top_k, self.ncv)
        if eig > record_limit(n, self.top_k, self.ncv):
            eig += self.top_k  # the record is dropped: one product per residual
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
    kept = record_limit(n, plan.top_k, plan.ncv)
    record = min(eigsh_products(n, plan.top_k, plan.ncv), kept) * 2 * vec
    if plan.top_k:
        basis = plan.basis_vectors(n)
        arrays = (basis + 4 + plan.top_k) * vec  # ARPACK's basis, work, results
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


DRY_RUN_PRODUCTS = 5
"""Most products a dry run times after the first (their median is the rate)."""
VECTOR_SLICE = 1 << 19
"""Most parameters of the stand-in on which ``solver_seconds`` times the solvers' own work
(their arrays and passes over them grow linearly with the parameters; 4 MiB a vector)."""


class _Diagonal(LinearOperator):
    """A stand-in operator whose products cost next to nothing (the diagonal ``i^-power``:
    eigsh converges at once on a steep one, restarts on a flat one), timing them."""

    def __init__(self, n: int, power: float = 1.0):
        super().__init__(dtype=np.float64, shape=(n, n))
        self._diag = np.arange(1.0, n + 1.0) ** -power
        self.seconds, self.products = 0.0, 0

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        self.products += 1
        start = time.perf_counter()
        out = self._diag * np.asarray(x).reshape(-1)
        self.seconds += time.perf_counter() - start
        return out


def solver_seconds(plan: HessianPlan, n: int) -> float:
    """Seconds the solvers spend besides their products, measured now on a cheap stand-in
    operator of at most ``VECTOR_SLICE`` parameters and scaled to ``n`` (their passes over
    parameter-sized arrays grow linearly with it): eigsh's own work (``_eigsh_seconds``: a
    fixed part and a part per expected product), its record's copies and
    the record's Gram-Schmidt at the end, or, where the record is dropped, one product per
    residual; Hutch++'s probes and QR and the density's full reorthogonalization as those
    solvers run on the stand-in. The bottom end's Lanczos is not timed (its steps on a
    stand-in say little of a network's). The 4.2M-parameter MLP spent 26-33% of its solvers'
    time besides products."""
    from .density import hessian_density
    from .trace import hessian_trace

    rows = min(n, VECTOR_SLICE)
    scale = n / rows
    total = 0.0
    if plan.top_k and plan.top_k < rows - 1:
        expected = eigsh_products(n, plan.top_k, plan.ncv)
        ncv = min(plan.basis_vectors(n), rows - 1)
        total += _eigsh_seconds(rows, plan.top_k, ncv, expected) * scale
        kept = record_limit(n, plan.top_k, plan.ncv)
        total += _record_seconds(rows, min(expected, kept), expected > kept) * scale
    if plan.trace_products:
        op = _Diagonal(rows)
        start = time.perf_counter()
        hessian_trace(op, n_products=plan.trace_products)
        total += (time.perf_counter() - start - op.seconds) * scale
    if plan.density_probes:
        op = _Diagonal(rows)
        start = time.perf_counter()
        hessian_density(op, n_probes=plan.density_probes,
                        n_steps=min(plan.density_steps, rows))
        total += (time.perf_counter() - start - op.seconds) * scale
    return total


def _eigsh_seconds(rows: int, k: int, ncv: int, products: int) -> float:
    """ARPACK's own seconds for ``products`` products on ``rows`` parameters: a fixed part
    (start, Ritz vectors) and a part per product (reorthogonalization, restarts), told apart
    by two stand-in spectra that take different numbers of products."""
    runs = []
    for power in (1.0, 0.25):  # a decaying spectrum converges at once, a flat one restarts
        op = _Diagonal(rows, power)
        start = time.perf_counter()
        try:
            eigsh(op, k=k, which="LA", tol=1e-6, ncv=ncv, maxiter=20, v0=np.ones(rows))
        except ArpackNoConvergence:
            pass
        runs.append((op.products, time.perf_counter() - start - op.seconds))
    (c1, t1), (c2, t2) = runs
    if c2 <= c1:
        return t1 / max(c1, 1) * products
    per = max((t2 - t1) / (c2 - c1), 0.0)
    return max(t1 - per * c1, 0.0) + per * products


def _record_seconds(rows: int, kept: int, dropped: bool) -> float:
    """Seconds of an eigenvalue run's record on ``rows`` parameters: each of ``kept``
    products' input copied, then (unless the record is ``dropped`` when it fills) their
    Gram-Schmidt (``_orthonormalize``)."""
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(rows) for _ in range(kept)]
    stand_in = CurvatureOperator(rows)  # a record only: no product is asked of it
    start = time.perf_counter()
    stand_in.history = [(x.copy(), x) for x in inputs]
    seconds = time.perf_counter() - start
    if not dropped:
        start = time.perf_counter()
        stand_in._orthonormalize()
        seconds += time.perf_counter() - start
    return seconds


def hessian_dry_run(model: nn.Module, data: Any, plan: HessianPlan,
                    options: HessianOptions | None = None, *,
                    memory: MemoryEstimate | None = None) -> dict[str, Any]:
    """Time and memory a Hessian run is expected to take, from products measured now.

    Args:
        memory: the run's ``hessian_memory``, when the caller has it (else estimated here).

    Returns:
        ``seconds_per_product`` and the set-up (``product_seconds``), ``products``
        (expected), ``setup_seconds`` (once per solver), ``solver_seconds``
        (``solver_seconds``: the solvers' own work), ``seconds`` (the products, the set-up
        and the solvers' work) and ``memory`` (``hessian_memory``).
    """
    o = options or HessianOptions()
    memory = memory or hessian_memory(model, data, plan, o)
    per, setup, n = product_seconds(model, data, o)
    return {"seconds_per_product": per, "memory": memory, "n_params": n,
            **expected_seconds(plan, n, per, setup)}


def product_seconds(model: nn.Module, data: Any, options: HessianOptions
                    ) -> tuple[float, float, int]:
    """``(seconds per product, set-up seconds, parameters)`` measured now: the rate is the
    median of up to ``DRY_RUN_PRODUCTS`` products after the first, as many as fit the
    first's time or a second (one product of a small model swings by tens of percent); the
    set-up is making the operator and what its first product spends building the kept
    gradient graphs."""
    o = options
    start = time.perf_counter()
    op = HessianOperator(model, data, o.loss, chunk=o.chunk, mode=o.mode, device=o.device,
                         hvp=o.hvp, dtype=o.dtype, split=o.split)
    made = time.perf_counter() - start
    v = np.random.default_rng(0).standard_normal(op.n_params)
    start = time.perf_counter()
    op.matvec(v)
    first = time.perf_counter() - start
    times: list[float] = []
    while len(times) < DRY_RUN_PRODUCTS and (not times or sum(times) < max(first, 1.0)):
        start = time.perf_counter()
        op.matvec(v)
        times.append(time.perf_counter() - start)
    per = float(np.median(times))
    return per, made + max(first - per, 0.0), op.n_params


def expected_seconds(plan: HessianPlan, n: int, per_product: float, setup: float
                     ) -> dict[str, Any]:
    """A plan's expected time from a product's seconds and an operator's set-up (making it
    and its first product's extra): ``products`` (expected), ``setup_seconds`` (once per
    solver: each makes its own operator), ``solver_seconds`` (``solver_seconds``, timed
    now) and ``seconds``, their total."""
    products = plan.expected_products(n)
    builds = bool(plan.top_k or plan.bottom_k) + bool(plan.trace_products) + bool(
        plan.density_probes)
    vector = solver_seconds(plan, n)
    return {"products": products, "setup_seconds": setup * builds, "solver_seconds": vector,
            "seconds": per_product * products + setup * builds + vector}
