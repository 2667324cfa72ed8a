"""Curvature of the mean loss: Hessian-vector products, extreme eigenvalues, trace, density.

Everything here is matrix-free: the Hessian ``H`` of the mean loss over a data split is only
ever applied to vectors (``HessianOperator``), so the cost of a result is counted in
Hessian-vector products ("products"). Parameters are the model's trainable weights
(``params.named_tensors(model, "weights")``) in their insertion order; vectors are flat.

The model is never modified: products run through ``torch.func.functional_call`` on a shallow
structural copy of the model (sharing its tensors) whose train/eval flags are set there, and in
train mode BatchNorm running statistics are updated on throw-away copies. Eval mode is the
default, so BatchNorm uses its running statistics and the Hessian does not depend on how the
data are chunked.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, aslinearoperator, eigsh
from torch import nn

from ._util import float32_mode
from .data import split_of
from .distributed import DistContext, DistributedError, Link
from .errors import LandscapeError, StoreError
from .params import named_tensors
from .losses import loss_function

DEFAULT_CHUNK = 1024
"""Examples per forward pass in a product (bounds memory; the result does not depend on it)."""

RECORD_BYTES = 1 << 29
"""Most bytes of recorded products (for free residuals); past it residuals cost a product each."""

BOTTOM_TOL = 1e-5
"""Default tolerance of the smallest end of ``hessian_eigenvalues``, relative to the spectrum's
width. On the MNIST-1D CNN trained full batch (8,010 parameters, width 20.2, smallest eigenvalue
-0.0026974) it took 135 products and was 7e-6 off; 1e-6 took 220 products and 1e-4 took 70 but
was 5e-4 (19%) off."""

GRAPH_CACHE_BYTES = 1 << 30
"""Keep the gradient's autograd graph between double-backward products while it needs at most
this many bytes (estimated from the tensors it saves); each product is then one backward pass."""

HVP_METHODS = ("double", "forward")
MODES = ("eval", "train")

LossArg = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- results

@dataclasses.dataclass(frozen=True, kw_only=True)
class EigenResult:
    """Extreme Hessian eigenvalues.

    Attributes:
        values: eigenvalues, ascending (for ``which="both"``: the bottom ones, then the top).
        vectors: unit eigenvectors as columns, ``(n_params, len(values))``, or None.
        residuals: ``||H v - lambda v||`` for each value (v of unit norm).
        n_products: Hessian-vector products used (solver and residuals together).
        seconds: wall time.
        mode: ``eval`` or ``train``: the mode the model's layers ran in.
        which: ``largest``, ``smallest`` or ``both``.
        method: ``lanczos`` (scipy eigsh) or ``power``.
        hvp: how products were computed: ``forward`` (torch.func jvp of grad) or ``double``.
        converged: False when the solver stopped at its iteration limit.
        n_params: dimension of the Hessian.
    """

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    n_products: int
    seconds: float
    mode: str
    which: str
    method: str
    hvp: str
    converged: bool
    n_params: int


@dataclasses.dataclass(frozen=True)
class TraceResult:
    """Stochastic trace estimate.

    Attributes:
        estimate: the trace estimate.
        stderr: its standard error (of the stochastic part; Hutch++'s low-rank part is exact).
        n_products: Hessian-vector products used.
        method: ``hutch++`` or ``hutchinson``.
        seconds: wall time.
        mode: ``eval`` or ``train``.
        n_params: dimension of the Hessian.
    """

    estimate: float
    stderr: float
    n_products: int
    method: str
    seconds: float
    mode: str
    n_params: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class DensityResult:
    """Smoothed spectral density from stochastic Lanczos quadrature.

    Attributes:
        grid: evaluation points (ascending).
        density: density on ``grid``; its trapezoid integral is 1.
        nodes: Ritz values of all probes, concatenated.
        weights: their quadrature weights (each probe's sum to 1 / n_probes; all sum to 1).
        sigma: standard deviation of the Gaussian kernel.
        n_products: Hessian-vector products used.
        n_probes: number of random probes.
        n_steps: Lanczos steps per probe (fewer if the Krylov space closed early).
        seconds: wall time.
        mode: ``eval`` or ``train``.
        n_params: dimension of the Hessian.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_products: int
    n_probes: int
    n_steps: int
    seconds: float
    mode: str
    n_params: int


# ----------------------------------------------------------------------------- inputs

def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise LandscapeError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")


def _shell(model: nn.Module, training: bool) -> nn.Module:
    """A structural copy of ``model`` sharing its tensors, with its own train/eval flags."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    shell = copy.deepcopy(model, memo)
    return shell.train(training)


def _batch_statistics(model: nn.Module) -> bool:
    """True if a BatchNorm layer normalizes with batch statistics (train mode or untracked)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm)
               and (m.training or m.running_mean is None) for m in model.modules())


def stochastic_layers(model: nn.Module, mode: str = "eval") -> list[str]:
    """Names of layers that make the loss random or chunk-dependent in ``mode``.

    In train mode: dropout with p > 0 (random) and BatchNorm (batch statistics depend on the
    chunking). Nothing is stochastic in eval mode for the built-in layers.
    """
    if mode != "train":
        return []
    found = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.modules.dropout._DropoutNd, nn.AlphaDropout)) and mod.p > 0:
            found.append(f"{name or type(mod).__name__} (dropout p={mod.p})")
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            found.append(f"{name or type(mod).__name__} (BatchNorm batch statistics)")
    return found


# ----------------------------------------------------------------------------- products

class HessianOperator(LinearOperator):
    """The Hessian of the mean loss over a data split, as a scipy LinearOperator.

    The scipy side is float64; products run on ``device`` in ``dtype`` (the model's dtype
    unless given), on GPUs in full float32 (TF32 off for the products' matmuls and
    convolutions, whatever the global setting). ``n_products`` counts every product, through scipy or ``hvp``.

    Args:
        model: the network (never modified).
        data: ``(inputs, targets)`` or a DataBundle (its ``split``).
        loss: ``cross_entropy``, ``mse`` or a mean-reduced ``loss(outputs, targets)``.
        chunk: examples per forward pass; each chunk is weighted by its size, so the
            product is exact for any chunking (in eval mode).
        mode: ``eval`` (default: BatchNorm running statistics, no dropout) or ``train``.
        device: where products run; default the model's device.
        hvp: ``double`` (double backward, the default: measured faster on the CPU for the
            MNIST-1D MLP and CNN) or ``forward`` (torch.func jvp of grad, forward-over-reverse;
            falls back to double backward, with a warning, where torch.func fails).
        dtype: floating dtype of the products (e.g. torch.float64 for a float32 model).
        split: which split of a DataBundle.
        record: keep every product (x, Hx) so residuals of Ritz vectors in their span cost no
            further products (16 bytes per parameter per product, up to RECORD_BYTES).
        graph_cache: byte budget for keeping the gradient graph of every chunk between
            double-backward products (0: recompute it for each product). The graph is kept only
            if the first chunk's saved tensors, times the number of chunks, fit the budget.
        progress: a progress bar counting products.
    """

    def __init__(self, model: nn.Module, data: Any, loss: LossArg = "cross_entropy", *,
                 chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES):
        _check_choice(mode, MODES, "mode")
        _check_choice(hvp, HVP_METHODS, "hvp method")
        weights = named_tensors(model, "weights")
        if not weights:
            raise LandscapeError("the model has no trainable parameters")
        first = next(iter(weights.values()))
        self.device = torch.device(device) if device is not None else first.device
        self.torch_dtype = dtype or first.dtype
        if not self.torch_dtype.is_floating_point:
            raise LandscapeError(f"products need a floating dtype, got {self.torch_dtype}")
        self.mode = mode
        self.hvp_method = hvp
        self._loss_fn = loss_function(loss)
        self._shell = _shell(model, mode == "train")
        if hvp == "forward" and _batch_statistics(self._shell):
            # torch.func's second derivatives through batch-statistics BatchNorm disagree with
            # finite differences (0.6% on a tiny CNN, torch 2.14); double backward agrees.
            warnings.warn("BatchNorm uses batch statistics here: forward-over-reverse "
                          "products are not reliable through it; using double backward",
                          stacklevel=2)
            self.hvp_method = "double"
        self.params = {n: self._to(t) for n, t in weights.items()}
        self._fixed = {n: self._to(t) for n, t in model.named_parameters() if n not in weights}
        self._fixed.update({n: self._to(t) for n, t in model.named_buffers()})
        self._chunks = self._make_chunks(*split_of(data, split), chunk)
        self.n_params = sum(t.numel() for t in self.params.values())
        self.n_products = 0
        self._record = record
        self._graph_budget = graph_cache
        self._graphs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None
        self.history: list[tuple[np.ndarray, np.ndarray]] = []
        self._bar = None
        if progress:
            from ._util import progress as _progress
            self._bar = _progress(None, "Hessian-vector products", True, unit="Hv")
        super().__init__(dtype=np.float64, shape=(self.n_params, self.n_params))

    # --- setup

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if t.is_floating_point():
            return t.to(self.device, self.torch_dtype)
        return t.to(self.device)

    def _make_chunks(self, x: torch.Tensor, y: torch.Tensor, chunk: int | None):
        if chunk is not None and chunk < 1:
            raise LandscapeError(f"chunk must be at least 1, got {chunk}")
        x = self._to(x)
        y = y.to(self.device)
        n = len(y)
        step = n if chunk is None else chunk
        return [(x[i:i + step], y[i:i + step], len(y[i:i + step]) / n)
                for i in range(0, n, step)]

    # --- the loss as a function of the parameters

    def _buffers(self) -> dict[str, torch.Tensor]:
        # Train-mode BatchNorm updates its running statistics in place: give it copies.
        if self.mode == "train":
            return {n: t.clone() for n, t in self._fixed.items()}
        return self._fixed

    def _chunk_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    weight: float) -> torch.Tensor:
        out = torch.func.functional_call(self._shell, {**params, **self._buffers()}, (x,))
        return self._loss_fn(out, y) * weight

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Mean loss and its flat gradient (no product counted)."""
        total, grad = 0.0, torch.zeros(self.n_params, device=self.device, dtype=self.torch_dtype)
        with torch.enable_grad(), self._float32():
            for x, y, w in self._chunks:
                p = {n: t.detach().requires_grad_(True) for n, t in self.params.items()}
                value = self._chunk_loss(p, x, y, w)
                g = torch.autograd.grad(value, list(p.values()))
                total += float(value.detach())
                grad += torch.cat([t.reshape(-1) for t in g])
        return total, grad

    def _float32(self):
        """Full-precision float32 math on CUDA (no TF32 convolutions or matmuls)."""
        return float32_mode("ieee", enabled=self.device.type == "cuda")

    # --- products

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat torch vector (moved to the device and dtype of the products)."""
        v = v.to(self.device, self.torch_dtype).reshape(-1)
        if v.numel() != self.n_params:
            raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has "
                                 f"{self.n_params}")
        with self._float32():
            if self.hvp_method == "forward":
                try:
                    out = self._hvp_forward(v)
                except Exception as exc:  # torch.func does not cover every layer
                    warnings.warn(f"forward-over-reverse products failed on this model "
                                  f"({type(exc).__name__}: {exc}); using double backward",
                                  stacklevel=2)
                    self.hvp_method = "double"
                    out = self._hvp_double(v)
            else:
                out = self._hvp_double(v)
        if not bool(torch.isfinite(out).all()):  # else eigsh dies in ARPACK, a trace is NaN
            raise LandscapeError("a Hessian-vector product is not finite (NaN or inf): the "
                                 "model's weights or its loss on these data are not finite, "
                                 "so its Hessian is undefined")
        self.n_products += 1
        if self._bar is not None:
            self._bar.update(1)
        return out

    def _split_vector(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for name, t in self.params.items():
            out[name] = v[start:start + t.numel()].view_as(t)
            start += t.numel()
        return out

    def _hvp_forward(self, v: torch.Tensor) -> torch.Tensor:
        tangent = self._split_vector(v)
        total = torch.zeros_like(v)
        for x, y, w in self._chunks:
            grad = torch.func.grad(lambda p: self._chunk_loss(p, x, y, w))
            _, hv = torch.func.jvp(grad, (self.params,), (tangent,))
            total += torch.cat([t.reshape(-1) for t in hv.values()])
        return total

    @property
    def hvp_description(self) -> str:
        """How products are computed: ``forward``, ``double`` or ``double (graph kept)``."""
        return "double (graph kept)" if self._graphs else self.hvp_method

    def _gradient_graph(self, x: torch.Tensor, y: torch.Tensor, w: float
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
        """Parameters, gradient with its graph, and the bytes the graph saved."""
        saved = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        p = [t.detach().requires_grad_(True) for t in self.params.values()]
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            value = self._chunk_loss(dict(zip(self.params, p)), x, y, w)
            g = torch.autograd.grad(value, p, create_graph=True)
        return p, list(g), saved[0]

    def _keep_graphs(self) -> None:
        """Build and keep every chunk's gradient graph if they fit the byte budget."""
        self._graphs = []
        if self._graph_budget <= 0:
            return
        first = self._gradient_graph(*self._chunks[0])
        if first[2] * len(self._chunks) > self._graph_budget:
            return
        self._graphs = [first[:2]] + [self._gradient_graph(*c)[:2] for c in self._chunks[1:]]

    def _hvp_double(self, v: torch.Tensor) -> torch.Tensor:
        if self._graphs is None:
            self._keep_graphs()
        tangent = list(self._split_vector(v).values())
        total = torch.zeros_like(v)
        for i, chunk in enumerate(self._chunks):
            if self._graphs:
                p, g = self._graphs[i]
            else:
                p, g, _ = self._gradient_graph(*chunk)
            # d(g . t)/dp = H t: the backward of the gradient with the tangent as its seed
            hv = _grad(g, p, tangent, keep=bool(self._graphs))
            total += torch.cat([t.reshape(-1) for t in hv])
        return total

    # --- scipy interface (float64)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        out = self.hvp(torch.from_numpy(x)).to("cpu", torch.float64).numpy()
        if self._record and (len(self.history) + 1) * 16 * self.n_params > RECORD_BYTES:
            self._record = False
            self.history.clear()
        if self._record:
            self.history.append((x.copy(), out))
        return out

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _adjoint(self) -> "HessianOperator":
        return self

    def close(self) -> None:
        """Close the progress bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def check_determinism(self) -> bool:
        """Compute loss and gradient twice; warn and return False if they differ."""
        loss1, grad1 = self.loss_and_grad()
        loss2, grad2 = self.loss_and_grad()
        tol = math.sqrt(torch.finfo(self.torch_dtype).eps)
        scale = float(grad1.norm()) + 1e-30
        same_loss = abs(loss1 - loss2) <= tol * max(abs(loss1), 1e-30)
        same_grad = float((grad1 - grad2).norm()) <= tol * scale
        if not (same_loss and same_grad):
            warnings.warn(f"the loss is not deterministic in {self.mode} mode: two passes gave "
                          f"loss {loss1:.10g} and {loss2:.10g}, gradient difference "
                          f"{float((grad1 - grad2).norm()):.3g} (norm {scale:.3g}); Hessian "
                          "results will not be reproducible (dropout on? random layers?)",
                          stacklevel=3)
            return False
        return True


def _grad(outputs: list[torch.Tensor], inputs: list[torch.Tensor],
          seeds: list[torch.Tensor], keep: bool) -> list[torch.Tensor]:
    """Vector-Jacobian product that treats outputs without a graph (constant) as zero."""
    live = [(o, s) for o, s in zip(outputs, seeds) if o.requires_grad]
    if not live:
        return [torch.zeros_like(t) for t in inputs]
    with torch.enable_grad():
        return list(torch.autograd.grad([o for o, _ in live], inputs,
                                        grad_outputs=[s for _, s in live], retain_graph=keep,
                                        materialize_grads=True))


def hessian_vector_product(model: nn.Module, data: Any, vector: torch.Tensor,
                           loss: LossArg = "cross_entropy",
                           chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                           device: str | torch.device | None = None, hvp: str = "double"
                           ) -> torch.Tensor:
    """One product ``H v`` of the mean-loss Hessian with a flat vector.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        vector: flat tensor with one entry per trainable parameter.
        loss, chunk, mode, device, hvp: as for ``HessianOperator``.

    Returns:
        ``H v`` as a flat tensor on the product device.
    """
    op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device, hvp=hvp)
    return op.hvp(vector)


def _warn_stochastic(model: nn.Module, mode: str) -> None:
    layers = stochastic_layers(model, mode)
    if layers:
        warnings.warn(f"in {mode} mode the loss depends on randomness or on the chunking: "
                      f"{', '.join(layers[:4])}{' ...' if len(layers) > 4 else ''}; "
                      "use mode='eval' for a reproducible Hessian", stacklevel=3)


def check_determinism(model: nn.Module, data: Any, loss: LossArg = "cross_entropy",
                      mode: str = "eval", chunk: int | None = DEFAULT_CHUNK,
                      device: str | torch.device | None = None) -> bool:
    """Two passes must give the same loss and gradient; warn (warnings.warn) if not.

    Also warns when ``mode`` turns on stochastic or chunk-dependent layers (dropout,
    BatchNorm batch statistics).

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        loss, mode, chunk, device: as for ``HessianOperator``.

    Returns:
        True if both passes agreed (to the square root of the dtype's epsilon).
    """
    _warn_stochastic(model, mode)
    op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device)
    return op.check_determinism()


@dataclasses.dataclass(frozen=True)
class HessianOptions:
    """How the solvers make their Hessian-vector products from a model (the operator's
    settings, one object for every solver; unused when a solver is given an operator).

    Attributes:
        loss, chunk, mode, device, hvp, dtype, split: as for ``HessianOperator``.
        check: run the two-pass determinism check first (two gradient passes).
        progress: show a progress bar of products.
        factory: makes the operator in place of ``HessianOperator`` (same arguments), e.g.
            ``DistributedHessian`` under torchrun.
    """

    loss: LossArg = "cross_entropy"
    chunk: int | None = DEFAULT_CHUNK
    mode: str = "eval"
    device: Any = None
    hvp: str = "double"
    dtype: torch.dtype | None = None
    split: str = "train"
    check: bool = True
    progress: bool = False
    factory: Callable[..., HessianOperator] | None = None


class _Given(LinearOperator):
    """A caller's symmetric operator (a scipy LinearOperator or a matrix) with what the solvers
    keep track of: counted and (optionally) recorded products."""

    def __init__(self, op: Any, record: bool):
        self.inner = aslinearoperator(op)
        if self.inner.shape[0] != self.inner.shape[1]:
            raise LandscapeError(f"the operator must be square, got shape {self.inner.shape}")
        self.n_params = self.inner.shape[0]
        self.n_products, self.history, self._record = 0, [], record
        self.mode = getattr(op, "mode", "given operator")
        self.hvp_description = getattr(op, "hvp_description", "given operator")
        super().__init__(dtype=np.float64, shape=self.inner.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        out = np.asarray(self.inner.matvec(x), dtype=np.float64).reshape(-1)
        self.n_products += 1
        if self._record and (len(self.history) + 1) * 16 * self.n_params <= RECORD_BYTES:
            self.history.append((x.copy(), out.copy()))
        return out

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def close(self) -> None:
        pass


def _operator(source: Any, data: Any, options: HessianOptions | None, record: bool):
    """The operator the solvers use: ``source`` itself when it is an operator or a matrix,
    else a ``HessianOperator`` of the model ``source`` over ``data`` (or what
    ``options.factory`` makes with the same arguments)."""
    if not isinstance(source, nn.Module):
        if data is not None:
            raise LandscapeError("data goes with a model, not with an operator")
        return _Given(source, record)
    if data is None:
        raise LandscapeError("a model needs its data: (inputs, targets) or a DataBundle")
    o = options or HessianOptions()
    _warn_stochastic(source, o.mode)
    op = (o.factory or HessianOperator)(source, data, o.loss, chunk=o.chunk, mode=o.mode,
                                        device=o.device, hvp=o.hvp, dtype=o.dtype,
                                        split=o.split, record=record, progress=o.progress)
    if o.check:
        try:
            op.check_determinism()
        except BaseException:
            op.close()  # a distributed operator must release the ranks serving it
            raise
    return op


def _rng_vector(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


# ----------------------------------------------------------------------------- eigenvalues

def hessian_eigenvalues(source: Any, data: Any = None, *, k: int = 5, which: str = "largest",
                        tol: float = 1e-6, bottom_tol: float | None = BOTTOM_TOL,
                        return_vectors: bool = False, seed: int = 0, method: str = "lanczos",
                        k_smallest: int | None = None, ncv: int | None = None,
                        maxiter: int | None = None, options: HessianOptions | None = None
                        ) -> EigenResult:
    """Extreme eigenvalues of the Hessian of the mean loss over a data split.

    ``largest`` are the algebraically largest, ``smallest`` the most negative. With
    ``method="lanczos"`` (default) the top end is scipy's implicitly restarted Lanczos (eigsh)
    from a start vector drawn from ``seed``. The bottom of a trained network's spectrum is a
    dense cluster around zero, where restarted Lanczos crawls (MNIST-1D CNN trained full batch,
    ``k=3, which="both", k_smallest=1``: 1,229 products at tol 1e-6, about 1,200 of them for
    the smallest eigenvalue); it is found instead by one Lanczos run without restarts (full
    reorthogonalization) that stops when each bottom Ritz residual is below ``bottom_tol``
    times the spectrum's width (the same call: 156 products in all at the default 1e-5, 135 of
    them for the bottom; 241 at 1e-6). Only if that run hits its step limit does eigsh take
    over on ``H - s I`` (``s`` the largest eigenvalue, so eigsh's relative rule is relative to
    the width too), started from the best Ritz vector. Residuals come from the recorded products
    (Ritz vectors lie in their span), so they cost no extra product. ``method="power"`` is
    power iteration with deflation, kept as a baseline.

    Args:
        source: the network (not modified), or a symmetric operator (a scipy LinearOperator,
            a ``HessianOperator``, a dense or sparse matrix) to use as it is.
        data: with a network: ``(inputs, targets)`` or a DataBundle (its ``options.split``).
        k: how many eigenvalues (for ``both``: how many at the top).
        which: ``largest``, ``smallest`` or ``both``.
        tol: tolerance of the top end: eigsh stops when each Ritz residual is below ``tol``
            times its value; for ``power``, the relative change of the eigenvalue between
            iterations.
        bottom_tol: tolerance of the bottom end, relative to the spectrum's width ``W``
            (largest minus smallest eigenvalue): each bottom Ritz residual ends below
            ``bottom_tol * W``. A Ritz value is never below the smallest eigenvalue and lies
            within its residual of an eigenvalue, so the smallest one is bracketed by
            ``[value - bottom_tol * W, value]`` (a negative value proves negative curvature).
            The default 1e-5 bounds the error of the MNIST-1D CNN's smallest eigenvalue
            (-0.0027, W = 20) by 2e-4; it was 7e-6 off. None: the same as ``tol``. For
            ``power``: the relative change of the shifted eigenvalue.
        return_vectors: also return unit eigenvectors.
        seed: seed of the start vectors.
        method: ``lanczos`` or ``power``.
        k_smallest: for ``both``, how many at the bottom (default ``k``).
        ncv: eigsh's basis size (default: ``max(2k + 1, 20)`` for the top and, where eigsh
            takes over the bottom, ``max(2k + 1, 40)``).
        maxiter: restarts (eigsh), Lanczos steps of the bottom end (default 1000, fewer where
            the basis would pass 1 GiB) or iterations per eigenvalue (power, default 100).
        options: how products are made from a network (``HessianOptions``).

    Returns:
        EigenResult with values ascending, residuals, products, seconds and the mode used.
    """
    _check_choice(which, ("largest", "smallest", "both"), "which")
    _check_choice(method, ("lanczos", "power"), "method")
    k_small = (k_smallest if k_smallest is not None else k) if which == "both" else k
    k_large = k if which != "smallest" else 0
    k_small = k_small if which != "largest" else 0
    if min(k_large, k_small) < 0 or k_large + k_small < 1:
        raise LandscapeError("k must be at least 1")
    bottom_tol = tol if bottom_tol is None else bottom_tol
    if not (tol >= 0 and bottom_tol >= 0):
        raise LandscapeError(f"tolerances must not be negative (tol {tol}, bottom_tol "
                             f"{bottom_tol})")
    start = time.perf_counter()
    op = _operator(source, data, options, record=method == "lanczos")
    try:
        if k_large + k_small > op.n_params:
            raise LandscapeError(f"asked for {k_large + k_small} eigenvalues of a "
                                 f"{op.n_params}-parameter Hessian")
        rng = np.random.default_rng(seed)
        if method == "power":
            vals, vecs, res, converged = _power_ends(op, k_large, k_small, tol, bottom_tol,
                                                     maxiter, rng)
        else:
            vals, vecs, res, converged = _lanczos_ends(op, k_large, k_small, tol, bottom_tol,
                                                       ncv, maxiter, rng)
    finally:
        op.close()
    order = np.argsort(vals, kind="stable")
    return EigenResult(values=vals[order], vectors=vecs[:, order] if return_vectors else None,
                       residuals=res[order], n_products=op.n_products,
                       seconds=time.perf_counter() - start, mode=op.mode, which=which,
                       method=method, hvp=op.hvp_description, converged=converged,
                       n_params=op.n_params)


def _eigsh(op: LinearOperator, k: int, which: str, tol: float, ncv: int | None,
           maxiter: int | None, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """scipy eigsh that keeps what converged if it runs out of iterations."""
    try:
        vals, vecs = eigsh(op, k=k, which=which, tol=tol, ncv=ncv, maxiter=maxiter, v0=v0)
        return vals, vecs, True
    except ArpackNoConvergence as exc:
        if len(exc.eigenvalues) == 0:
            raise LandscapeError(f"Lanczos found no converged eigenvalue within its iteration "
                                 f"limit (tol {tol}); raise maxiter or tol") from exc
        warnings.warn(f"Lanczos converged for only {len(exc.eigenvalues)} of {k} eigenvalues",
                      stacklevel=4)
        return exc.eigenvalues, exc.eigenvectors, False


class _Shifted(LinearOperator):
    """``H - s I`` over a HessianOperator (products still counted there)."""

    def __init__(self, op: HessianOperator, shift: float):
        self.op, self.shift = op, shift
        super().__init__(dtype=np.float64, shape=op.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return self.op.matvec(x) - self.shift * x

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)


def _dense_small(op: HessianOperator) -> np.ndarray:
    """The whole Hessian by n products (for Hessians too small for eigsh)."""
    h = np.stack([op.matvec(e) for e in np.eye(op.n_params)], axis=1)
    return 0.5 * (h + h.T)


def _lanczos_ends(op: HessianOperator, k_large: int, k_small: int, tol: float,
                  bottom_tol: float, ncv: int | None, maxiter: int | None,
                  rng: np.random.Generator):
    n = op.n_params
    if max(k_large, k_small) >= n - 1 or n <= 2 * (k_large + k_small) + 2:
        vals, vecs = np.linalg.eigh(_dense_small(op))
        pick = np.r_[np.arange(k_small), np.arange(n - k_large, n)].astype(int)
        pick = np.unique(pick)
        return vals[pick], vecs[:, pick], _residuals(op, vals[pick], vecs[:, pick]), True
    parts, converged, top = [], True, None
    if k_large:
        vals, vecs, ok = _eigsh(op, k_large, "LA", tol, ncv, maxiter, _rng_vector(rng, n))
        parts.append((vals, vecs))
        converged &= ok
        top = float(np.max(vals))
    if k_small:
        vals, vecs, ok = _bottom_end(op, k_small, bottom_tol, top, ncv, maxiter, rng)
        parts.append((vals, vecs))
        converged &= ok
    vals = np.concatenate([p[0] for p in parts])
    vecs = np.concatenate([p[1] for p in parts], axis=1)
    return vals, vecs, _residuals(op, vals, vecs), converged


def _bottom_end(op: HessianOperator, k: int, tol: float, top: float | None, ncv: int | None,
                maxiter: int | None, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ``k`` smallest eigenpairs, each Ritz residual below ``tol`` times the width.

    Lanczos without restarts first: on a dense cluster near zero it needs far fewer products
    than restarted eigsh (MNIST-1D CNN, width-relative 1e-5: 135 against 1,045). eigsh on the
    shifted operator takes over from the best Ritz vectors if the step limit comes first.
    """
    n = op.n_params
    steps = min(n, maxiter or 1000, max(20, _BASIS_BUDGET // n))

    def width(theta: np.ndarray) -> float:
        high = theta[-1] if top is None else max(top, theta[-1])
        return max(high - theta[0], 1e-300)

    def done(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        return len(theta) >= k and bool(np.all(beta * np.abs(s[-1, :k]) <= tol * width(theta)))

    keep: dict[str, np.ndarray] = {}
    theta, s, m = _lanczos(op.matvec, _rng_vector(rng, n), steps, stop=done, check_every=5,
                           out=keep)
    vecs = keep["basis"].T @ s[:, :k]
    if m == n or done(theta, s, keep["beta"]):  # a closed Krylov space is exact
        return theta[:k], vecs, True
    shift = max(top if top is not None else theta[-1], 0.0)
    wide = ncv or min(n, max(2 * k + 1, 40))
    vals, vecs, ok = _eigsh(_Shifted(op, shift), k, "SA", tol, wide, None, vecs.sum(axis=1))
    return vals + shift, vecs, ok


def _residuals(op: HessianOperator, vals: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """``||H v - lambda v||``: from the recorded products when v lies in their span (Ritz
    vectors of a Krylov method do), else by one product each."""
    hv = _from_history(op, vecs)
    if hv is None:
        hv = np.stack([op.matvec(vecs[:, i]) for i in range(vecs.shape[1])], axis=1)
    return np.linalg.norm(hv - vecs * vals, axis=0)


def _from_history(op: HessianOperator, vecs: np.ndarray) -> np.ndarray | None:
    if not op.history:
        return None
    xs = np.stack([h[0] for h in op.history], axis=1)
    hs = np.stack([h[1] for h in op.history], axis=1)
    coef, *_ = np.linalg.lstsq(xs, vecs, rcond=None)
    miss = np.linalg.norm(xs @ coef - vecs, axis=0)
    # H is linear, so H (X c) = (H X) c; only trust it when v is (numerically) in span(X).
    if np.max(miss) > 1e-10 or not np.all(np.isfinite(coef)):
        return None
    return hs @ coef


def _power_ends(op: HessianOperator, k_large: int, k_small: int, tol: float,
                bottom_tol: float, maxiter: int | None, rng: np.random.Generator):
    """Power iteration with deflation; the bottom end on ``H - top I`` (to ``bottom_tol``)."""
    maxiter = maxiter or 100
    vals, vecs, res, converged = [], [], [], True
    top = None
    if k_large or k_small:
        v, u, r, ok = _power(op.matvec, max(k_large, 1), tol, maxiter, rng, op.n_params)
        top = v[0]
        if k_large:
            vals += v
            vecs += u
            res += r
            converged &= ok
    if k_small:
        shift = max(top, 0.0)
        v, u, r, ok = _power(lambda x: op.matvec(x) - shift * x, k_small, bottom_tol, maxiter,
                             rng, op.n_params)
        vals += [x + shift for x in v]
        vecs += u
        res += r
        converged &= ok
    return np.array(vals), np.stack(vecs, axis=1), np.array(res), converged


def _power(apply: Callable[[np.ndarray], np.ndarray], k: int, tol: float, maxiter: int,
           rng: np.random.Generator, n: int):
    """Dominant eigenpairs one at a time, each deflated against the ones found before."""
    vals, vecs, res, converged = [], [], [], True
    for _ in range(k):
        w = _rng_vector(rng, n)
        value, ok = None, False
        for _ in range(maxiter):
            for u in vecs:
                w -= (u @ w) * u
            v = w / np.linalg.norm(w)
            hv = apply(v)
            new = float(v @ hv)
            converged_now = value is not None and abs(new - value) <= tol * (abs(value) + 1e-12)
            value = new
            if converged_now:
                ok = True
                break
            w = hv.copy()
        vals.append(value)
        vecs.append(v)  # the last vector multiplied: unit norm, deflated
        res.append(float(np.linalg.norm(hv - value * v)))
        converged &= ok
    return vals, vecs, res, converged


def extreme_eigenvalues(model: nn.Module, data: Any, loss: LossArg = "cross_entropy",
                        seed: int = 0, tol: float = 1e-3) -> tuple[float, float]:
    """Algebraically largest and smallest Hessian eigenvalue, cheaply (one Krylov space).

    Meant for every point of a surface grid: no determinism check, no vectors, no residual
    products. Runs on the model's device in its dtype, in eval mode; the model is not touched.

    Args:
        model: the network.
        data: ``(inputs, targets)`` (or a DataBundle: its train split).
        loss: ``cross_entropy``, ``mse`` or a mean-reduced callable.
        seed: seed of the start vector.
        tol: both ends stop when their Ritz residual is below ``tol`` times the spectrum's
            width (largest minus smallest Ritz value).

    Returns:
        ``(lambda_max, lambda_min)`` as floats.
    """
    op = HessianOperator(model, data, loss)
    nodes, _, _ = _extreme_lanczos(op, np.random.default_rng(seed), tol)
    return float(nodes[-1]), float(nodes[0])


def _extreme_lanczos(op: HessianOperator, rng: np.random.Generator, tol: float,
                     max_steps: int = 300):
    """Lanczos with full reorthogonalization until both extreme Ritz pairs have converged.

    One Krylov space serves both ends: on the MNIST-1D MLP this took 50 products at tol 1e-3
    where eigsh needed about 100 (``BE`` with k=2, or ``LA`` then ``SA``).
    """
    v0 = _rng_vector(rng, op.n_params)
    max_steps = min(max_steps, op.n_params, max(20, _BASIS_BUDGET // op.n_params))

    def done(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        width = max(theta[-1] - theta[0], 1e-300)
        return beta * max(abs(s[-1, 0]), abs(s[-1, -1])) <= tol * width

    return _lanczos(op.matvec, v0, min(max_steps, op.n_params), stop=done, check_every=5)


_BASIS_BUDGET = 2 ** 27
"""Most float64 entries (1 GiB) a Lanczos basis may hold when the step count is automatic."""


def _lanczos(apply: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, steps: int,
             stop: Callable[[np.ndarray, np.ndarray, float], bool] | None = None,
             check_every: int = 1, out: dict[str, Any] | None = None):
    """Lanczos with full reorthogonalization (twice, classical Gram-Schmidt) in float64.

    ``out``, if given, receives ``basis`` (the Lanczos vectors as rows, so Ritz vectors are
    ``basis.T @ s``) and ``beta`` (the last off-diagonal: Ritz residuals are
    ``beta * |s[-1, i]|``).

    Returns:
        ``(theta, s, m)``: Ritz values ascending, eigenvectors of the tridiagonal matrix
        (columns) and the number of steps taken.
    """
    basis = np.empty((steps, v0.size))
    alpha, beta = [], []
    v = v0 / np.linalg.norm(v0)
    scale = 0.0
    for j in range(steps):
        basis[j] = v
        w = np.array(apply(v), dtype=np.float64)  # a copy: the operator may keep what it returned
        alpha.append(float(v @ w))
        for _ in range(2):
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(scale, abs(alpha[-1]), b)
        closed = b <= 1e-12 * max(scale, 1e-300)  # an invariant subspace: T is exact
        last = j + 1 == steps or closed
        if last or (stop is not None and (j + 1) % check_every == 0):
            theta, s = eigh_tridiagonal(np.array(alpha), np.array(beta))
            if last or stop(theta, s, b):
                if out is not None:
                    out.update(basis=basis[:j + 1], beta=b)
                return theta, s, j + 1
        beta.append(b)
        v = w / b
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- trace

def hessian_trace(source: Any, data: Any = None, *, method: str = "hutch++",
                  n_products: int = 60, seed: int = 0, options: HessianOptions | None = None
                  ) -> TraceResult:
    """Trace of the Hessian from Rademacher probes.

    ``hutchinson``: mean of ``z^T H z``. ``hutch++``: a third of the products sketch the top
    of the spectrum (``Q`` from ``H S``), whose trace ``tr(Q^T H Q)`` is taken exactly; the rest
    is Hutchinson on the deflated ``(I - QQ^T) H (I - QQ^T)``.

    Args:
        source, data: as for ``hessian_eigenvalues`` (a network and its data, or an operator).
        method: ``hutch++`` or ``hutchinson``.
        n_products: budget of Hessian-vector products (hutch++: a multiple of 3 is used).
        seed: seed of the probes.
        options: how products are made from a network (``HessianOptions``).

    Returns:
        TraceResult (estimate, standard error, products used, mode).
    """
    _check_choice(method, ("hutch++", "hutchinson"), "trace method")
    if n_products < (3 if method == "hutch++" else 2):
        raise LandscapeError(f"{method} needs at least {3 if method == 'hutch++' else 2} "
                             "products")
    start = time.perf_counter()
    op = _operator(source, data, options, record=False)
    rng = np.random.default_rng(seed)
    try:
        if method == "hutchinson":
            est, se = _hutchinson(op, n_products, rng, None)
        else:
            est, se = _hutchpp(op, n_products, rng)
    finally:
        op.close()
    return TraceResult(estimate=float(est), stderr=float(se), n_products=op.n_products,
                       method=method, seconds=time.perf_counter() - start, mode=op.mode,
                       n_params=op.n_params)


def _rademacher(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=(n, m))


def _hutchinson(op: HessianOperator, m: int, rng: np.random.Generator,
                q: np.ndarray | None) -> tuple[float, float]:
    """Mean and standard error of ``g^T P H P g`` with ``P = I - Q Q^T`` (or ``I``)."""
    g = _rademacher(rng, op.n_params, m)
    if q is not None:
        g -= q @ (q.T @ g)
    samples = np.array([g[:, i] @ op.matvec(g[:, i]) for i in range(m)])
    se = samples.std(ddof=1) / math.sqrt(m) if m > 1 else float("inf")
    return float(samples.mean()), float(se)


def _hutchpp(op: HessianOperator, n_products: int, rng: np.random.Generator
             ) -> tuple[float, float]:
    m = n_products // 3
    s = _rademacher(rng, op.n_params, m)
    hs = np.stack([op.matvec(s[:, i]) for i in range(m)], axis=1)
    q, _ = np.linalg.qr(hs)
    hq = np.stack([op.matvec(q[:, i]) for i in range(q.shape[1])], axis=1)
    exact = float(np.sum(q * hq))
    rest, se = _hutchinson(op, n_products - 2 * m, rng, q)
    return exact + rest, se


# ----------------------------------------------------------------------------- density

def hessian_density(source: Any, data: Any = None, *, n_probes: int = 4, n_steps: int = 90,
                    seed: int = 0, sigma: float | None = None, grid_points: int = 1000,
                    options: HessianOptions | None = None) -> DensityResult:
    """Spectral density of the Hessian by stochastic Lanczos quadrature.

    Each probe (a Rademacher vector from ``seed``) runs ``n_steps`` Lanczos steps with full
    reorthogonalization; the tridiagonal matrix's eigenvalues (nodes) and squared first
    eigenvector components (weights) give a quadrature of the spectral measure; the average
    over probes is smoothed with a Gaussian of width ``sigma``.

    Args:
        source, data: as for ``hessian_eigenvalues`` (a network and its data, or an operator).
        n_probes: random probes (each costs ``n_steps`` products).
        n_steps: Lanczos steps per probe (80-100 is usual).
        seed: seed of the probes.
        sigma: kernel width; default 0.4% of the span of the nodes.
        grid_points: points of the evaluation grid (the nodes' span plus 6 sigma each side).
        options: how products are made from a network (``HessianOptions``).

    Returns:
        DensityResult (grid, density integrating to 1, nodes, weights, products).
    """
    if n_probes < 1 or n_steps < 1:
        raise LandscapeError("n_probes and n_steps must be at least 1")
    if grid_points < 3:
        raise LandscapeError("grid_points must be at least 3")
    if sigma is not None and not sigma > 0:
        raise LandscapeError(f"sigma must be positive, got {sigma}")
    start = time.perf_counter()
    op = _operator(source, data, options, record=False)
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    try:
        for _ in range(n_probes):
            probe = _rademacher(rng, op.n_params, 1)[:, 0]
            theta, s, _ = _lanczos(op.matvec, probe, min(n_steps, op.n_params))
            nodes.append(theta)
            weights.append(s[0] ** 2 / n_probes)
    finally:
        op.close()
    nodes_all, weights_all = np.concatenate(nodes), np.concatenate(weights)
    grid, density, sigma = _smooth(nodes_all, weights_all, sigma, grid_points)
    return DensityResult(grid=grid, density=density, nodes=nodes_all, weights=weights_all,
                         sigma=sigma, n_products=op.n_products, n_probes=n_probes,
                         n_steps=max(len(t) for t in nodes), seconds=time.perf_counter() - start,
                         mode=op.mode, n_params=op.n_params)


def _smooth(nodes: np.ndarray, weights: np.ndarray, sigma: float | None, points: int
            ) -> tuple[np.ndarray, np.ndarray, float]:
    span = float(nodes.max() - nodes.min())
    if sigma is None:
        sigma = 0.004 * span if span > 0 else 1e-3 * max(abs(float(nodes.max())), 1.0)
    grid = np.linspace(nodes.min() - 6 * sigma, nodes.max() + 6 * sigma, points)
    z = (grid[:, None] - nodes[None, :]) / sigma
    density = (np.exp(-0.5 * z ** 2) * weights).sum(axis=1) / (sigma * math.sqrt(2 * math.pi))
    density /= np.trapezoid(density, grid)  # the tails past 6 sigma are < 1e-8 of the mass
    return grid, density, float(sigma)


# ----------------------------------------------------------------------------- dense reference

def dense_hessian(model: nn.Module, data: Any, loss: LossArg = "cross_entropy",
                  chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                  device: str | torch.device | None = None, split: str = "train",
                  columns: int | None = None) -> torch.Tensor:
    """The full Hessian (n_params x n_params) by torch.func, for tiny models and references.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its ``split``).
        loss, chunk, mode, device, split: as for ``HessianOperator``.
        columns: Hessian columns per vectorized pass (bounds memory; default all at once).

    Returns:
        The symmetric Hessian as a tensor in the products' dtype on the products' device
        (by double backward, column by column, where BatchNorm uses batch statistics).
    """
    op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device, split=split)
    if _batch_statistics(op._shell):  # torch.func is unreliable there: n double backwards
        eye = torch.eye(op.n_params, device=op.device, dtype=op.torch_dtype)
        total = torch.stack([op.hvp(e) for e in eye], dim=1)
        return 0.5 * (total + total.T)
    names = list(op.params)
    shapes = [op.params[n].shape for n in names]
    sizes = [op.params[n].numel() for n in names]
    flat0 = torch.cat([op.params[n].reshape(-1) for n in names])

    def unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}

    eye = torch.eye(op.n_params, device=op.device, dtype=op.torch_dtype)
    total = torch.zeros_like(eye)
    for x, y, w in op._chunks:
        grad = torch.func.grad(lambda flat: op._chunk_loss(unflat(flat), x, y, w))
        # jacfwd(jacrev(f)) as in torch.func.hessian, with the columns vectorized in chunks
        column = lambda t: torch.func.jvp(grad, (flat0,), (t,))[1]  # noqa: E731
        try:
            total += torch.func.vmap(column, chunk_size=columns)(eye)
        except RuntimeError:  # a layer or loss without forward-mode support: reverse twice
            total += torch.func.jacrev(grad, chunk_size=columns)(flat0)
    return 0.5 * (total + total.T)


# ----------------------------------------------------------------------------- warm-started top

@dataclasses.dataclass(frozen=True)
class TopEigenpair:
    """The largest Hessian eigenvalue from one Lanczos run (e.g. warm-started).

    Attributes:
        value: the top Ritz value (never above the largest eigenvalue).
        vector: its unit Ritz vector (flat, float64), the start of the next run.
        residual: ``||H v - value v||`` (an eigenvalue lies within it of ``value``).
        n_products: Hessian-vector products used.
        converged: True if the residual reached ``tol * |value|``.
        seconds: wall time.
    """

    value: float
    vector: np.ndarray
    residual: float
    n_products: int
    converged: bool
    seconds: float


def top_eigenpair(model: nn.Module, data: Any, start: np.ndarray | None = None, *,
                  tol: float = 1e-3, max_products: int = 100, min_products: int = 1,
                  seed: int = 0, loss: LossArg = "cross_entropy",
                  chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                  device: str | torch.device | None = None) -> TopEigenpair:
    """The largest Hessian eigenvalue by Lanczos (full reorthogonalization) from ``start``.

    Started from the previous top eigenvector of a slowly changing model (training, a
    neighbouring grid point), a few products suffice: the run stops as soon as the top Ritz
    residual is below ``tol`` times the Ritz value. Its error is then of the order of the
    squared residual over the gap to the second eigenvalue (1e-3 gives about 1e-6 relative
    on a gap of a tenth of the value).

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        start: start vector (any norm; None or zero: a Gaussian vector from ``seed``).
        tol: stopping residual relative to the top Ritz value.
        max_products: most products (Lanczos steps).
        min_products: fewest products: a Krylov space of a few vectors can find an eigenvalue
            that has overtaken the one ``start`` points at (any Ritz pair with a small
            residual is near *some* eigenpair, not necessarily the top one).
        seed: seed of the random start vector.
        loss, chunk, mode, device: as for ``HessianOperator``.

    Returns:
        TopEigenpair.
    """
    if max_products < 1:
        raise LandscapeError(f"max_products must be at least 1, got {max_products}")
    begin = time.perf_counter()
    op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device)
    v0 = None if start is None else np.asarray(start, dtype=np.float64).reshape(-1)
    if v0 is not None and v0.size != op.n_params:
        raise LandscapeError(f"start vector has {v0.size} entries, the Hessian has "
                             f"{op.n_params}")
    if v0 is None or not np.linalg.norm(v0) > 0:
        v0 = _rng_vector(np.random.default_rng(seed), op.n_params)

    def done(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        return (len(theta) >= min_products
                and beta * abs(s[-1, -1]) <= tol * max(abs(theta[-1]), 1e-300))

    keep: dict[str, Any] = {}
    theta, s, _ = _lanczos(op.matvec, v0, min(max_products, op.n_params), stop=done,
                           out=keep)
    vector = keep["basis"].T @ s[:, -1]
    vector /= np.linalg.norm(vector)
    residual = float(keep["beta"] * abs(s[-1, -1]))
    return TopEigenpair(value=float(theta[-1]), vector=vector, residual=residual,
                        n_products=op.n_products,
                        converged=residual <= tol * max(abs(float(theta[-1])), 1e-300),
                        seconds=time.perf_counter() - begin)


# ----------------------------------------------------------------------------- per batch

@dataclasses.dataclass(frozen=True)
class BatchSpread:
    """The top Hessian eigenvalue of the mean loss over several mini-batches.

    Attributes:
        batch_size: examples per batch.
        values: the top eigenvalue of each batch.
        mean, std: their mean and standard deviation (ddof 1; NaN for one batch).
        full: the full-data top eigenvalue (None if not asked for).
        disjoint: True if the batches share no example.
        n_products: Hessian-vector products used, all batches (and the full data) together.
        seconds: wall time.
    """

    batch_size: int
    values: np.ndarray
    mean: float
    std: float
    full: float | None
    disjoint: bool
    n_products: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"batch_size": self.batch_size, "values": self.values.tolist(),
                "mean": self.mean, "std": None if math.isnan(self.std) else self.std,
                "min": float(self.values.min()), "max": float(self.values.max()),
                "full": self.full, "disjoint": self.disjoint, "n_products": self.n_products,
                "seconds": self.seconds}


def per_batch_top_eigenvalue(model: nn.Module, data: Any, n_batches: int, batch_size: int, *,
                             seed: int = 0, tol: float = 1e-3, full: bool = True,
                             max_products: int = 200, loss: LossArg = "cross_entropy",
                             chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                             device: str | torch.device | None = None) -> BatchSpread:
    """How much the top eigenvalue varies from one mini-batch to the next.

    Batches are drawn from a permutation seeded by ``seed``: disjoint slices of it when
    ``n_batches * batch_size`` examples exist, else each batch its own draw without
    replacement. Each batch's top eigenvalue is a fresh Lanczos run (``top_eigenpair``).

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        n_batches: how many batches (at least 1).
        batch_size: examples per batch (at most the data's size).
        seed: seed of the batches and start vectors.
        tol: Lanczos residual relative to the value.
        full: also the top eigenvalue of the whole data.
        max_products: most products per eigenvalue.
        loss, chunk, mode, device: as for ``HessianOperator``.

    Returns:
        BatchSpread.
    """
    x, y = split_of(data)
    n = len(y)
    if n_batches < 1:
        raise LandscapeError(f"n_batches must be at least 1, got {n_batches}")
    if not 1 <= batch_size <= n:
        raise LandscapeError(f"batch size must be between 1 and the {n} examples, "
                             f"got {batch_size}")
    begin = time.perf_counter()
    rng = np.random.default_rng(seed)
    disjoint = n_batches * batch_size <= n
    order = rng.permutation(n)
    common = dict(tol=tol, max_products=max_products, loss=loss, chunk=chunk,
                  mode=mode, device=device)
    values, products = [], 0
    for b in range(n_batches):
        idx = (order[b * batch_size:(b + 1) * batch_size] if disjoint
               else rng.choice(n, size=batch_size, replace=False))
        idx = torch.from_numpy(np.sort(idx))
        pair = top_eigenpair(model, (x[idx], y[idx]), seed=seed + b, **common)
        values.append(pair.value)
        products += pair.n_products
    whole = None
    if full:
        pair = top_eigenpair(model, (x, y), seed=seed, **common)
        whole, products = pair.value, products + pair.n_products
    arr = np.array(values)
    return BatchSpread(batch_size=batch_size, values=arr, mean=float(arr.mean()),
                       std=float(arr.std(ddof=1)) if len(arr) > 1 else float("nan"),
                       full=whole, disjoint=disjoint, n_products=products,
                       seconds=time.perf_counter() - begin)


# ----------------------------------------------------------------------------- slices

def directional_curvature(model: nn.Module, data: Any, direction: torch.Tensor, *,
                          step: float = 1e-6, loss: LossArg = "cross_entropy",
                          chunk: int | None = DEFAULT_CHUNK,
                          dtype: torch.dtype | None = torch.float64,
                          device: str | torch.device | None = None) -> float:
    """Second difference of the mean loss along a flat direction, at the model:
    ``(f(theta + h d) - 2 f(theta) + f(theta - h d)) / h^2`` (eval mode).

    For a unit eigenvector it tends to the eigenvalue as ``h`` shrinks (error of order
    ``h^2``); it is what a 1-D slice of the loss shows at its origin, measured without the
    Hessian. Runs in ``dtype`` (float64 by default, so rounding stays far below the
    ``h^2`` term). Keep ``h`` small: the loss of a ReLU network is only piecewise smooth, and
    a step that moves pre-activations across zero adds their slope changes, which the
    Hessian leaves out. On the demo's two CNNs (4,000 examples) the second difference along
    the top eigenvector was 1.6% and 4.0% above the eigenvalue at h = 1e-4, 0.03% and 0.00%
    off at 1e-5, 0.00% at 1e-6; on a tiny MLP h = 1e-3 put one slice 2.3x off.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        direction: flat tensor, one entry per trainable parameter (not normalized here).
        step: the step ``h``.
        loss, chunk, device: as for ``HessianOperator``.
        dtype: dtype of the loss evaluations (None: the model's).

    Returns:
        The second difference.
    """
    if not step > 0:
        raise LandscapeError(f"step must be positive, got {step}")
    op = HessianOperator(model, data, loss, chunk=chunk, device=device, dtype=dtype)
    d = op._split_vector(direction.to(op.device, op.torch_dtype).reshape(-1))

    def at(h: float) -> float:
        params = {n: t + h * d[n] for n, t in op.params.items()}
        with torch.no_grad(), op._float32():
            return sum(float(op._chunk_loss(params, x, y, w)) for x, y, w in op._chunks)

    return (at(step) - 2.0 * at(0.0) + at(-step)) / step ** 2


# ----------------------------------------------------------------------------- densities

def common_densities(spectra: list[tuple[np.ndarray, np.ndarray]], sigma: float | None = None,
                     grid_points: int = 1000) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Smooth several spectra (Ritz nodes, quadrature weights) with ONE Gaussian kernel on
    ONE grid, so that a figure comparing them shows the same resolution for each.

    Args:
        spectra: ``(nodes, weights)`` per spectrum (``DensityResult.nodes/.weights``).
        sigma: kernel width; default 0.4% of the span of all nodes together.
        grid_points: points of the shared grid.

    Returns:
        ``(densities, grid, sigma)``: one density per spectrum (each integrates to 1).
    """
    if not spectra:
        raise LandscapeError("no spectra to smooth")
    nodes = [np.asarray(n, dtype=float).ravel() for n, _ in spectra]
    weights = [np.asarray(w, dtype=float).ravel() for _, w in spectra]
    every = np.concatenate(nodes)
    _, _, sigma = _smooth(every, np.ones_like(every), sigma, 3)
    grid = np.linspace(every.min() - 6 * sigma, every.max() + 6 * sigma, grid_points)
    out = []
    for nd, wt in zip(nodes, weights):
        z = (grid[:, None] - nd[None, :]) / sigma
        dens = (np.exp(-0.5 * z ** 2) * wt).sum(axis=1)
        out.append(dens / np.trapezoid(dens, grid))
    return out, grid, sigma


# ----------------------------------------------------------------------------- spectrum files

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


# ----------------------------------------------------------------------------- under torchrun

def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous share ``[start, stop)`` of ``n`` examples for ``rank`` (sizes differ by at
    most one)."""
    return n * rank // world_size, n * (rank + 1) // world_size


_STOP, _PRODUCT, _GRADIENT = 0.0, 1.0, 2.0


class DistributedHessianOperator(HessianOperator):
    """The Hessian of the mean loss over data shared by the ranks of ``context``.

    Every rank keeps its contiguous shard of the examples (``shard_range``). Rank 0 drives: each
    ``hvp`` (and ``matvec``, so scipy solvers work unchanged) broadcasts the vector, every rank
    multiplies by its shard's Hessian weighted by ``shard / n``, and the pieces are summed on
    rank 0 (``reduce``; NCCL on GPUs). Meanwhile the other ranks run ``serve`` (or
    ``serve_hessian_products``, which builds the operator from rank 0's arguments). Rank 0's
    ``close`` releases them. The product equals the one-process product up to rounding (the
    sum is taken in another order).

    Args:
        model, data, loss, chunk, mode, device, hvp, dtype, split, record, progress,
            graph_cache: as for ``landscape.hessian.HessianOperator`` (all ranks give the same;
            ``device`` defaults to ``context.device``; only rank 0 shows progress).
        context: from ``init_distributed``.
    """

    def __init__(self, model: nn.Module, data: Any, loss: Any = "cross_entropy", *,
                 chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES,
                 context: DistContext):
        x, y = split_of(data, split)
        n = len(y)
        if n < context.world_size:
            raise DistributedError(f"{n} examples cannot be shared by {context.world_size} "
                                   "ranks")
        lo, hi = shard_range(n, context.rank, context.world_size)
        self.context = context
        self.share = (hi - lo) / n
        self.total_examples = n
        self._link = Link(context)
        self._released = False
        super().__init__(model, (x[lo:hi], y[lo:hi]), loss, chunk=chunk, mode=mode,
                         device=device if device is not None else context.device, hvp=hvp,
                         dtype=dtype, record=record, progress=progress and context.is_main,
                         graph_cache=graph_cache)

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        return self._link.call(what, fn)

    def _order(self, flag: float, v: torch.Tensor | None) -> torch.Tensor:
        """Rank 0 sends (flag, vector) to all ranks (its arguments are ignored elsewhere);
        returns what arrived."""
        import torch.distributed as dist

        msg = torch.zeros(self.n_params + 1, device=self.device, dtype=self.torch_dtype)
        if self.context.is_main:
            msg[0] = flag
            if v is not None:
                msg[1:] = v
        self._collective("Hessian product request", lambda: dist.broadcast(msg, src=0))
        return msg

    def _sum_on_main(self, local: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        self._collective("sum of Hessian products", lambda: dist.reduce(local, dst=0))
        return local

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` over all shards (rank 0 only; the others must be serving)."""
        self._check_driver()
        v = v.to(self.device, self.torch_dtype).reshape(-1)
        if v.numel() != self.n_params:
            raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has "
                                 f"{self.n_params}")
        msg = self._order(_PRODUCT, v)
        return self._sum_on_main(super().hvp(msg[1:]) * self.share)

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Mean loss and flat gradient over all shards (rank 0 only)."""
        self._check_driver()
        self._order(_GRADIENT, None)
        return self._local_loss_and_grad()

    def _local_loss_and_grad(self) -> tuple[float, torch.Tensor]:
        loss, grad = super().loss_and_grad()
        packed = torch.cat([torch.tensor([loss], device=grad.device, dtype=grad.dtype), grad])
        packed = self._sum_on_main(packed * self.share)
        return float(packed[0]), packed[1:]

    def serve(self) -> int:
        """On ranks other than 0: answer rank 0's requests until it closes the operator.

        Returns:
            The number of products served.
        """
        if self.context.is_main:
            raise DistributedError("rank 0 drives the operator; serve() is for the other ranks")
        served = 0
        while True:
            msg = self._order(_STOP, None)
            flag = float(msg[0])
            if flag == _PRODUCT:
                self._sum_on_main(HessianOperator.hvp(self, msg[1:]) * self.share)
                served += 1
            elif flag == _GRADIENT:
                self._local_loss_and_grad()
            else:
                return served

    def close(self) -> None:
        """On rank 0: release the serving ranks (once); close the progress bar."""
        if self.context.is_main and not self._released:
            self._released = True
            self._order(_STOP, None)
        super().close()

    def _check_driver(self) -> None:
        if not self.context.is_main:
            raise DistributedError("only rank 0 requests products; the other ranks serve()")
        if self._released:
            raise DistributedError("this operator was closed")


class DistributedHessian:
    """On rank 0: makes ``DistributedHessianOperator``s, a drop-in for ``HessianOperator(...)``
    in any solver, while the other ranks run ``serve_hessian_products``.

    Each call sends the operator's settings to the serving ranks, which build the same
    operator over their shards; ``finish()`` releases them when no more operators come.
    Operators run on ``context.device`` whatever ``device`` they are given.
    """

    def __init__(self, context: DistContext):
        if not context.is_main:
            raise DistributedError("rank 0 makes the operators; the other ranks run "
                                   "serve_hessian_products")
        self.context = context
        self._link = Link(context)
        self.finished = False

    def __call__(self, model: nn.Module, data: Any, loss: Any = "cross_entropy", *,
                 chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES
                 ) -> DistributedHessianOperator:
        if self.finished:
            raise DistributedError("finish() was called: the serving ranks are gone")
        if callable(loss):
            raise DistributedError("a distributed Hessian needs a named loss (cross_entropy or "
                                   "mse), not a callable: the other ranks must rebuild it")
        settings = dict(loss=loss, chunk=chunk, mode=mode, hvp=hvp, dtype=dtype,
                        split=split, graph_cache=graph_cache)
        self._send(settings)
        return DistributedHessianOperator(model, data, record=record, progress=progress,
                                          context=self.context, **settings)

    def finish(self) -> None:
        """Tell the serving ranks that no more operators come (once)."""
        if not self.finished:
            self.finished = True
            self._send(None)

    def _send(self, settings: dict[str, Any] | None) -> None:
        import torch.distributed as dist

        order = [settings]
        self._link.call("Hessian operator request",
                        lambda: dist.broadcast_object_list(order, src=0,
                                                           group=self.context.group))

    def __enter__(self) -> "DistributedHessian":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def serve_hessian_products(model: nn.Module, data: Any, context: DistContext) -> int:
    """On ranks other than 0: serve every operator rank 0's ``DistributedHessian`` makes,
    until it calls ``finish()``.

    Args:
        model, data: the same as rank 0's.
        context: from ``init_distributed``.

    Returns:
        The number of operators served.
    """
    import torch.distributed as dist

    if context.is_main:
        raise DistributedError("rank 0 drives the products; serve on the other ranks")
    link = Link(context)
    count = 0
    while True:
        order: list[Any] = [None]
        link.call("Hessian operator request",
                  lambda: dist.broadcast_object_list(order, src=0, group=context.group))
        if order[0] is None:
            return count
        DistributedHessianOperator(model, data, context=context, **order[0]).serve()
        count += 1


def sharded_hessian_vector_product(model: nn.Module, data: Any, vector: torch.Tensor,
                                   loss: Any = "cross_entropy",
                                   chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                                   hvp: str = "double", dtype: torch.dtype | None = None,
                                   *, context: DistContext | None) -> torch.Tensor:
    """``H v`` of the mean loss over ``data``, each rank working on its shard (a collective:
    every rank calls it and every rank gets the product; rank 0's ``vector`` is used).

    Args:
        model: the network (not modified); the same on every rank.
        data: ``(inputs, targets)`` or a DataBundle (its train split); the same on every rank.
        vector: flat tensor, one entry per trainable parameter.
        loss, chunk, mode, hvp, dtype: as for ``landscape.hessian.HessianOperator``.
        context: from ``init_distributed``; None computes the one-process product.

    Returns:
        ``H v`` as a flat tensor on ``context.device``.
    """
    import torch.distributed as dist

    if context is None or context.world_size == 1:
        return hessian_vector_product(model, data, vector, loss, chunk, mode,
                                      None if context is None else context.device, hvp)
    op = DistributedHessianOperator(model, data, loss, chunk=chunk, mode=mode, hvp=hvp,
                                    dtype=dtype, context=context)
    v = vector.to(op.device, op.torch_dtype).reshape(-1).clone()
    if v.numel() != op.n_params:
        raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has {op.n_params}")
    op._collective("vector broadcast", lambda: dist.broadcast(v, src=0))
    out = op._sum_on_main(HessianOperator.hvp(op, v) * op.share)
    op._collective("product broadcast", lambda: dist.broadcast(out, src=0))
    return out
