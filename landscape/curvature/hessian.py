"""The Hessian of the mean loss as a matrix-free operator, and the checks that go with it.

Contract: the Hessian ``H`` of the mean loss over a data split is only ever applied to vectors
(``HessianOperator``), so the cost of a result is counted in Hessian-vector products
("products"). Parameters are the model's trainable weights (``params.named_tensors(model,
"weights")``) in their insertion order; vectors are flat.

The model is never modified: products run through ``torch.func.functional_call`` on a shallow
structural copy of the model (sharing its tensors) whose train/eval flags are set there, and in
train mode BatchNorm running statistics are updated on throw-away copies. Eval mode is the
default, so BatchNorm uses its running statistics and the Hessian does not depend on how the
data are chunked. ``solver_operator`` turns what a solver is given (a model and its data, or an
operator) into the operator it runs on.
"""
from __future__ import annotations

import copy
import functools
import math
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..util.devices import float32_mode
from ..data import split_of
from ..errors import LandscapeError
from ..losses import loss_function
from ..params import named_tensors
from .base import CurvatureOperator, GivenOperator
from .options import (CURVATURES, DEFAULT_CHUNK, GRAPH_CACHE_BYTES, HVP_METHODS, MODES,
                      HessianOptions, LossArg)
from ..util.checks import check_choice


def _shell(model: nn.Module, training: bool) -> nn.Module:
    """A structural copy of ``model`` sharing its tensors, with its own train/eval flags."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    shell = copy.deepcopy(model, memo)
    return shell.train(training)


def batch_statistics(model: nn.Module) -> bool:
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


class HessianOperator(CurvatureOperator):
    """The Hessian of the mean loss over a data split, as a scipy LinearOperator.

    The scipy side is float64; products run on ``device`` in ``dtype`` (the model's dtype
    unless given), on GPUs in full float32 (TF32 off for the products' matmuls and
    convolutions, whatever the global setting). ``n_products`` counts every product, through
    scipy or ``hvp``.

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
            double-backward products (0: recompute it for each product). The graphs are kept
            if what keeping adds over recomputing fits the budget: the first chunk's graph (its
            saved tensors other than the weights, and its gradient) times the number of chunks
            less one (a single chunk's graph is always kept: rebuilt, ResNet-20's product
            took 7.6x a forward + backward instead of 2.2x; kept, the product peaks 1.33x
            higher there, by what the double backward can no longer free as it goes; the
            memory estimate traces the product as it will be made).
        progress: a progress bar counting products.
    """

    matrix_name = "Hessian"
    fresh_output = True  # each product is a new tensor, its numpy view held by no one else

    def __init__(self, model: nn.Module, data: Any, loss: LossArg = "cross_entropy", *,
                 chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES):
        check_choice(mode, MODES, "mode")
        check_choice(hvp, HVP_METHODS, "hvp method")
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
        if hvp == "forward" and batch_statistics(self._shell):
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
        self._graph_budget = graph_cache
        self._graphs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None
        self._stage: torch.Tensor | None = None
        super().__init__(sum(t.numel() for t in self.params.values()), record=record)
        if progress:
            self._show_progress("Hessian-vector products", "Hv")

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

    @property
    def batch_statistics(self) -> bool:
        """True if a BatchNorm layer normalizes with batch statistics in the products."""
        return batch_statistics(self._shell)

    def _buffers(self) -> dict[str, torch.Tensor]:
        # Train-mode BatchNorm updates its running statistics in place: give it copies.
        if self.mode == "train":
            return {n: t.clone() for n, t in self._fixed.items()}
        return self._fixed

    def _chunk_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    weight: float) -> torch.Tensor:
        out = torch.func.functional_call(self._shell, {**params, **self._buffers()}, (x,))
        return self._loss_fn(out, y) * weight

    def chunk_losses(self) -> Iterator[Any]:
        """One function per data chunk: ``params -> that chunk's weighted loss`` (a tensor;
        the chunks' values sum to the mean loss), for torch.func transforms."""
        for x, y, w in self._chunks:
            yield lambda params, x=x, y=y, w=w: self._chunk_loss(params, x, y, w)

    def loss_at(self, params: dict[str, torch.Tensor]) -> float:
        """Mean loss at the weights ``params`` (name -> tensor), without gradients."""
        with torch.no_grad(), self._float32():
            return sum(float(self._chunk_loss(params, x, y, w)) for x, y, w in self._chunks)

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
            out = self._flat_product(v)
        self._check_finite(out)
        self._tally()
        return out

    def _check_finite(self, out: torch.Tensor) -> None:
        """LandscapeError unless every entry of a product is finite (else eigsh dies in
        ARPACK, a trace is NaN). A finite sum proves it in one read (a NaN or inf entry makes
        the sum NaN or inf); only a sum that overflows needs the entry-wise check."""
        if math.isfinite(float(out.sum())) or bool(torch.isfinite(out).all()):
            return
        raise LandscapeError(f"a {self.matrix_name}-vector product is not finite (NaN or "
                             "inf): the model's weights or its loss on these data are not "
                             f"finite, so its {self.matrix_name} is undefined")

    def _flat_product(self, v: torch.Tensor) -> torch.Tensor:
        """The product with a flat vector on the device (subclasses: another matrix)."""
        return torch.cat([t.reshape(-1) for t in self._product_parts(v)])

    def _product_parts(self, v: torch.Tensor) -> list[torch.Tensor]:
        """The product with a flat vector, one tensor per weight (in ``params`` order)."""
        if self.hvp_method != "forward":
            return self._hvp_double(v)
        try:
            return self._hvp_forward(v)
        except Exception as exc:  # torch.func does not cover every layer
            warnings.warn(f"forward-over-reverse products failed on this model "
                          f"({type(exc).__name__}: {exc}); using double backward",
                          stacklevel=4)
            self.hvp_method = "double"
            return self._hvp_double(v)

    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector as views shaped like the weights (name -> tensor)."""
        out, start = {}, 0
        for name, t in self.params.items():
            out[name] = v[start:start + t.numel()].view_as(t)
            start += t.numel()
        return out

    def _hvp_forward(self, v: torch.Tensor) -> list[torch.Tensor]:
        tangent = self.unflatten(v)
        total: list[torch.Tensor] = []
        for x, y, w in self._chunks:
            grad = torch.func.grad(lambda p: self._chunk_loss(p, x, y, w))
            _, hv = torch.func.jvp(grad, (self.params,), (tangent,))
            total = _accumulate(total, list(hv.values()))
        return total

    @property
    def hvp_description(self) -> str:
        """How products are computed: ``forward``, ``double`` or ``double (graph kept)``."""
        return "double (graph kept)" if self._graphs else self.hvp_method

    def _gradient_graph(self, x: torch.Tensor, y: torch.Tensor, w: float
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
        """Parameters, gradient with its graph, and the bytes keeping them holds: the
        tensors the graph saved, less those that are the weights themselves (resident
        anyway: most of what a wide layer saves), plus the gradient."""
        saved = [0]
        p = [t.detach().requires_grad_(True) for t in self.params.values()]
        weights = {t.untyped_storage().data_ptr() for t in p}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.untyped_storage().data_ptr() not in weights:
                saved[0] += t.numel() * t.element_size()
            return t

        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            value = self._chunk_loss(dict(zip(self.params, p)), x, y, w)
            g = torch.autograd.grad(value, p, create_graph=True)
        return p, list(g), saved[0] + sum(t.numel() * t.element_size() for t in g)

    def _keep_graphs(self) -> None:
        """Build and keep every chunk's gradient graph if they fit the byte budget."""
        self._graphs = []
        if self._graph_budget <= 0:
            return
        first = self._gradient_graph(*self._chunks[0])
        if first[2] * (len(self._chunks) - 1) > self._graph_budget:
            return  # (one chunk's graph is always kept: the budget bounds only the rest)
        self._graphs = [first[:2]] + [self._gradient_graph(*c)[:2] for c in self._chunks[1:]]

    def _hvp_double(self, v: torch.Tensor) -> list[torch.Tensor]:
        if self._graphs is None:
            self._keep_graphs()
        tangent = list(self.unflatten(v).values())
        total: list[torch.Tensor] = []
        for i, chunk in enumerate(self._chunks):
            if self._graphs:
                p, g = self._graphs[i]
            else:
                p, g, _ = self._gradient_graph(*chunk)
            # d(g . t)/dp = H t: the backward of the gradient with the tangent as its seed
            total = _accumulate(total, _grad(g, p, tangent, keep=bool(self._graphs)))
        return total

    def _product(self, x: np.ndarray) -> np.ndarray:
        v = self._staged(x)
        if not self._direct:  # an operator whose products go through its own hvp
            return self.hvp(v).to("cpu", torch.float64).numpy()
        with self._float32():
            parts = self._product_parts(v)
        out = np.empty(self.n_params)  # filled in place: no float32 flat copy, no allocation
        flat = torch.from_numpy(out)  # by torch's conversion
        for view, part in zip(self.unflatten(flat).values(), parts):
            view.copy_(part)
        self._check_finite(flat)
        self._tally()
        return out

    @property
    def _direct(self) -> bool:
        """True if scipy's products may skip ``hvp`` and ``_flat_product`` (neither is
        overridden), so that each weight's part goes straight into the float64 result."""
        cls = type(self)
        return (cls.hvp is HessianOperator.hvp
                and cls._flat_product is HessianOperator._flat_product)

    def _staged(self, x: np.ndarray) -> torch.Tensor:
        """scipy's float64 vector on the products' device and dtype, converted into a
        buffer the operator keeps (a fresh conversion each product costs a page-faulted
        allocation as large as the conversion itself)."""
        v = torch.from_numpy(x)
        if v.dtype == self.torch_dtype and self.device.type == "cpu":
            return v
        if self._stage is None:
            self._stage = torch.empty(self.n_params, device=self.device, dtype=self.torch_dtype)
        return self._stage.copy_(v)

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


def _accumulate(total: list[torch.Tensor], parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """``total + parts`` per weight, summed in place into ``total`` (the first parts are
    taken as they are)."""
    if not total:
        return parts
    for acc, part in zip(total, parts):
        acc.add_(part)
    return total


def _grad(outputs: list[torch.Tensor], inputs: list[torch.Tensor],
          seeds: list[torch.Tensor], keep: bool) -> list[torch.Tensor]:
    """Vector-Jacobian product that treats outputs without a graph (constant) as zero.

    Taken as the gradient of the scalar ``sum(output * seed)``, not with the seeds as
    ``grad_outputs`` (the same numbers: the seed reaches each output multiplied by one): a
    ``grad_outputs`` tensor makes torch import its symbolic-shape machinery (sympy; 2.8 s of
    CPU on the first product of a process, measured on the MNIST-1D MLP whose whole top-5
    solve takes 0.8 s) and compare every shape symbolically on each call.
    """
    live = [(o, s) for o, s in zip(outputs, seeds) if o.requires_grad]
    if not live:
        return [torch.zeros_like(t) for t in inputs]
    with torch.enable_grad():
        dot = torch.stack([torch.vdot(o.reshape(-1), s.reshape(-1)) for o, s in live]).sum()
        return list(torch.autograd.grad(dot, inputs, retain_graph=keep,
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


def warn_stochastic(model: nn.Module, mode: str) -> None:
    """Warn (to the caller's caller) if ``mode`` turns on stochastic or chunk-dependent
    layers (``stochastic_layers``)."""
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
    warn_stochastic(model, mode)
    op = HessianOperator(model, data, loss, chunk=chunk, mode=mode, device=device)
    return op.check_determinism()


def _factory(o: HessianOptions) -> Callable[..., CurvatureOperator]:
    """What makes the operator of ``o.curvature`` (the Hessian's may be ``o.factory``)."""
    check_choice(o.curvature, CURVATURES, "curvature")
    if o.curvature == "hessian":
        return o.factory or HessianOperator
    if o.factory is not None:
        raise LandscapeError(f"the {o.curvature} operator runs in one process: a custom "
                             "operator factory (torchrun) is for the Hessian only")
    from .ggn import OutputCurvatureOperator  # it builds on this module

    return functools.partial(OutputCurvatureOperator, kind=o.curvature,
                             samples=o.fisher_samples, seed=o.fisher_seed)


def solver_operator(source: Any, data: Any, options: HessianOptions | None,
                    record: bool) -> CurvatureOperator:
    """The operator the solvers use: ``source`` itself (counted, a ``GivenOperator``) when it
    is an operator or a matrix, else a ``HessianOperator`` of the model ``source`` over
    ``data`` (or what ``options.factory`` makes with the same arguments), checked for
    determinism when ``options.check``."""
    if not isinstance(source, nn.Module):
        if data is not None:
            raise LandscapeError("data goes with a model, not with an operator")
        return GivenOperator(source, record)
    if data is None:
        raise LandscapeError("a model needs its data: (inputs, targets) or a DataBundle")
    o = options or HessianOptions()
    warn_stochastic(source, o.mode)
    op = _factory(o)(source, data, o.loss, chunk=o.chunk, mode=o.mode, device=o.device,
                     hvp=o.hvp, dtype=o.dtype, split=o.split, record=record,
                     progress=o.progress)
    if o.check:
        try:
            op.check_determinism()
        except BaseException:
            op.close()  # a distributed operator must release the ranks serving it
            raise
    return op
